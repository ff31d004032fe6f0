"""Audit export jobs: an Athena query execution in AWS, a DuckDB run locally.

Both engines give the route the same two calls, `start(filters)` and
`job(job_id)`, and the same Job. A job's filters come back from the engine
itself (Athena keeps a query's execution parameters), so nothing else has to
remember them between GET /audit and GET /audit/{job_id}.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import aws
from chalicelib.audit import query
from chalicelib.audit.filters import Filters

RUNNING_STATES = frozenset({"QUEUED", "RUNNING"})
# Athena's query execution ids are UUIDs; the local engine uses them too.
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
THROTTLED_CODES = frozenset({"TooManyRequestsException", "ThrottlingException"})
THROTTLED_RETRY_AFTER = 5  # seconds


@dataclass(frozen=True)
class Job:
    job_id: str
    state: str  # QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED (Athena's names)
    filters: Filters
    submitted_at: datetime
    reason: str = ""  # why it FAILED or was CANCELLED
    retryable: bool = False  # a FAILED query that may succeed if asked again
    output: tuple[str, str] = ("", "")  # (bucket, key) of the CSV once SUCCEEDED

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


class JobNotFound(LookupError):
    """No export job of ours has this id."""


class Throttled(RuntimeError):
    """The query engine asked us to slow down; the client may retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"throttled; retry after {retry_after} s")
        self.retry_after = retry_after


class EngineUnavailable(RuntimeError):
    """The query engine could not be reached or refused the query for a reason of ours."""


class Engine(Protocol):
    def start(self, filters: Filters) -> str: ...

    def job(self, job_id: str) -> Job: ...


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class AthenaEngine:
    """Runs trail.sql in the audit workgroup; the workgroup enforces where and how results are written."""

    def __init__(self, database: str, workgroup: str, results_bucket: str, results_prefix: str) -> None:
        self.database = database
        self.workgroup = workgroup
        self.results_bucket = results_bucket
        self.results_prefix = results_prefix

    def start(self, filters: Filters) -> str:
        sql, _ = query.positional()
        try:
            started = aws.client("athena").start_query_execution(
                QueryString=sql,
                QueryExecutionContext={"Database": self.database},
                WorkGroup=self.workgroup,
                # The workgroup enforces its own location; this is the same one,
                # given so that a workgroup that does not enforce still puts it there.
                ResultConfiguration={"OutputLocation": f"s3://{self.results_bucket}/{self.results_prefix}"},
                ExecutionParameters=[query.athena_literal(v) for v in query.values(filters.query_parameters())],
            )
        except ClientError as error:
            raise _engine_error(error) from error
        except BotoCoreError as error:
            raise EngineUnavailable(f"Athena could not be reached ({type(error).__name__})") from error
        return str(started["QueryExecutionId"])

    def job(self, job_id: str) -> Job:
        if not JOB_ID.fullmatch(job_id):
            raise JobNotFound(job_id)
        try:
            execution = aws.client("athena").get_query_execution(QueryExecutionId=job_id)["QueryExecution"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRequestException":
                raise JobNotFound(job_id) from error
            raise _engine_error(error) from error
        except BotoCoreError as error:
            raise EngineUnavailable(f"Athena could not be reached ({type(error).__name__})") from error
        sql, names = query.positional()
        # Only our own query in our own workgroup: GET /audit/{id} must not hand out
        # links to anything else Athena ran.
        literals = execution.get("ExecutionParameters") or []
        if execution.get("WorkGroup") != self.workgroup or execution.get("Query") != sql or len(literals) != len(names):
            raise JobNotFound(job_id)
        parameters = dict(zip(names, (query.from_athena_literal(v) for v in literals), strict=False))
        status = execution.get("Status", {})
        output = _split_s3_url(execution.get("ResultConfiguration", {}).get("OutputLocation", ""))
        if output[0] != self.results_bucket or not output[1].startswith(self.results_prefix):
            output = ("", "")
        submitted = status.get("SubmissionDateTime") or datetime.now(UTC)
        athena_error = status.get("AthenaError", {})
        return Job(
            job_id=job_id,
            state=str(status.get("State", "QUEUED")),
            filters=Filters.from_query_parameters(parameters),
            submitted_at=submitted if isinstance(submitted, datetime) else datetime.fromtimestamp(submitted, UTC),
            reason=str(status.get("StateChangeReason", "")),
            retryable=bool(athena_error.get("Retryable", False)),
            output=output,
        )


def _engine_error(error: ClientError) -> Exception:
    code = error.response.get("Error", {}).get("Code", "")
    if code in THROTTLED_CODES:
        return Throttled(THROTTLED_RETRY_AFTER)
    return EngineUnavailable(f"Athena refused the request ({code})")


class LocalEngine:
    """Runs trail.sql on DuckDB over the local access log, in a thread per job, as Athena would.

    The CSV goes to the local S3 (moto) at the place Athena would put it. Jobs live
    in this process's memory: a restarted `make run` forgets them (404). `clock`
    gives the jobs' submission times and the day a line that cannot be read counts
    as logged (the day the export reads the log, in UTC); a test pins it.
    """

    def __init__(
        self,
        log_glob: str,
        results_bucket: str,
        results_prefix: str,
        work_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log_glob = log_glob
        self.results_bucket = results_bucket
        self.results_prefix = results_prefix
        self.work_dir = work_dir
        self.clock = clock
        self._lock = threading.Lock()

    def start(self, filters: Filters) -> str:
        job_id = str(uuid.uuid4())
        job = Job(job_id, "RUNNING", filters, self.clock())
        with self._lock:
            _LOCAL_JOBS[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"audit-{job_id}", daemon=True).start()
        return job_id

    def job(self, job_id: str) -> Job:
        with self._lock:
            found = _LOCAL_JOBS.get(job_id)
        if found is None:
            raise JobNotFound(job_id)
        return found

    def _run(self, job: Job) -> None:
        from chalicelib.audit import duckdb_engine  # noqa: PLC0415 - imports DuckDB, local only

        self.work_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.work_dir / f"{job.job_id}.csv"
        key = f"{self.results_prefix}{job.job_id}.csv"
        try:
            today = self.clock().astimezone(UTC).date()
            duckdb_engine.export_csv(self.log_glob, job.filters.query_parameters(), csv_path, today=today)
            aws.client("s3").upload_file(str(csv_path), self.results_bucket, key, ExtraArgs={"ContentType": "text/csv"})
            done = Job(job.job_id, "SUCCEEDED", job.filters, job.submitted_at, output=(self.results_bucket, key))
        except Exception as error:  # any failure is the job's, reported as Athena reports FAILED
            done = Job(job.job_id, "FAILED", job.filters, job.submitted_at, reason=f"{type(error).__name__}: {error}")
        finally:
            csv_path.unlink(missing_ok=True)
        with self._lock:
            _LOCAL_JOBS[job.job_id] = done


# The local engine's jobs, shared by every LocalEngine of the process.
_LOCAL_JOBS: dict[str, Job] = {}
