"""The most recent nightly run, read from the CronJob's Jobs and the termination message of their pods.

The nightly command's last stdout line is a JSON summary; the container's
``terminationMessagePolicy: FallbackToLogsOnError`` makes it the pod's termination message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from unsubscribe_sync.api.spec import LastNightlySync, NightlyCounts

JobPhase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobRun:
    """What the operator knows of one nightly Job."""

    name: str
    uid: str
    phase: JobPhase
    start_time: str | None
    completion_time: str | None
    created: str


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_run(job: Mapping[str, Any]) -> JobRun:
    metadata = job.get("metadata") or {}
    status = job.get("status") or {}
    failed = _condition(job, "Failed")
    complete = _condition(job, "Complete")
    phase: JobPhase = "Failed" if failed else "Succeeded" if complete else "Running"
    finished = status.get("completionTime") or (failed or {}).get("lastTransitionTime")
    return JobRun(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        phase=phase,
        start_time=status.get("startTime"),
        completion_time=finished,
        created=str(metadata.get("creationTimestamp", "")),
    )


def latest_job(jobs: Iterable[Mapping[str, Any]], cronjob_name: str, *, finished: bool = True) -> JobRun | None:
    """The most recently started Job that the CronJob ``cronjob_name`` created (finished ones only by default)."""
    runs = []
    for job in jobs:
        refs = (job.get("metadata") or {}).get("ownerReferences") or []
        if any(ref.get("kind") == "CronJob" and ref.get("name") == cronjob_name for ref in refs):
            run = job_run(job)
            if not finished or run.phase != "Running":
                runs.append(run)
    if not runs:
        return None
    return max(runs, key=lambda run: (run.start_time or run.created, run.created, run.name))


def termination_message(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The termination message of the most recently finished nightly container among ``pods``."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if message:
                found.append((str(terminated.get("finishedAt") or ""), str(message)))
    if not found:
        return None
    return max(found)[1]


def _summary_object(message: str | None) -> dict[str, Any] | None:
    """The last line of ``message`` that is a JSON object (the nightly summary), or None."""
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def parse_summary(message: str | None) -> NightlyCounts | None:
    """The counts from the nightly summary line (the last line that is a JSON object), or None."""
    data = _summary_object(message)
    if data is None:
        return None
    known = {k: data[k] for k in NightlyCounts.model_fields if isinstance(data.get(k), int)}
    return NightlyCounts(**known) if known else None


def parse_error(message: str | None, limit: int = 400) -> str | None:
    """Why a nightly run failed, as its summary says (the job redacts secrets before writing it), clipped."""
    data = _summary_object(message)
    error = data.get("error") if data else None
    if not isinstance(error, str) or not error.strip():
        return None
    error = " ".join(error.split())
    return error if len(error) <= limit else error[: limit - 3] + "..."


def last_nightly_sync(run: JobRun | None, message: str | None) -> LastNightlySync | None:
    """``status.lastNightlySync`` for the latest finished run (None while none has finished)."""
    if run is None or run.phase == "Running":
        return None
    counts = parse_summary(message) or NightlyCounts()
    return LastNightlySync(
        startTime=run.start_time,
        completionTime=run.completion_time,
        outcome=run.phase,
        jobName=run.name,
        counts=counts,
    )
