"""When a finished Bulk 2.0 ingest job's counts prove every record written (salesforce/client.py)."""

from __future__ import annotations

from typing import Any

import pytest

from unsubscribe_sync.salesforce.client import every_record_succeeded

CASES: list[tuple[str, dict[str, Any], int, bool]] = [
    ("every uploaded record processed and none failed: each succeeded",
     {"numberRecordsProcessed": 24_000, "numberRecordsFailed": 0}, 24_000, True),
    ("one record failed: the results say which", {"numberRecordsProcessed": 24_000, "numberRecordsFailed": 1},
     24_000, False),
    ("fewer processed than uploaded: some were not processed",
     {"numberRecordsProcessed": 23_999, "numberRecordsFailed": 0}, 24_000, False),
    ("more processed than uploaded: the counts are not this upload's",
     {"numberRecordsProcessed": 24_001, "numberRecordsFailed": 0}, 24_000, False),
    ("no counts in the job's answer: not known", {}, 24_000, False),
    ("the failed count missing: not known", {"numberRecordsProcessed": 24_000}, 24_000, False),
    ("counts as strings: not trusted", {"numberRecordsProcessed": "24000", "numberRecordsFailed": "0"}, 24_000,
     False),
    ("a boolean is not a count", {"numberRecordsProcessed": True, "numberRecordsFailed": False}, 1, False),
    ("null counts: not known", {"numberRecordsProcessed": None, "numberRecordsFailed": None}, 0, False),
]  # fmt: skip


@pytest.mark.parametrize(("behaviour", "job", "uploaded", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_record_succeeded(behaviour: str, job: dict[str, Any], uploaded: int, expected: bool) -> None:
    assert every_record_succeeded(job, uploaded) is expected
