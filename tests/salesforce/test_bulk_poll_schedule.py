"""The Bulk 2.0 status-poll schedule: prompt first poll, doubling pauses, a cap (salesforce/client.py)."""

from __future__ import annotations

import pytest

from unsubscribe_sync.nightly.job import BULK_POLL_INTERVAL
from unsubscribe_sync.salesforce.client import bulk_poll_pause

CASES = [
    ("the first poll comes after the first pause", 0, 0.25, 15.0, 0.25),
    ("the second pause is twice the first", 1, 0.25, 15.0, 0.5),
    ("each pause doubles the one before", 4, 0.25, 15.0, 4.0),
    ("a pause never exceeds the cap", 7, 0.25, 15.0, 15.0),
    ("a long-running job is polled at the cap, without overflow", 10_000, 0.25, 15.0, 15.0),
    ("a first pause above the cap is cut to the cap", 0, 30.0, 15.0, 15.0),
]


@pytest.mark.parametrize(("behaviour", "polls_done", "first", "cap", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bulk_poll_pause(behaviour: str, polls_done: int, first: float, cap: float, expected: float) -> None:
    assert bulk_poll_pause(polls_done, first, cap) == pytest.approx(expected)


def _polls_until(job_seconds: float, first: float, cap: float) -> int:
    waited, polls = 0.0, 0
    while waited < job_seconds:
        waited += bulk_poll_pause(polls, first, cap)
        polls += 1
    return polls


@pytest.mark.parametrize(
    ("job_seconds", "most_polls"),
    [(0.2, 1), (5.0, 5), (60.0, 10), (600.0, 46)],
    ids=["a job done in 0.2 s is seen at the first poll", "a 5 s job costs at most 5 polls",
         "a 1-minute job costs at most 10 polls", "a 10-minute job costs at most 46 polls"],
)  # fmt: skip
def test_the_nightly_schedule_spends_few_polls_on_long_jobs(job_seconds: float, most_polls: int) -> None:
    first, cap = BULK_POLL_INTERVAL
    assert _polls_until(job_seconds, first, cap) <= most_polls
