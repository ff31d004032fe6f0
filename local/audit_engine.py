"""The local stack's audit engine: trail.sql on DuckDB over the proxy's access log, as Athena runs it in AWS.

It gives the route what chalicelib.audit.jobs.AthenaEngine gives: `start(filters)`
and `job(job_id)`, and the same Job. It is not part of the Lambda package
(chalice packages app.py and chalicelib/ only): `install()` makes it the engine of
AUDIT_ENGINE=duckdb in this process, and `python -m local.chalice_local` calls it
before chalice loads the app.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from chalicelib import aws
from chalicelib.audit import jobs, settings
from chalicelib.audit.filters import Filters
from local import audit_duckdb


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

    def start(self, filters: Filters) -> str:
        job_id = str(uuid.uuid4())
        job = jobs.Job(job_id, "RUNNING", filters, self.clock())
        with _LOCK:
            _JOBS[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"audit-{job_id}", daemon=True).start()
        return job_id

    def job(self, job_id: str) -> jobs.Job:
        with _LOCK:
            found = _JOBS.get(job_id)
        if found is None:
            raise jobs.JobNotFound(job_id)
        return found

    def _run(self, job: jobs.Job) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.work_dir / f"{job.job_id}.csv"
        key = f"{self.results_prefix}{job.job_id}.csv"
        try:
            today = self.clock().astimezone(UTC).date()
            audit_duckdb.export_csv(self.log_glob, job.filters.query_parameters(), csv_path, today=today)
            aws.client("s3").upload_file(str(csv_path), self.results_bucket, key, ExtraArgs={"ContentType": "text/csv"})
            done = jobs.Job(job.job_id, "SUCCEEDED", job.filters, job.submitted_at, output=(self.results_bucket, key))
        except Exception as error:  # any failure is the job's, reported as Athena reports FAILED
            reason = f"{type(error).__name__}: {error}"
            done = jobs.Job(job.job_id, "FAILED", job.filters, job.submitted_at, reason=reason)
        finally:
            csv_path.unlink(missing_ok=True)
        with _LOCK:
            _JOBS[job.job_id] = done


# The local engine's jobs, shared by every LocalEngine of the process: each request
# gets an engine of its own, and a poll must find the job another one started.
_JOBS: dict[str, jobs.Job] = {}
_LOCK = threading.Lock()


def from_settings(chosen: settings.ExportSettings) -> LocalEngine:
    """The engine of the audit settings (AUDIT_LOCAL_LOG, AUDIT_LOCAL_WORK_DIR, the results bucket)."""
    return LocalEngine(chosen.local_log, chosen.results_bucket, chosen.results_prefix, Path(chosen.local_work_dir))


def install() -> None:
    """Serve AUDIT_ENGINE=duckdb with LocalEngine in this process."""
    jobs.install_local_engine(from_settings)
