"""The on-disk staging that sorts and de-duplicates both sides before the merge join."""

from __future__ import annotations

import random
from pathlib import Path

from unsubscribe_sync.nightly.planner import Action, plan_object
from unsubscribe_sync.nightly.report import (
    COUNT_KEYS,
    contract_line,
    termination_log_path,
    termination_message,
    write_termination_log,
)
from unsubscribe_sync.nightly.staging import SortedStage
from unsubscribe_sync.salesforce.types import OptedOutRecord


def test_stage_sorts_in_code_point_order_and_dedupes(tmp_path: Path) -> None:
    # mixed-case ids: code-point order puts upper case before lower case (a locale collation would not)
    ids = ["003000000000aAAAAA", "003000000000AAAAAA", "003000000000bAAAAA", "003000000000BAAAAA"]
    shuffled = ids * 2
    random.Random(4).shuffle(shuffled)
    with SortedStage("Contact", tmp_path) as stage:
        read = stage.load_salesforce(
            OptedOutRecord(i, "Contact", None if n % 3 else f"{i}@x.io") for n, i in enumerate(shuffled)
        )
        stage.load_ledger(
            [(ids[1], "b@x.io", True), (ids[1], "a@x.io", True), (ids[1], "a@x.io", True), (ids[0], "c@x.io", False)]
        )
        assert read == 8
        assert stage.count() == (4, 3)
        got = list(stage.salesforce())
        assert [r.id for r in got] == sorted(ids)
        assert all(r.object == "Contact" for r in got)
        # a duplicate with an email wins over one without
        with_email = {i for n, i in enumerate(shuffled) if n % 3 == 0}
        assert {r.id for r in got if r.email} == with_email
        assert list(stage.ledger()) == [(ids[1], "a@x.io"), (ids[1], "b@x.io"), (ids[0], "c@x.io")]
        # the staged streams satisfy the planner's order check
        entries = list(plan_object("Contact", stage.salesforce(), stage.ledger()))
        assert len(entries) == 4
        path = stage.path
        assert path.exists()
    assert not path.exists()


def test_stage_streams_large_inputs(tmp_path: Path) -> None:
    n = 50_000
    order = list(range(n))
    random.Random(1).shuffle(order)
    with SortedStage("Lead", tmp_path) as stage:
        stage.load_salesforce(OptedOutRecord(f"00Q{k:015d}", "Lead", f"l{k}@x.io") for k in order if k % 2)
        stage.load_ledger((f"00Q{k:015d}", f"l{k}@x.io", False) for k in order if k % 3 == 0)
        actions = [e.action for e in plan_object("Lead", stage.salesforce(), stage.ledger())]
    expected_to = sum(1 for k in range(n) if k % 3 == 0 and not k % 2)
    expected_from = sum(1 for k in range(n) if k % 2 and k % 3)
    assert actions.count(Action.TO_SALESFORCE) == expected_to
    assert actions.count(Action.FROM_SALESFORCE) == expected_from
    assert actions.count(Action.IN_SYNC) == sum(1 for k in range(n) if k % 2 and k % 3 == 0)


def test_contract_line_is_exact() -> None:
    line = contract_line({"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 1, "failed": 0, "x": 9})
    assert line == '{"toSalesforce":3,"fromSalesforce":2,"skippedNoSalesforceId":1,"failed":0}'


def test_termination_message_and_path(tmp_path: Path) -> None:
    target = tmp_path / "termination"
    assert termination_log_path({"UNSUBSCRIBE_SYNC_TERMINATION_LOG": str(target)}) == target
    summary = {key: 1 for key in COUNT_KEYS} | {
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:01:00Z",
        "outcome": "Failed",
        "error": "x" * 10_000,
    }
    assert write_termination_log(summary, target)
    text = target.read_text()
    assert len(text.encode()) <= 4096
    assert '"outcome":"Failed"' in text and '"toSalesforce":1' in text
    assert termination_message({})[:1] == "{"
    assert not write_termination_log(summary, tmp_path / "missing-dir" / "file")
    assert not write_termination_log(summary, None)


def test_the_ids_already_owed_a_write_are_told_apart_in_ascending_order(tmp_path: Path) -> None:
    ids = [f"003{k:015d}" for k in range(10)]
    with SortedStage("Contact", tmp_path) as stage:
        stage.load_ledger((sid, f"{sid}@x.io", k % 3 == 0) for k, sid in reversed(list(enumerate(ids))))
        stage.load_ledger([(ids[3], "other@x.io", True)])  # a second address of an owed id
        owed = stage.owed()
        assert [sid in owed for sid in ids] == [k % 3 == 0 for k in range(10)]
        assert "003999999999999999" not in owed  # past the last one


def test_pages_of_the_staged_sides_lose_no_row_where_one_id_spans_pages(tmp_path: Path) -> None:
    # 7,000 addresses on one id: the keyset (id, email) must carry on inside it from one page of 5,000 to the next
    many = [("003000000000001AAA", f"a{k:05d}@x.io", k % 2 == 0) for k in range(7_000)]
    few = [(f"003{k:015d}", f"b{k}@x.io", True) for k in range(2, 6_000)]
    rows = many + few
    random.Random(7).shuffle(rows)
    with SortedStage("Contact", tmp_path) as stage:
        stage.load_ledger(rows)
        assert list(stage.ledger()) == sorted((sid, email) for sid, email, _ in rows)
        owed = stage.owed()
        assert all(sid in owed for sid in sorted({sid for sid, _, is_owed in rows if is_owed}))


def test_email_matches_come_in_address_order_across_pages(tmp_path: Path) -> None:
    from unsubscribe_sync.nightly.email_mode import AddressStage

    records = [{"Id": f"003{k:012d}", "Email": f"m{k % 6_500:05d}@x.io"} for k in range(13_000)]
    with AddressStage(tmp_path) as stage:
        stage.load_records([records[:7_000], records[7_000:]])
        stage.load_addresses(f"m{k:05d}@x.io" for k in range(0, 6_500, 1))
        matches = list(stage.matches())
    assert len(matches) == 13_000
    assert [email for _, email in matches] == sorted(email for _, email in matches)
    assert len(set(matches)) == 13_000
