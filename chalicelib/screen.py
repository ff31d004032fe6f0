"""The screen interceptor: HOSP's screening answer for the nurse, and one note job per result.

`intercept` forwards the nurse's POST /patients/{id}/screen to HOSP (through
the proxy's internal listener) with the nurse's Authorization header and the
request id, and returns HOSP's answer unchanged: status, end-to-end headers
and body bytes. Screening is a pure function, so a failed call (no answer,
502, 503, 504) is tried again, SCREEN_TRIES times in all within
SCREEN_DEADLINE; HOSP's refusals (401,
403, 404, 422 ...) and the last failure pass through, and make no note.

A successful answer (200 with JSON) puts one note job on the queue before the
answer is returned: Lambda freezes the process once the handler returns, so
nothing may be left for later (note_jobs.py).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import traceback
from collections.abc import Mapping
from urllib.parse import quote

from chalicelib import config, errors, hosp, logs, metrics, note_jobs

# Under API Gateway's 29 s with the queueing (about 6 s at most, aws.py): the
# Lambda's timeout is 28 s (.chalice/config.json).
SCREEN_DEADLINE = 20.0
# Attempts in all, as the proxy makes for a retryable request: when HOSP is
# down, the nurse hears so within a second, and HOSP gets three calls, not twenty.
SCREEN_TRIES = 3
RETRY_STATUSES = frozenset({502, 503, 504})
FIRST_BACKOFF = 0.2  # seconds; doubled after each failed try
# The headers of the nurse's request that HOSP gets.
# Not Accept-Encoding: HOSP's answer comes back unencoded, so that the
# interceptor can read it; the nurse's client accepts that in any case.
FORWARDED_HEADERS = ("authorization", "content-type", "accept", "user-agent")
PATIENT_ID = re.compile(r"[0-9]{1,18}")


def intercept(patient_id: str, body: bytes, headers: Mapping[str, str]) -> hosp.Answer:
    """HOSP's answer to the screen; queues its note job when the screen succeeded."""
    request_id = logs.request_id_of(headers)
    with logs.request_context(request_id):
        metrics.emit(metrics.SCREENS_INTERCEPTED)
        if problems := config.problems():
            logs.error("screen_interceptor_misconfigured", problems=problems)
            return error_answer(503, "the screen interceptor is misconfigured", request_id)
        try:
            forwarded = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
            answer = forward(patient_id, body, {**forwarded, "X-Request-Id": request_id})
        except Exception:  # a fault of ours: logged with its traceback, answered in the shape of every error
            logs.error("screen_interceptor_failed", failure=traceback.format_exc(limit=5))
            return error_answer(500, "the screen interceptor failed; the request id names it in the logs", request_id)
        try:
            if 200 <= answer.status < 300:
                queue_note(patient_id, answer, headers.get("authorization", ""), request_id)
            else:
                logs.info("screen_not_noted", status=answer.status, patient_id=patient_id)
        except Exception:  # HOSP has screened: the nurse gets its answer, the fault is logged for its note
            logs.error("screen_note_failed", failure=traceback.format_exc(limit=5), patient_id=patient_id)
        return answer


def forward(patient_id: str, body: bytes, headers: Mapping[str, str]) -> hosp.Answer:
    """The screen call to HOSP, tried again on failure until the deadline."""
    url = f"{config.load().hosp_base_url}/patients/{quote(patient_id, safe='')}/screen"
    deadline = time.monotonic() + SCREEN_DEADLINE
    backoff = FIRST_BACKOFF
    tries = 0
    while True:
        tries += 1
        left = deadline - time.monotonic()
        try:
            answer = hosp.call("POST", url, headers, body, timeout=max(left, 0.1))
            failure = f"status {answer.status}" if answer.status in RETRY_STATUSES else None
        except hosp.HospUnreachable as exc:
            answer, failure = None, str(exc)
        if failure is None and answer is not None:
            return answer
        if tries >= SCREEN_TRIES or time.monotonic() + backoff >= deadline:
            logs.warning("screen_failed", tries=tries, failure=failure)
            if answer is None:
                return unreachable_answer(str(headers.get("X-Request-Id", "")))
            return answer
        logs.info("screen_retry", tries=tries, failure=failure)
        metrics.emit(metrics.SCREEN_FORWARD_RETRIES)
        time.sleep(backoff)
        backoff *= 2


def unreachable_answer(request_id: str) -> hosp.Answer:
    """What the nurse gets when HOSP never answered: a 502, in the shape of every error (docs/errors.md)."""
    return error_answer(502, "HOSP could not be reached", request_id)


def error_answer(status: int, message: str, request_id: str) -> hosp.Answer:
    """The interceptor's own error, in the shape of every error (chalicelib/errors.py)."""
    return hosp.Answer(status, (("Content-Type", errors.CONTENT_TYPE),), errors.encoded(status, message, request_id))


def queue_note(patient_id: str, answer: hosp.Answer, authorization: str, request_id: str) -> None:
    results = hosp.json_of(answer)
    job_patient = int(patient_id) if PATIENT_ID.fullmatch(patient_id) else 0
    if results is None or job_patient < 1:
        reason = "the answer is not JSON" if results is None else "the patient id is not a number"
        logs.error("note_job_not_queued", reason=reason, patient_id=patient_id, status=answer.status)
        metrics.emit(metrics.NOTE_JOBS_NOT_QUEUED, reason=reason)
        return
    job = note_jobs.new_job(job_patient, results, basic_user(authorization), request_id, answer.body)
    if note_jobs.queue(job):
        logs.info("note_job_queued", marker=job.marker, patient_id=job_patient)


def basic_user(authorization: str) -> str:
    """The user name of `Authorization: Basic ...`, never its password; "" for anything else."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]
