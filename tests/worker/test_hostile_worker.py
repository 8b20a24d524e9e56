"""Hostile input to a running push worker over real HTTP (loopback).

Each attack gets the right 4xx (never a 5xx), the worker stays up (/livez), and the ledger is
unchanged (row counts of every table before and after). Salesforce is unreachable on purpose: these
tests are about the HTTP edge and the ledger, not the push.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sqlite3
import time
import unicodedata
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port
from tests.soak.processes import ManagedProcess, cli, wait_http
from unsubscribe_sync.api.addresses import normalize_email

TOKEN = "hostile-test-token-5d1c0a"
TABLES = ("unsubscribes", "salesforce_targets", "outbox", "history", "processed_events")
# The worker must give up on a client that stalls; this bounds how long the test waits for it to do so.
SLOW_CLIENT_BOUND_SECONDS = 20.0


@dataclass
class Worker:
    port: int
    db: Path
    process: ManagedProcess

    def counts(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            all_headers = dict(headers or {})
            if token is not None:
                all_headers.setdefault("Authorization", f"Bearer {token}")
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.msg
        finally:
            conn.close()

    def post_json(self, data: Any, **kw: Any) -> tuple[int, Any]:
        status, raw, _ = self.request(
            "POST", "/v1/unsubscribes", json.dumps(data).encode(), {"Content-Type": "application/json"}, **kw
        )
        return status, _json(raw)

    def raw(self, payload: bytes, *, timeout: float = 30.0) -> tuple[int, bytes]:
        """Send exact bytes; return the status code of the answer (0: closed without one) and the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(payload)
            return _read_answer(s)

    def alive(self) -> bool:
        status, _, _ = self.request("GET", "/livez", token=None)
        return status == 200 and self.process.alive


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _read_answer(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1."):
        return 0, data
    return int(data.split(b" ", 2)[1]), data


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    base = tmp_path_factory.mktemp("hostile")
    (base / "creds").mkdir()
    (base / "creds" / "client_id").write_text("hostile-client")
    (base / "creds" / "client_secret").write_text("hostile-secret")
    (base / "token").write_text(TOKEN)
    port = free_port()
    db = base / "ledger.db"
    config = {
        "salesforce": {"loginUrl": f"https://127.0.0.1:{free_port()}", "credentialsDir": str(base / "creds")},
        "ledger": {"url": f"sqlite:///{db}"},
        "worker": {"listen": f"127.0.0.1:{port}", "publicListen": None, "tokenFile": str(base / "token")},
        "logging": {"format": "json"},
    }
    (base / "config.yaml").write_text(json.dumps(config))
    proc = ManagedProcess("worker", cli("worker", "--config", str(base / "config.yaml")), base)
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process=proc)
        yield Worker(port, db, proc)
    finally:
        proc.stop()


@pytest.fixture
def unchanged(worker: Worker) -> Iterator[None]:
    """The test must leave the ledger exactly as it found it, and the worker up."""
    before = worker.counts()
    yield
    assert worker.alive(), "the worker went down:\n" + worker.process.logs()[-3000:]
    assert worker.counts() == before


def _post_headers(length: int | None, *, chunked: bool = False, content_type: str = "application/json") -> bytes:
    lines = [
        "POST /v1/unsubscribes HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {TOKEN}",
        f"Content-Type: {content_type}",
    ]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---- size and shape ---------------------------------------------------------------------------------


def test_a_body_over_1_mib_is_refused_before_it_is_read(worker: Worker, unchanged: None) -> None:
    declared = 64 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", worker.port), timeout=30) as s:
        s.sendall(_post_headers(declared) + b'{"email": "' + b"a" * 60_000)
        status, _ = _read_answer(s)  # answered while 63.9 MiB are still to come
    assert status == 413


def test_a_chunked_body_over_1_mib_is_refused(worker: Worker, unchanged: None) -> None:
    payload = b'{"email": "x@example.com", "source": "' + b"s" * (1024 * 1024 + 10) + b'"}'
    chunks = b"".join(
        f"{len(payload[i : i + 65536]):x}\r\n".encode() + payload[i : i + 65536] + b"\r\n"
        for i in range(0, len(payload), 65536)
    )
    status, _ = worker.raw(_post_headers(None, chunked=True) + chunks + b"0\r\n\r\n")
    assert status == 413


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="arrays-100k-deep"),
        pytest.param(b'{"a":' * 60_000 + b"1" + b"}" * 60_000, id="objects-60k-deep"),
        pytest.param(
            b'{"email": "deep@example.com", "source": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep-inside-an-item"
        ),
        pytest.param(b'{"email": "n@example.com", "source": ' + b"9" * 100_000 + b"}", id="100k-digit-number"),
        pytest.param(b'{"email": "n@example.com", "source": 1e999999}', id="infinite-float"),
        pytest.param(b'{"email": "n@example.com", "eventId": NaN}', id="NaN"),
        pytest.param(
            b'{"unsubscribes": [' + b'{"email": "m@example.com"},' * 1000 + b'{"email": "z@example.com"}]}',
            id="1001-items",
        ),
        pytest.param(b'"\xff\xfe\x00"', id="not-utf8"),
        pytest.param(b"\x00" * 1000, id="nul-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"email": "a@example.com"} trailing', id="trailing-garbage"),
    ],
)
def test_malformed_or_pathological_json_is_a_400(worker: Worker, unchanged: None, body: bytes) -> None:
    status, raw, _ = worker.request("POST", "/v1/unsubscribes", body, {"Content-Type": "application/json"})
    assert status == 400, raw[:300]
    answer = _json(raw)
    assert isinstance(answer, dict) and answer.get("error"), answer


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonp",
        "json",
        "text/json; x=application/json",
    ],
)
def test_wrong_content_type_is_a_415(worker: Worker, unchanged: None, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, raw, _ = worker.request("POST", "/v1/unsubscribes", b'{"email": "ct@example.com"}', headers)
    assert status == 415, raw[:300]


# ---- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN.upper()}",
        f"Bearer  {TOKEN} extra",
        "Bearer " + "A" * 6000,
        f"Bearer {TOKEN}\x00",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/unsubscribes"),
        ("GET", "/v1/unsubscribes/a@example.com"),
        ("GET", "/v1/unsubscribes"),
        ("POST", "/v1/nightly-runs"),
    ],
)
def test_missing_or_bad_tokens_are_a_401(
    worker: Worker, unchanged: None, authorization: str | None, method: str, path: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    with contextlib.suppress(ValueError):  # http.client refuses some header values itself: send those raw
        status, raw, _ = worker.request(method, path, b'{"email": "auth@example.com"}', headers, token=None)
        assert status == 401 or (status == 400 and "\x00" in (authorization or "")), raw[:300]
        return
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    status, _ = worker.raw(head.encode() + f"Authorization: {authorization}\r\n\r\n{{}}".encode())
    assert status in (400, 401)


def test_the_token_in_the_query_string_is_not_accepted(worker: Worker, unchanged: None) -> None:
    status, _, _ = worker.request("GET", f"/v1/unsubscribes?access_token={TOKEN}", token=None)
    assert status == 401


# ---- emails that look like code ------------------------------------------------------------------------

SQL_LIKE = [
    "a'or'1'='1@example.com",
    "x'--@example.com",
    "o'brien@example.com",
    "robert');drop_table@example.com",
    "admin'/*@example.com",
    "%27%20OR%201=1@example.com",
    "a+tag;select*@example.com",
    "{{7*7}}@example.com",
    "${jndi:ldap}@example.com",
]
UNICODE = [
    "josé@example.com",
    "ÜBER@Bücher.de",
    "用户@例子.广告",
    "θσε@παράδειγμα.δοκιμή",
    "a\u200b@example.com",
    "a\u202e@example.com",
    "\uff41\uff42\uff43@example.com",
    "\U0001f600@example.com",
]


def _get_email(worker: Worker, email: str) -> tuple[int, Any]:
    status, raw, _ = worker.request("GET", "/v1/unsubscribes/" + urllib.parse.quote(email, safe="@"))
    return status, _json(raw)


@pytest.mark.parametrize("email", SQL_LIKE + UNICODE)
def test_code_looking_and_unicode_emails_are_stored_safely_or_refused(worker: Worker, email: str) -> None:
    before = worker.counts()
    status, answer = worker.post_json({"email": email, "source": "hostile-test"})
    after = worker.counts()
    if status == 202:
        assert after["unsubscribes"] == before["unsubscribes"] + 1
        got_status, got = _get_email(worker, email)
        assert got_status == 200, got
        assert got["email"] == normalize_email(email) and got["unsubscribed"] is True  # one form: IDNA domain
    else:
        assert status == 400, answer
        assert answer["details"][0]["field"] == "email"
        assert after == before
    assert set(worker.counts()) == set(TABLES), "every table is still there"
    assert worker.alive()


def test_an_address_in_another_unicode_normal_form_is_the_same_address(worker: Worker) -> None:
    """Suppression must not miss a person because their client sent é as e + combining accent."""
    composed = unicodedata.normalize("NFC", "renée.unicode@example.com")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    status, answer = worker.post_json({"email": decomposed})
    assert status == 202, answer
    found, answer = _get_email(worker, composed)
    assert found == 200 and answer["unsubscribed"] is True, answer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b'{"email": "a\\ud800@example.com"}', "email", id="surrogate-in-email"),
        pytest.param(b'{"email": "a\\u0000@example.com"}', "email", id="nul-in-email"),
        pytest.param(b'{"email": "a@example.com", "source": "s\\udfff"}', "source", id="surrogate-in-source"),
        pytest.param(b'{"email": "a@example.com", "source": "s\\u0000s"}', "source", id="nul-in-source"),
        pytest.param(b'{"email": "a@example.com", "eventId": "e\\u001b[2Je"}', "eventId", id="escape-in-event-id"),
        pytest.param(
            b'{"unsubscribes": [{"email": "ok@example.com"}, {"email": "b@x.io", "eventId": "\\ud83d"}]}',
            "eventId",
            id="surrogate-in-second-item",
        ),
    ],
)
def test_text_no_ledger_can_store_is_a_400_naming_the_field(
    worker: Worker, unchanged: None, body: bytes, field: str
) -> None:
    status, raw, _ = worker.request("POST", "/v1/unsubscribes", body, {"Content-Type": "application/json"})
    assert status == 400, raw[:300]
    assert [d["field"] for d in _json(raw)["details"]] == [field]


def test_a_unicode_domain_and_its_a_label_are_one_address(worker: Worker) -> None:
    status, answer = worker.post_json({"email": "jane.idn@bücher.de"})
    assert status == 202, answer
    for spelling in ("jane.idn@xn--bcher-kva.de", "Jane.IDN@BÜCHER.de"):
        found, answer = _get_email(worker, spelling)
        assert found == 200 and answer["unsubscribed"] is True, (spelling, answer)


@pytest.mark.parametrize("email", ["a.local@corp.local", "a@localhost", "a@b.test", "a@[192.0.2.1]"])
def test_special_use_and_single_label_domains_are_addresses(worker: Worker, email: str) -> None:
    status, answer = worker.post_json({"email": email})
    assert status == 202, answer
    found, answer = _get_email(worker, email)
    assert found == 200 and answer["unsubscribed"] is True, answer


# ---- paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/unsubscribes/..",
        "/v1/unsubscribes/../livez",
        "/v1/unsubscribes/%2e%2e",
        "/v1/unsubscribes/%2e%2e%2fmetrics",
        "/v1/unsubscribes/a%2Fb@example.com",
        "/v1/unsubscribes/a%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/unsubscribes/%00",
        "/v1/unsubscribes/a@example.com%0d%0aX-Injected:%201",
        "/v1/unsubscribes/" + "a" * 7000 + "@example.com",
        "/v1/unsubscribes/" + "%41" * 3000,
        "/v1/unsubscribes/%ff%fe",
        "/v1/unsubscribes/a@example.com?cursor=../../x",
        "/v1/unsubscribes?limit=-1",
        "/v1/unsubscribes?limit=99999999999999999999",
        "/v1/unsubscribes?cursor=%00%00",
        "/v1/unsubscribes?cursor=" + "A" * 5000,
    ],
)
def test_path_tricks_get_a_4xx(worker: Worker, unchanged: None, path: str) -> None:
    status, raw = worker.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert 400 <= status < 500, raw[:300]
    assert b"X-Injected" not in raw.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/unsubscribes",
        "//v1/unsubscribes",
        "/v1//unsubscribes",
        "/v1/./unsubscribes",
        "/livez/../v1/unsubscribes",
        "/%76%31/unsubscribes",
        "/V1/unsubscribes",
        "/v1/unsubscribes/",
        "/v1/unsubscribes/a@example.com/",
        "/v1/unsubscribes;x=1",
    ],
)
def test_no_path_spelling_gets_past_the_token_check(worker: Worker, unchanged: None, path: str) -> None:
    status, raw = worker.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status in (401, 404, 400), raw[:300]


def test_path_stored_address_with_a_slash_is_found_by_its_encoded_form(worker: Worker) -> None:
    email = "slash/part@example.com"
    status, answer = worker.post_json({"email": email})
    if status != 202:  # refusing a slash in an address is fine too
        assert status == 400 and answer["details"][0]["field"] == "email"
        return
    found, answer = _get_email(worker, email)
    assert found == 200 and answer["email"] == email


# ---- replays -------------------------------------------------------------------------------------------


def test_replayed_event_ids_change_nothing(worker: Worker) -> None:
    item = {"email": "replay@example.com", "eventId": "hostile-replay-1", "source": "hostile-test"}
    status, answer = worker.post_json(item)
    assert status == 202, answer
    once = worker.counts()
    history_once = _get_email(worker, "replay@example.com")[1]["history"]
    for body in (item, {"unsubscribes": [item, item, item]}):
        status, answer = worker.post_json(body)
        assert status == 202, answer
    assert worker.counts() == once
    assert _get_email(worker, "replay@example.com")[1]["history"] == history_once


# ---- slow clients, odd methods -------------------------------------------------------------------------


def test_slow_clients_are_timed_out_and_the_worker_keeps_serving(worker: Worker) -> None:
    before = worker.counts()
    slow_headers = socket.create_connection(("127.0.0.1", worker.port))
    slow_headers.sendall(b"POST /v1/unsubscribes HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    slow_body = socket.create_connection(("127.0.0.1", worker.port))
    slow_body.sendall(_post_headers(200) + b'{"email": "slow')
    crowd = [socket.create_connection(("127.0.0.1", worker.port)) for _ in range(100)]
    for s in crowd:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
    try:
        # While all of them stall, the worker serves everyone else.
        assert worker.alive()
        status, answer = worker.post_json({"email": "while-slow@example.com"})
        assert status == 202, answer
        ended: dict[str, float | None] = {"headers": None, "body": None}
        start = time.monotonic()
        for s in (slow_headers, slow_body):
            s.settimeout(0.5)
        while None in ended.values() and time.monotonic() - start < SLOW_CLIENT_BOUND_SECONDS:
            for name, s in (("headers", slow_headers), ("body", slow_body)):
                if ended[name] is None:
                    with contextlib.suppress(TimeoutError):
                        s.recv(4096)  # an answer (408) or the end of the connection: either way it was cut off
                        ended[name] = time.monotonic() - start
        assert None not in ended.values(), f"the worker waits forever for stalled clients: {ended}"
    finally:
        for s in (slow_headers, slow_body, *crowd):
            s.close()
    after = worker.counts()
    assert after["unsubscribes"] == before["unsubscribes"] + 1, "only the complete request was stored"
    assert worker.alive()


def _metric_series(worker: Worker) -> list[str]:
    status, raw, _ = worker.request("GET", "/metrics", token=None)
    assert status == 200
    return [line for line in raw.decode().splitlines() if line and not line.startswith("#")]


def test_odd_methods_and_paths_do_not_grow_the_metrics_without_bound(worker: Worker, unchanged: None) -> None:
    _metric_series(worker)  # the scrape itself adds its own series once
    for n in range(2):  # the first junk request of each kind may add its series once
        worker.raw(f"HOSTILE{n} /livez HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        worker.raw(f"GET /random/path/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    before = len(_metric_series(worker))
    for n in range(2, 42):
        worker.raw(f"HOSTILE{n} /livez HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        worker.raw(f"GET /random/path/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    grown = len(_metric_series(worker)) - before
    assert grown <= 2, f"{grown} new metric series from 80 junk requests: labels take client-chosen values"
    assert worker.alive()
