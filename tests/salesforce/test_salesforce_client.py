"""The Salesforce connector against the sandbox over real HTTPS: auth, writes, reads, fields, errors, secrets."""

from __future__ import annotations

import io
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.logs import configure_logging
from unsubscribe_sync.salesforce.client import MAX_REAUTH, SalesforceClient
from unsubscribe_sync.salesforce.types import (
    AuthenticationError,
    ErrorClass,
    FieldRequirementError,
    SalesforceCallError,
    SalesforceError,
)

EMAIL_FIELD = "HasOptedOutOfEmail"
CANARY = "canary-secret-7f3a91"


class Recorder:
    """on_request callback that counts (operation, status) pairs."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, operation: str, status: str) -> None:
        with self._lock:
            self.calls[(operation, status)] += 1

    def count(self, operation: str, status: str | None = None) -> int:
        return sum(n for (op, st), n in self.calls.items() if op == operation and (status is None or st == status))


MakeClient = Callable[..., tuple[SalesforceClient, Recorder]]


@pytest.fixture
def make_client(sandbox: SandboxHandle, tmp_path: Path) -> Iterator[MakeClient]:
    clients: list[SalesforceClient] = []

    def make(
        grant: str = "client_credentials", *, creds_dir: Path | None = None, **cfg: Any
    ) -> tuple[SalesforceClient, Recorder]:
        options = {k: cfg.pop(k) for k in list(cfg) if k in ("query_batch_size", "bulk_query_page_size")}
        directory = creds_dir or sandbox.write_credentials(tmp_path / f"creds-{len(clients)}", grant)
        settings: dict[str, Any] = {"loginUrl": sandbox.url, "credentialsDir": directory, "caFile": sandbox.ca_file}
        settings.update(cfg)
        recorder = Recorder()
        client = SalesforceClient.from_config(
            SalesforceConfig(**settings), on_request=recorder, bulk_poll_interval=(0.02, 0.2), **options
        )
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("json", "debug", stream=buffer)
    yield buffer
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


def without_default_marketo_field(sandbox: SandboxHandle) -> SandboxHandle:
    """The sandbox installs the Marketo Sales Opt Out field by default; these tests install their own."""
    for obj in ("Contact", "Lead"):
        sandbox.state.remove_field(obj, "ToutApp__Marketo_Sales_Opt_Out__c")
    return sandbox


def seeded(sandbox: SandboxHandle, sobject: str, n: int, *, opted_out: bool = False) -> list[str]:
    """``n`` new live records (no converted, no deleted ones), their IDs in creation order."""
    before = set(sandbox.state.find_ids(sobject))
    ratio = 1.0 if opted_out else 0.0
    sandbox.state.seed(
        **{"contacts" if sobject == "Contact" else "leads": n},
        opted_out_ratio=ratio,
        converted_ratio=0.0,
        deleted_ratio=0.0,
    )
    new = [i for i in sandbox.state.find_ids(sobject) if i not in before]
    assert len(new) == n
    return new


def contacts(sandbox: SandboxHandle, n: int, *, opted_out: bool = False) -> list[str]:
    return seeded(sandbox, "Contact", n, opted_out=opted_out)


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize("grant", ["client_credentials", "jwt"])
def test_both_grants_log_in_and_write(sandbox: SandboxHandle, make_client: MakeClient, grant: str) -> None:
    client, recorder = make_client(grant)
    assert client.login() == sandbox.url
    (record,) = contacts(sandbox, 1)
    assert client.write_opt_outs("Contact", [record], EMAIL_FIELD)[0].success
    assert sandbox.state.get_record(record)[EMAIL_FIELD] is True  # type: ignore[index]
    assert recorder.count("token", "200") == 1


def _refused(make_client: MakeClient, creds_dir: Path) -> AuthenticationError:
    client, recorder = make_client(creds_dir=creds_dir)
    with pytest.raises(AuthenticationError) as info:
        client.login()
    assert recorder.count("token", "400") == 1
    assert info.value.error_class is ErrorClass.CONFIGURATION
    return info.value


def test_wrong_client_secret_is_refused_without_echoing_it(
    sandbox: SandboxHandle, make_client: MakeClient, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    creds = sandbox.write_credentials(tmp_path / "c")
    (creds / "client_secret").write_text(CANARY)
    exc = _refused(make_client, creds)
    assert exc.error_code == "invalid_client"
    for text in (str(exc), repr(exc), captured_logs.getvalue()):
        assert CANARY not in text


def test_unknown_client_is_refused(sandbox: SandboxHandle, make_client: MakeClient, tmp_path: Path) -> None:
    creds = sandbox.write_credentials(tmp_path / "c")
    (creds / "client_id").write_text("3MVG9-unknown-client")
    exc = _refused(make_client, creds)
    assert exc.error_code == "invalid_client_id" and "3MVG9-unknown-client" in str(exc)


def test_wrong_jwt_key_is_refused(sandbox: SandboxHandle, make_client: MakeClient, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    creds = sandbox.write_credentials(tmp_path / "j", "jwt")
    (creds / "private_key").write_text(pem)
    exc = _refused(make_client, creds)
    assert exc.error_code == "invalid_grant"
    assert "PRIVATE KEY" not in str(exc) and pem[40:80] not in str(exc)


def test_unknown_jwt_user_is_refused(sandbox: SandboxHandle, make_client: MakeClient, tmp_path: Path) -> None:
    creds = sandbox.write_credentials(tmp_path / "j", "jwt")
    (creds / "username").write_text("someone-else@example.com")
    assert _refused(make_client, creds).error_code == "invalid_grant"


def test_reauthenticates_when_sessions_expire_mid_run(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 3)
    assert client.write_opt_outs("Contact", ids[:1], EMAIL_FIELD)[0].success
    assert sandbox.state.expire_sessions() == 1
    assert client.write_opt_outs("Contact", ids[1:], EMAIL_FIELD)[1].success
    assert recorder.count("token", "200") == 2
    assert recorder.count("collections_update", "401") == 1
    assert recorder.count("collections_update", "200") == 2
    sandbox.state.expire_sessions()
    assert sum(1 for _ in client.iter_opted_out("Contact", EMAIL_FIELD, use_bulk=True)) == 3
    assert recorder.count("token", "200") == 3


def test_reauthentication_is_bounded_when_sessions_keep_expiring(
    sandbox: SandboxHandle, make_client: MakeClient
) -> None:
    client, recorder = make_client()
    sandbox.state.set_session_lifetime(0.000001)  # every token is dead on arrival
    with pytest.raises(SalesforceCallError) as info:
        client.describe("Contact")
    assert info.value.error_code == "INVALID_SESSION_ID"
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert recorder.count("token", "200") == 1 + MAX_REAUTH
    assert recorder.count("describe", "401") == 1 + MAX_REAUTH


def test_threads_share_one_renewal(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 8)
    client.login()
    sandbox.state.expire_sessions()
    errors: list[BaseException] = []

    def write(record: str) -> None:
        try:
            assert client.write_opt_outs("Contact", [record], EMAIL_FIELD)[0].success
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert recorder.count("token", "200") == 2, "one initial token, one renewal shared by every thread"
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 8


# ---------------------------------------------------------------- writes and per-record errors


def test_450_ids_take_three_collections_calls(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 450)
    results = client.write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert [r.id for r in results] == ids and all(r.success for r in results)
    assert recorder.count("collections_update") == 3
    assert sandbox.state.call_counts()["collections"] == 3
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 450


def test_empty_writes_make_no_call(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    assert client.write_opt_outs("Contact", [], EMAIL_FIELD) == []
    assert client.bulk_write_opt_outs("Contact", [], EMAIL_FIELD) == []
    assert sum(recorder.calls.values()) == 0


def test_per_record_errors_in_input_order(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    ok1, locked, deleted, ok2 = contacts(sandbox, 4)
    sandbox.state.lock_records([locked])
    sandbox.state.delete_record(deleted)
    ids = [ok1, locked, deleted, "003garbage", ok2]
    results = client.write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert [r.id for r in results] == ids
    assert [r.success for r in results] == [True, False, False, False, True]
    assert [(r.error_code, r.error_class) for r in results[1:4]] == [
        ("UNABLE_TO_LOCK_ROW", ErrorClass.TRANSIENT),
        ("ENTITY_IS_DELETED", ErrorClass.PERMANENT),
        ("MALFORMED_ID", ErrorClass.PERMANENT),
    ]
    assert all(r.message for r in results[1:4])


def test_converted_lead_is_permanent(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    converted = sandbox.state.add_record("Lead", "l@example.com", converted=True)
    open_lead = sandbox.state.add_record("Lead", "m@example.com")
    results = client.write_opt_outs("Lead", [converted, open_lead], EMAIL_FIELD)
    assert results[0].error_code == "CANNOT_UPDATE_CONVERTED_LEAD" and results[0].error_class is ErrorClass.PERMANENT
    assert results[1].success


def test_outage_is_transient_and_counted(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 2)
    client.login()
    sandbox.state.set_unavailable(None)
    with pytest.raises(SalesforceCallError) as info:
        client.write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert info.value.error_class is ErrorClass.TRANSIENT and info.value.status == 503
    assert recorder.count("collections_update", "503") == 1
    sandbox.state.clear_unavailable()
    assert all(r.success for r in client.write_opt_outs("Contact", ids, EMAIL_FIELD))


def test_request_limit_exceeded_is_rate_limited(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 1)
    client.login()
    sandbox.state.set_request_limit_exceeded(True)
    with pytest.raises(SalesforceCallError) as info:
        client.write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert info.value.error_class is ErrorClass.RATE_LIMITED
    assert info.value.error_code == "REQUEST_LIMIT_EXCEEDED" and info.value.status == 403
    assert recorder.count("collections_update", "403") == 1


def test_unknown_field_is_a_configuration_error(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    ids = contacts(sandbox, 2)
    with pytest.raises(SalesforceCallError) as info:
        client.write_opt_outs("Contact", ids, "Nope__c")
    assert info.value.error_class is ErrorClass.CONFIGURATION
    assert info.value.error_code == "INVALID_FIELD"
    assert "field-level security" in str(info.value)


def test_hidden_field_write_is_a_configuration_error(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    sandbox.state.configure_field("Contact", "Mkto__c", label="Marketo Sales Opt Out", hidden=True)
    with pytest.raises(SalesforceCallError) as info:
        client.write_opt_outs("Contact", contacts(sandbox, 1), "Mkto__c")
    assert info.value.error_class is ErrorClass.CONFIGURATION


def test_timeout_is_transient_and_counted_as_error(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client(requestTimeoutSeconds=0.3)
    client.login()
    sandbox.state.set_latency(1500)
    with pytest.raises(SalesforceCallError) as info:
        client.describe("Contact")
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert recorder.count("describe", "error") == 1


def test_connection_refused_is_transient(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    from tests.fixtures.common import free_port

    client, recorder = make_client(loginUrl=f"https://127.0.0.1:{free_port()}")
    with pytest.raises(SalesforceCallError) as info:
        client.login()
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert recorder.count("token", "error") == 1


def test_untrusted_certificate_is_a_configuration_error(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client(caFile=None)
    with pytest.raises(SalesforceError) as info:
        client.login()
    assert "token request" in str(info.value) and "salesforce.caFile" in str(info.value)
    assert recorder.count("token", "error") == 1


def test_insecure_skip_tls_verify_works_and_warns(
    sandbox: SandboxHandle, make_client: MakeClient, captured_logs: io.StringIO
) -> None:
    client, _ = make_client(caFile=None, insecureSkipTlsVerify=True)
    assert client.login() == sandbox.url
    # one warning per client: its token and API sessions share one TLS context
    assert captured_logs.getvalue().count("tls_verification_disabled") == 1


# ---------------------------------------------------------------- bulk


def test_bulk_ingest_maps_results_per_id(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    ids = contacts(sandbox, 300)
    sandbox.state.delete_record(ids[5])
    sandbox.state.lock_records([ids[7]])
    wanted = [*ids, "003garbage"]
    results = client.bulk_write_opt_outs("Contact", wanted, EMAIL_FIELD)
    assert [r.id for r in results] == wanted
    failed = {r.id: (r.error_code, r.error_class) for r in results if not r.success}
    assert failed == {
        ids[5]: ("ENTITY_IS_DELETED", ErrorClass.PERMANENT),
        ids[7]: ("UNABLE_TO_LOCK_ROW", ErrorClass.TRANSIENT),
        "003garbage": ("MALFORMED_ID", ErrorClass.PERMANENT),
    }
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 298
    assert recorder.count("collections_update") == 0 and recorder.count("bulk_ingest") >= 5
    assert sandbox.state.call_counts()["bulkIngestCreate"] == 1


def test_bulk_ingest_where_every_record_succeeded_downloads_no_results(
    sandbox: SandboxHandle, make_client: MakeClient
) -> None:
    client, _ = make_client()
    ids = contacts(sandbox, 300)
    before = sandbox.state.call_counts()
    results = client.bulk_write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert [r.id for r in results] == ids and all(r.success for r in results)
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 300
    calls = sandbox.state.call_counts()
    assert calls.get("bulkIngestResults", 0) == before.get("bulkIngestResults", 0)  # the job's counts said so
    assert calls["bulkIngestCreate"] == before.get("bulkIngestCreate", 0) + 1


def test_bulk_ingest_with_a_failed_record_reads_the_results(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    ids = contacts(sandbox, 50)
    sandbox.state.delete_record(ids[3])
    before = sandbox.state.call_counts().get("bulkIngestResults", 0)
    results = client.bulk_write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert [r.id for r in results if not r.success] == [ids[3]]
    assert sandbox.state.call_counts()["bulkIngestResults"] == before + 2  # successes and failures


def test_bulk_ingest_with_15_character_ids(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    ids = [i[:15] for i in contacts(sandbox, 3)]
    results = client.bulk_write_opt_outs("Contact", ids, EMAIL_FIELD)
    assert [r.id for r in results] == ids and all(r.success for r in results)


def test_bulk_ingest_with_unknown_field_is_a_configuration_error(
    sandbox: SandboxHandle, make_client: MakeClient
) -> None:
    client, _ = make_client()
    with pytest.raises(SalesforceCallError) as info:
        client.bulk_write_opt_outs("Contact", contacts(sandbox, 2), "Nope__c")
    assert info.value.error_class is ErrorClass.CONFIGURATION


# ---------------------------------------------------------------- reads


def test_rest_query_pages_through_next_records_url(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client(query_batch_size=200)
    opted = set(contacts(sandbox, 450, opted_out=True))
    contacts(sandbox, 20)  # not opted out
    records = list(client.iter_opted_out("Contact", EMAIL_FIELD, use_bulk=False))
    assert {r.id for r in records} == opted and len(records) == 450
    assert {r.object for r in records} == {"Contact"}
    assert all(r.email and r.email.endswith("@example.com") for r in records)
    assert recorder.count("query") == 3


def test_leads_exclude_converted_and_both_paths_agree(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client(bulk_query_page_size=100)
    open_leads = set(seeded(sandbox, "Lead", 250, opted_out=True))
    sandbox.state.add_record("Lead", "conv@example.com", opted_out=True, converted=True)
    sandbox.state.add_record("Lead", None, opted_out=False)
    rest = {r.id for r in client.iter_opted_out("Lead", EMAIL_FIELD, use_bulk=False)}
    bulk = list(client.iter_opted_out("Lead", EMAIL_FIELD, use_bulk=True))
    assert rest == open_leads == {r.id for r in bulk}
    assert len(bulk) == 250
    assert sandbox.state.call_counts()["bulkQueryResults"] == 3, "pages of 100 by locator"
    assert client.count_opted_out("Lead", EMAIL_FIELD) == 250


def test_iter_opted_out_chooses_by_count(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client(bulkThreshold=10)
    contacts(sandbox, 9, opted_out=True)
    assert len(list(client.iter_opted_out("Contact", EMAIL_FIELD))) == 9
    assert recorder.count("bulk_query") == 0
    contacts(sandbox, 1, opted_out=True)
    assert len(list(client.iter_opted_out("Contact", EMAIL_FIELD))) == 10
    assert recorder.count("bulk_query") > 0


@pytest.mark.parametrize("use_bulk", [False, True])
def test_query_on_unknown_field_is_a_configuration_error(
    sandbox: SandboxHandle, make_client: MakeClient, use_bulk: bool
) -> None:
    client, _ = make_client()
    with pytest.raises(SalesforceCallError) as info:
        list(client.iter_opted_out("Contact", "Nope__c", use_bulk=use_bulk))
    assert info.value.error_class is ErrorClass.CONFIGURATION, str(info.value)


def test_records_without_email_have_none(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    sandbox.state.add_record("Contact", None, opted_out=True)
    for use_bulk in (False, True):
        (record,) = client.iter_opted_out("Contact", EMAIL_FIELD, use_bulk=use_bulk)
        assert record.email is None and len(record.id) == 18


def test_limits_and_api_usage(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, recorder = make_client()
    assert client.api_usage() is None
    sandbox.state.set_daily_api_limit(5000, used=1200)
    client.describe("Contact")
    seen = client.api_usage()
    assert seen is not None and seen.max == 5000 and seen.used >= 1201
    usage = client.limits()
    assert usage.max == 5000 and usage.used >= 1202 and 0.2 < usage.ratio < 0.3
    assert recorder.count("limits", "200") == 1


# ---------------------------------------------------------------- fields


def test_email_opt_out_field(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    assert client.resolve_field("EmailOptOut", None, ["Contact", "Lead"]) == EMAIL_FIELD


def test_default_sandbox_marketo_field_is_discovered(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    assert client.resolve_field("MarketoSalesOptOut", None, ["Contact", "Lead"]) == "ToutApp__Marketo_Sales_Opt_Out__c"


def test_configured_marketo_field(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    for obj in ("Contact", "Lead"):
        sandbox.state.configure_field(obj, "ToutApp__Sales_Opt_Out__c", label="Anything")
    assert (
        client.resolve_field("MarketoSalesOptOut", "ToutApp__Sales_Opt_Out__c", ["Contact", "Lead"])
        == "ToutApp__Sales_Opt_Out__c"
    )


@pytest.mark.parametrize("label", ["Marketo Sales Opt Out", "MSE - Opt Out"])
def test_marketo_field_discovered_by_label(sandbox: SandboxHandle, make_client: MakeClient, label: str) -> None:
    client, _ = make_client()
    without_default_marketo_field(sandbox)
    for obj in ("Contact", "Lead"):
        sandbox.state.configure_field(obj, "ToutApp__MSE_Opt_Out__c", label=label)
    assert client.resolve_field("MarketoSalesOptOut", None, ["Contact", "Lead"]) == "ToutApp__MSE_Opt_Out__c"


def test_marketo_field_missing_on_one_object(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    without_default_marketo_field(sandbox)
    sandbox.state.configure_field("Contact", "ToutApp__MSE_Opt_Out__c", label="MSE - Opt Out")
    report = client.check_fields("MarketoSalesOptOut", None, ["Contact", "Lead"])
    assert report.objects["Contact"].ok and not report.objects["Lead"].ok
    with pytest.raises(FieldRequirementError, match=r"^Lead: .*field-level security"):
        client.resolve_field("MarketoSalesOptOut", None, ["Contact", "Lead"])


def test_marketo_field_not_updateable(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    without_default_marketo_field(sandbox)
    sandbox.state.configure_field("Contact", "Mkto__c", label="Marketo Sales Opt Out", updateable=False)
    with pytest.raises(FieldRequirementError, match="Mkto__c on Contact is not updateable"):
        client.resolve_field("MarketoSalesOptOut", None, ["Contact"])


def test_hidden_field_looks_missing(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    sandbox.state.configure_field("Contact", "Mkto__c", label="Marketo Sales Opt Out", hidden=True)
    with pytest.raises(FieldRequirementError, match="field-level security") as info:
        client.resolve_field("MarketoSalesOptOut", "Mkto__c", ["Contact"])
    assert info.value.error_class is ErrorClass.CONFIGURATION


def test_marketo_field_with_different_names(sandbox: SandboxHandle, make_client: MakeClient) -> None:
    client, _ = make_client()
    without_default_marketo_field(sandbox)
    sandbox.state.configure_field("Contact", "A__c", label="MSE - Opt Out")
    sandbox.state.configure_field("Lead", "B__c", label="MSE - Opt Out")
    with pytest.raises(FieldRequirementError, match="different API names"):
        client.resolve_field("MarketoSalesOptOut", None, ["Contact", "Lead"])


# ---------------------------------------------------------------- secrets never leak


def test_no_secret_or_token_in_any_error_or_log(
    sandbox: SandboxHandle, make_client: MakeClient, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    creds = sandbox.write_credentials(tmp_path / "ok")
    client, _ = make_client(creds_dir=creds)
    ids = contacts(sandbox, 2)
    token = client.tokens.token().access_token
    texts: list[str] = []

    def collect(fn: Callable[[], object]) -> None:
        try:
            fn()
        except SalesforceError as exc:
            texts.extend([str(exc), repr(exc), str(exc.args)])

    sandbox.state.expire_sessions()
    collect(lambda: client.write_opt_outs("Contact", ids, EMAIL_FIELD))  # re-auth path
    sandbox.state.set_unavailable(None)
    collect(lambda: client.write_opt_outs("Contact", ids, EMAIL_FIELD))
    collect(lambda: client.bulk_write_opt_outs("Contact", ids, EMAIL_FIELD))
    sandbox.state.clear_unavailable()
    sandbox.state.set_request_limit_exceeded(True)
    collect(lambda: list(client.iter_opted_out("Contact", EMAIL_FIELD)))
    sandbox.state.set_request_limit_exceeded(False)
    collect(lambda: client.write_opt_outs("Contact", ids, "Nope__c"))
    sandbox.state.set_session_lifetime(0.000001)
    sandbox.state.expire_sessions()
    collect(lambda: client.limits())
    (creds / "client_secret").write_text(CANARY)
    bad, _ = make_client(creds_dir=creds)
    collect(bad.login)
    assert len(texts) >= 18
    secret = sandbox.client_secret
    logs = captured_logs.getvalue()
    for text in [*texts, logs]:
        assert CANARY not in text and secret not in text and token not in text
        assert "Bearer " not in text
