"""Audit export jobs: the engine the route asks, and its Athena query executions.

Every engine gives the route the same two calls, `start(filters)` and
`job(job_id)`, and the same Job. A job's filters come back from the engine
itself (Athena keeps a query's execution parameters), so nothing else has to
remember them between GET /audit and GET /audit/{job_id}.

AUDIT_ENGINE chooses the engine (`engine`). Athena's is here, the one the
Lambdas run. The local stack's stand-in, DuckDB over the proxy's access log,
lives in local/audit_engine.py, outside the Lambda package: `python -m
local.chalice_local` installs it (`install_local_engine`) before the app is
loaded, and nothing here imports it. Without it, AUDIT_ENGINE=duckdb is a
configuration error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import aws
from chalicelib.audit import query, settings
from chalicelib.audit.filters import Filters

RUNNING_STATES = frozenset({"QUEUED", "RUNNING"})
# Athena's query execution ids are UUIDs; the local stack's engine uses them too.
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


EngineFactory = Callable[[settings.ExportSettings], Engine]
LOCAL_ENGINE = "duckdb"  # the AUDIT_ENGINE value of the local stack's engine
# The local engine's factory once installed (install_local_engine); never in the Lambdas.
_local_engines: dict[str, EngineFactory] = {}


def engine(chosen: settings.ExportSettings) -> Engine:
    """The engine AUDIT_ENGINE names; AuditConfigError for the local one where it is not installed."""
    if chosen.engine == LOCAL_ENGINE:
        factory = _local_engines.get(LOCAL_ENGINE)
        if factory is None:
            raise settings.AuditConfigError(
                [f"the {LOCAL_ENGINE} audit engine is the local stack's, not installed here"]
            )
        return factory(chosen)
    return AthenaEngine(chosen.database, chosen.workgroup, chosen.results_bucket, chosen.results_prefix)


def install_local_engine(factory: EngineFactory) -> None:
    """Serve AUDIT_ENGINE=duckdb with `factory` in this process (local/audit_engine.py's install)."""
    _local_engines[LOCAL_ENGINE] = factory


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
