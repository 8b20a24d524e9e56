"""Bulk API 2.0 jobs over the org: create, upload, state changes, processing, results."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from .bulk import (
    TERMINAL_STATES,
    IngestJob,
    JobBase,
    QueryJob,
    apply_ingest_rows,
    job_options,
    query_results_page,
    start_ingest,
)
from .errors import ApiError, RecordError, not_found
from .ids import normalize_id
from .org import Org
from .schema import USER_ID
from .writes import prepare_write

J = TypeVar("J", bound=JobBase)
BULK_FAULT_MESSAGE = "InternalServerError : the job failed; retry it later"  # the bulk-fail fault's job error
INGEST_STEP_RECORDS = 1_000  # records a running ingest job applies per step (other requests are served between)


class BulkJobs(Org):
    """Bulk API 2.0 query and ingest jobs; a job finishes `bulk_processing_s` after it is ready (an ingest job's
    records are applied during that time, from UploadComplete on, not when the job is next looked at)."""

    def _job(self, job_id: str, kind: type[J]) -> J:
        job = self.jobs.get(normalize_id(job_id) or job_id)
        if not isinstance(job, kind):
            raise not_found()
        self._advance(job)
        return job

    def _advance(self, job: JobBase, records: int = 0) -> None:
        """Move a job on to where its processing time says it is; a running ingest job also applies up to
        ``records`` more of its records (every one left once its processing time is over)."""
        now = time.time()
        if job.state in TERMINAL_STATES or job.ready_at is None:
            return
        if isinstance(job, IngestJob):
            self._run_ingest(job, now, None if now >= job.ready_at else records)
        elif now >= job.ready_at:
            if self.faults.bulk_fail_next > 0:
                self.faults.bulk_fail_next -= 1
                job.state, job.error_message = "Failed", BULK_FAULT_MESSAGE
            else:
                job.state = "JobComplete"
            job.modified_at = now
        elif job.state == "UploadComplete" and now >= job.ready_at - self.bulk_processing_s / 2:
            job.state = "InProgress"

    def _run_ingest(self, job: IngestJob, now: float, limit: int | None) -> None:
        """Move a closed ingest job on: its processing starts (the data checked, a fault drawn), then ``limit``
        more of its records are applied (all that are left when None), and once its processing time is over
        and every record is applied it ends, JobComplete or Failed. Applied records stay applied."""
        if job.state == "UploadComplete":
            job.state = "InProgress"
            if self.faults.bulk_fail_next > 0:
                self.faults.bulk_fail_next -= 1
                job.failure = BULK_FAULT_MESSAGE
            else:
                started = start_ingest(job, self.tables[job.sobject].schema)
                job.run, job.failure = (None, started) if isinstance(started, str) else (started, None)
        run = job.run
        if run is not None and run.left and limit != 0:
            apply_ingest_rows(job, run, self._bulk_update(job.sobject), limit)
        if job.ready_at is not None and now >= job.ready_at and (run is None or not run.left):
            if job.failure is not None:
                job.state, job.error_message = "Failed", job.failure
            else:
                job.state = "JobComplete"
            job.run = None
            job.modified_at = now

    def process_ingest_step(self, job_id: str, records: int = INGEST_STEP_RECORDS) -> bool:
        """Apply up to ``records`` more of a closed ingest job's records, as an org does while the job runs (the
        server calls this step by step from UploadComplete, serving other requests in between); True while
        records are left to apply. The job still ends only once its processing time is over."""
        with self.lock:
            job = self.jobs.get(job_id)
            if not isinstance(job, IngestJob):
                return False
            self._advance(job, records)
            return job.run is not None and job.run.left > 0  # a job that ended or was aborted has no run

    def _bulk_update(self, sobject: str) -> Any:
        table = self.tables[sobject]

        def update(raw_id: str, values: dict[str, Any]) -> str | RecordError:
            outcome = prepare_write(table, raw_id, values, self.faults, self.rng)
            if isinstance(outcome, RecordError):
                return outcome
            self._apply(outcome)
            return outcome.id18

        return update

    def advance_jobs(self) -> None:
        """Finish every job whose processing time is over (the server calls this on a timer)."""
        with self.lock:
            for job in list(self.jobs.values()):
                self._advance(job)

    def create_query_job(self, body: Any, version: str) -> dict[str, Any]:
        with self.lock:
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            operation = body.get("operation")
            if operation not in ("query", "queryAll"):
                raise ApiError(400, "INVALIDJOB", f"Invalid operation for a query job: {operation}")
            soql = body.get("query")
            if not isinstance(soql, str) or not soql.strip():
                raise ApiError(400, "INVALIDJOB", "A query job needs a query")
            delimiter, line_ending = job_options(body)
            selection = self._select(soql, include_deleted=operation == "queryAll")
            if selection.count_only or selection.aggregate is not None:
                raise ApiError(400, "INVALIDJOB", "COUNT() is not supported by Bulk API 2.0 query jobs")
            now = time.time()
            job = QueryJob(
                id=self._job_ids.mint(), operation=operation, sobject=selection.sobject, api_version=version,
                created_by=USER_ID, created_at=now, column_delimiter=delimiter, line_ending=line_ending,
                state="UploadComplete", ready_at=now + self.bulk_processing_s, query=soql, selection=selection,
                number_records_processed=len(selection.rows),
            )  # fmt: skip
            self.jobs[job.id] = job
            info = job.info()
            info.pop("numberRecordsProcessed", None)
            return info

    def query_job_info(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, QueryJob)
            info = job.info()
            if job.state != "JobComplete":
                info["numberRecordsProcessed"] = 0
            return info

    def query_job_results(self, job_id: str, locator: str | None, max_records: str | None) -> tuple[str, str, int]:
        """CSV page of a finished query job: (csv text, next locator or "null", records in this page)."""
        with self.lock:
            job = self._job(job_id, QueryJob)
            if job.state != "JobComplete":
                raise ApiError(400, "INVALIDJOB", f"The query job is not complete: its state is {job.state}")
            return query_results_page(job, self.tables[job.sobject], locator, max_records)

    def create_ingest_job(self, body: Any, version: str) -> dict[str, Any]:
        with self.lock:
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            sobject = body.get("object")
            table = self._table_named(sobject) if isinstance(sobject, str) else None
            if table is None:
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {sobject}")
            operation = body.get("operation")
            if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
            if operation != "update":
                message = f"InvalidJob : the sandbox supports only update jobs, not {operation}"
                raise ApiError(400, "INVALIDJOB", message)
            if body.get("contentType", "CSV") != "CSV":
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid content type: {body.get('contentType')}")
            delimiter, line_ending = job_options(body)
            job = IngestJob(
                id=self._job_ids.mint(), operation=operation, sobject=table.schema.name, api_version=version,
                created_by=USER_ID, created_at=time.time(), column_delimiter=delimiter, line_ending=line_ending,
                state="Open", external_id_field=body.get("externalIdFieldName"),
            )  # fmt: skip
            self.jobs[job.id] = job
            return job.info(with_counts=False)

    def upload_ingest_data(self, job_id: str, text: str) -> None:
        with self.lock:
            job = self._job(job_id, IngestJob)
            if job.state != "Open":
                message = f"Data can be uploaded only while the job is Open, not {job.state}"
                raise ApiError(409, "INVALIDJOBSTATE", message)
            if not text.strip():
                raise ApiError(400, "INVALIDREQUEST", "The upload holds no CSV data")
            job.uploads.append(text)

    def set_ingest_state(self, job_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, IngestJob)
            wanted = body.get("state") if isinstance(body, dict) else None
            if wanted == "UploadComplete" and job.state == "Open":
                job.state = "UploadComplete"
                job.ready_at = time.time() + self.bulk_processing_s
                if not job.uploads:
                    job.state = "Failed"
                    job.error_message = "InvalidBatch : No data uploaded for this job"
                    job.ready_at = None
            elif wanted == "Aborted" and job.state not in TERMINAL_STATES:
                job.state = "Aborted"  # no more of its records are processed; those applied stay applied
                job.ready_at = None
                job.run = None
            else:
                raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state} to {wanted}")
            job.modified_at = time.time()
            return job.info(with_counts=False)

    def abort_query_job(self, job_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, QueryJob)
            if not isinstance(body, dict) or body.get("state") != "Aborted" or job.state in TERMINAL_STATES:
                raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state}")
            job.state = "Aborted"
            job.ready_at = None
            return job.info()

    def ingest_job_info(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self._job(job_id, IngestJob).info()

    def ingest_results(self, job_id: str, kind: str) -> str:
        with self.lock:
            job = self._job(job_id, IngestJob)
            if job.state != "JobComplete" and kind != "unprocessedrecords":
                raise ApiError(400, "INVALIDJOBSTATE", f"The job is not complete: its state is {job.state}")
            return job.results_csv(kind)

    def list_jobs(self, kind: type[JobBase]) -> dict[str, Any]:
        """GET jobs/ingest or jobs/query: every job of that kind, oldest first, in one page."""
        with self.lock:
            records = []
            for job in self.jobs.values():
                if isinstance(job, kind):
                    self._advance(job)
                    records.append({**job.common_info(), "jobType": "V2Query" if kind is QueryJob else "V2Ingest"})
            return {"done": True, "records": records, "nextRecordsUrl": None}

    def delete_job(self, job_id: str, kind: type[JobBase]) -> None:
        with self.lock:
            job = self._job(job_id, kind)
            if isinstance(job, IngestJob) and job.state not in (*TERMINAL_STATES, "Open"):
                raise ApiError(400, "INVALIDJOBSTATE", f"A job in state {job.state} cannot be deleted")
            self.jobs.pop(job.id, None)
