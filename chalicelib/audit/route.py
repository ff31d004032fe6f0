"""GET /audit and GET /audit/{job_id}: an admin asks, the query runs, a short-lived link comes back.

GET /audit checks the token, then the filters, starts the query and waits for
it with backoff for up to AUDIT_WAIT_SECONDS (under API Gateway's 29 s). Done
in time: 200 with the link. Still running: 202 with the job id, and
GET /audit/{job_id} answers the same way later. Every refusal is JSON that
says what was wrong (docs/audit.md lists them).
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from chalice import Response

from chalicelib import errors, logs, metrics
from chalicelib.audit import auth, export, filters, jobs, settings

RETRY_AFTER_RUNNING = 2  # seconds a client should wait before polling again
RETRY_AFTER_RETRYABLE_FAILURE = 30
FIRST_POLL = 0.2  # seconds; doubled after each poll, up to LONGEST_POLL
LONGEST_POLL = 2.0
# The verified user of the token, on every answer after the check passed (403s too): for the
# proxy's access log, which hides the header from the client (infra/nginx/templates/audit-locations.conf).
CALLER_HEADER = "X-Audit-User"
# How Athena's JSON SerDe reports a line it cannot parse: the export fails rather
# than skip it (docs/audit.md).
UNREADABLE_LINE = re.compile(r"HIVE_BAD_DATA|HIVE_CURSOR_ERROR|JsonParseException|malformed JSON", re.IGNORECASE)
UNREADABLE_LINE_HINT = (
    "the trail holds a log line the table cannot read, in the object the reason names; "
    "docs/audit.md says how to deal with it"
)


def start(query_params: Mapping[str, Sequence[str]], headers: Mapping[str, str]) -> Response:
    """GET /audit."""
    return _answer(headers, lambda admin, chosen, run: _start(admin, chosen, run, query_params))


def status(job_id: str, headers: Mapping[str, str]) -> Response:
    """GET /audit/{job_id}."""
    return _answer(headers, lambda admin, chosen, run: _finish(admin, chosen, run, run.job(job_id)))


Handler = Callable[[auth.Principal, settings.ExportSettings, jobs.Engine], Response]


def _answer(headers: Mapping[str, str], handle: Handler) -> Response:
    """handle's answer for an admin, else the refusal; every answer after the token verified names its user.

    The user goes in CALLER_HEADER, which the proxy writes into its access log
    (`audit_user`) and hides from the client, so that the log says who asked,
    a refused (403) caller included.
    """
    with logs.request_context(logs.request_id_of(headers)):
        caller: auth.Principal | None = None
        try:
            caller = auth.require_admin(headers.get("authorization"))
            chosen = settings.export()
            answer = handle(caller, chosen, jobs.engine(chosen))
        except auth.Unauthorized as refused:
            logs.info("audit_refused", status=401, reason=refused.reason)
            metrics.emit(metrics.AUDIT_REFUSALS, status=401)
            answer = _error(401, refused.reason, {"WWW-Authenticate": refused.www_authenticate})
        except auth.Forbidden as refused:
            caller = refused.caller
            logs.info("audit_refused", status=403, reason=refused.reason, user=caller.username, sub=caller.sub)
            metrics.emit(metrics.AUDIT_REFUSALS, status=403)
            answer = _error(403, refused.reason)
        except auth.KeysUnavailable as down:
            logs.error("audit_keys_unavailable", reason=str(down))
            answer = _error(503, "the sign-in service's keys could not be fetched", _retry(30))
        except settings.AuditConfigError as wrong:
            logs.error("audit_misconfigured", problems=wrong.problems)
            answer = _error(503, "the audit route is misconfigured", problems=wrong.problems)
        except filters.BadFilter as bad:
            answer = _error(400, f"bad filter {bad.field!r}", field=bad.field, accepts=bad.accepts)
        except jobs.JobNotFound:
            answer = _error(404, "no audit export has this id")
        except export.ExportGone:
            answer = _error(410, "this export's file has expired; ask again with GET /audit")
        except jobs.Throttled as slow:
            logs.warning("audit_throttled", retry_after=slow.retry_after)
            answer = _error(429, "too many audit queries at once; try again shortly", _retry(slow.retry_after))
        except jobs.EngineUnavailable as down:
            logs.error("audit_engine_unavailable", reason=str(down))
            answer = _error(503, "the audit query service is unavailable", _retry(30), reason=str(down))
        except Exception:  # a fault of ours: logged with its traceback, answered as JSON like the rest
            logs.error("audit_failed", failure=traceback.format_exc(limit=5))
            answer = _error(500, "the audit route failed; the request id names it in the logs")
        if caller is not None:
            answer.headers[CALLER_HEADER] = caller_header_value(caller.username)
        return answer


def caller_header_value(username: str) -> str:
    """A user name as CALLER_HEADER carries it: its UTF-8 percent-encoded, but for letters, digits and -._~.

    A name that is not valid Unicode text (a lone surrogate, which a JSON token can hold)
    is written with that code point as \\udXXX, so that naming the caller never fails.
    """
    return quote(username.encode("utf-8", "backslashreplace"), safe="")


def _start(
    admin: auth.Principal, chosen: settings.ExportSettings, run: jobs.Engine, params: Mapping[str, Sequence[str]]
) -> Response:
    wanted = filters.parse(params, datetime.now(UTC))
    job_id = run.start(wanted)
    metrics.emit(metrics.AUDIT_EXPORTS_STARTED)
    export.record_start(chosen.log_bucket, run.job(job_id), admin.username)
    deadline = time.monotonic() + chosen.wait_seconds
    return _finish(admin, chosen, run, wait(run, job_id, deadline))


def wait(
    run: jobs.Engine,
    job_id: str,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> jobs.Job:
    """The job once it stops running, or as it is at `deadline`; polls with doubling pauses."""
    pause = FIRST_POLL
    while True:
        job = run.job(job_id)
        if not job.running or clock() + pause > deadline:
            return job
        sleep(pause)
        pause = min(pause * 2, LONGEST_POLL)


def _finish(admin: auth.Principal, chosen: settings.ExportSettings, run: jobs.Engine, job: jobs.Job) -> Response:
    shown: dict[str, Any] = {"job_id": job.job_id, "filters": job.filters.applied()}
    if job.running:
        poll = f"/audit/{job.job_id}"
        headers = {"Location": poll, **_retry(RETRY_AFTER_RUNNING)}
        return _json(202, {"state": "running", "poll": poll, **shown}, headers)
    if job.state == "CANCELLED":
        return _error(410, "the audit query was cancelled", **shown)
    if job.state != "SUCCEEDED" or not job.output[0]:
        logs.error("audit_query_failed", job_id=job.job_id, reason=job.reason, retryable=job.retryable)
        failed: dict[str, Any] = {"reason": job.reason, **shown}
        if UNREADABLE_LINE.search(job.reason):
            failed["hint"] = UNREADABLE_LINE_HINT
        if job.retryable:
            return _error(503, "the audit query failed", _retry(RETRY_AFTER_RETRYABLE_FAILURE), **failed)
        return _error(502, "the audit query failed", **failed)
    record = export.finish(chosen.log_bucket, job, admin.username)
    url, expires = export.download_link(job, chosen.url_ttl_seconds)
    export.record_delivery(chosen.log_bucket, job, admin.username, expires)
    metrics.emit(metrics.AUDIT_EXPORTS_DELIVERED)
    return _json(
        200,
        {
            "state": "ready",
            "url": url,
            "expires_at": filters.iso(expires),
            "expires_in_seconds": chosen.url_ttl_seconds,
            "file_name": job.filters.file_name(),
            "rows": record["rows"],
            "unreadable_rows": record["unreadable_rows"],
            "bytes": record["bytes"],
            "sha256": record["sha256"],
            **shown,
        },
    )


def _retry(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """An answer that is not an error: the export's link (200) or its job still running (202)."""
    return _response(status, json.dumps(body) + "\n", headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """A refusal or a failure, in the shape of every error (chalicelib/errors.py), with the request's id."""
    return _response(status, errors.encoded(status, message, logs.current_request_id(), **extra), headers)


def _response(status: int, body: str | bytes, headers: Mapping[str, str] | None) -> Response:
    return Response(
        body=body,
        status_code=status,
        headers={"Content-Type": errors.CONTENT_TYPE, "Cache-Control": "no-store", **(headers or {})},
    )
