"""The note intake: where the proxy hands HOSP's answer to a screen over, and its note job is queued.

The proxy sends the nurse's POST /patients/{id}/screen to HOSP itself, and
gives her HOSP's answer as it gives any other. For a 2xx JSON answer it then
posts a small hand-off to POST /note-intake, a route of the private API that
only the proxy fleet can reach (and that the proxy never routes a client's
request to):

    POST /note-intake
    Content-Type: application/json
    X-Request-Id: <the nurse's request id>

    {"patient_id": "04",          ASCII digits of the screen's path; leading zeros allowed
     "user": "nurse-joy",         her Basic-auth user name ("" for none), never a password
     "request_id": "<32 hex>",    the proxy's request id of her screen
     "answer": "<base64>"}        HOSP's answer body, the bytes as HOSP sent them

Unknown keys are ignored. The intake checks every field (`parse_handoff`),
makes the note job (note_jobs.new_job: the results are the answer's JSON, the
marker a hash of the patient and the answer's bytes) and queues it:

    202  {"state": "queued", "marker": ..., "request_id": ...}   SQS has the job
    400  a field is missing or wrong; `field` names it            (the one error shape,
    413  the body is over MAX_BODY_BYTES, or the job is larger     chalicelib/errors.py,
         than an SQS message (`field` "body" or "answer")          docs/errors.md)
    503  the queue could not be reached (the job is in the log, note_jobs.not_queued),
         or the app is misconfigured
    500  a fault of the intake's own

Whatever is not a 202 the proxy writes, hand-off and all, to its own log of
failed hand-offs, which `requeue` reads beside the app's (chalicelib/requeue.py).
A refused hand-off is logged as a WARNING (note_handoff_refused) with the field
and the reason, never the answer's bytes, and counted (NoteHandoffsRefused).

Every line is logged with the nurse's request id: the X-Request-Id of the
hand-off until its body is read, then the body's request_id (the proxy sends
the same id in both).
"""

from __future__ import annotations

import base64
import json
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalice import Response

from chalicelib import config, errors, logs, metrics, note_jobs

# A hand-off is a few KB: the answer and four short fields.
MAX_BODY_BYTES = 2 * 1024 * 1024
# HOSP's answer, decoded: the proxy hands off no larger one (infra/nginx/njs/note_handoff.js).
# Its job, the answer escaped as JSON (at most 3 bytes for each of its), fits an SQS message.
MAX_ANSWER_BYTES = 80 * 1024
# Base64 of MAX_ANSWER_BYTES: a longer text is refused before it is decoded.
MAX_ANSWER_TEXT = 4 * -(-MAX_ANSWER_BYTES // 3)
# The proxy sends the user name as its access log writes it: client text of at most
# 2,048 bytes of escaped text, then the 4-byte cut marker (infra/nginx/render.py,
# LOG_TEXT_LIMIT; docs/access-log.md). Characters are never more than bytes.
MAX_USER_CHARS = 2048 + 4
MAX_PATIENT_DIGITS = 18
# The answer's JSON may nest this deep. HOSP's screening answer nests three or four
# levels; a much deeper one would make the job too deep for the JSON encoder of the
# intake or the worker (Python's recursion limit), a failure no retry would cure.
MAX_ANSWER_DEPTH = 100
DIGITS = re.compile(r"[0-9]+")
FIELDS = ("patient_id", "user", "request_id", "answer")


class RefusedHandoff(ValueError):
    """A hand-off the intake does not take: `field` names what is wrong ("body" for the whole), `reason` says how."""

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status

    @property
    def message(self) -> str:
        """The error's message for the caller."""
        if self.field == "body":
            return f"the hand-off's body {self.reason}"
        return f"the hand-off's {self.field} {self.reason}"


@dataclass(frozen=True)
class Handoff:
    """A hand-off as the intake read it."""

    patient_id: int  # canonical: no leading zeros, 1 or more
    user: str
    request_id: str
    answer: bytes  # HOSP's answer body, as HOSP sent it
    results: Any  # the answer's JSON


def parse_handoff(body: bytes | str) -> Handoff:
    """The hand-off in `body`; raises RefusedHandoff naming the first field that is wrong."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise RefusedHandoff("body", f"is larger than {MAX_BODY_BYTES} bytes", status=413)
    # Only the user name may hold text other than ASCII: a byte of it that is not UTF-8
    # (a client's Basic credentials are any bytes) must not cost the nurse her note.
    fields = _json(raw.decode("utf-8", "replace"), "body", "is not JSON")
    if not isinstance(fields, dict):
        raise RefusedHandoff("body", "is not a JSON object")
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise RefusedHandoff(missing[0], "is missing")
    patient_id = _patient_id(fields["patient_id"])
    request_id = fields["request_id"]
    if not isinstance(request_id, str) or not logs.REQUEST_ID.fullmatch(request_id):
        raise RefusedHandoff("request_id", "must be a string of 32 lowercase hexadecimal digits")
    user = fields["user"]
    if not isinstance(user, str) or len(user) > MAX_USER_CHARS:
        raise RefusedHandoff("user", f"must be a string of at most {MAX_USER_CHARS} characters")
    # A lone surrogate ("\ud800" in the JSON) is no text: it becomes U+FFFD, as a bad byte does.
    user = user.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    answer = _answer(fields["answer"])
    results = _json_answer(answer)
    return Handoff(patient_id=patient_id, user=user, request_id=request_id, answer=answer, results=results)


def job_of(handoff: Handoff, requested_at: datetime | None = None) -> note_jobs.NoteJob:
    """The note job of a hand-off: the same whoever reads it (the intake, or requeue from the proxy's log)."""
    return note_jobs.new_job(
        handoff.patient_id, handoff.results, handoff.user, handoff.request_id, handoff.answer, requested_at=requested_at
    )


def receive(body: bytes | str, headers: Mapping[str, str]) -> Response:
    """The intake's answer to one hand-off; the job is queued when the answer is a 202."""
    request_id = logs.request_id_of(headers)
    with logs.request_context(request_id):
        metrics.emit(metrics.NOTE_HANDOFFS_RECEIVED)
        if problems := config.problems():
            logs.error("note_intake_misconfigured", problems=problems)
            return _error(503, "the note intake is misconfigured", request_id)
        try:
            return _take(body, request_id)
        except Exception:  # a fault of ours: logged with its traceback, answered in the shape of every error
            logs.error("note_intake_failed", failure=traceback.format_exc(limit=5))
            return _error(500, "the note intake failed; the request id names it in the logs", request_id)


def _take(body: bytes | str, request_id: str) -> Response:
    try:
        handoff = parse_handoff(body)
    except RefusedHandoff as refused:
        size = len(body)
        logs.warning("note_handoff_refused", field=refused.field, reason=refused.reason, size=size)
        metrics.emit(metrics.NOTE_HANDOFFS_REFUSED, field=refused.field)
        return _error(refused.status, refused.message, request_id, field=refused.field)
    with logs.request_context(handoff.request_id):
        job = job_of(handoff)
        if note_jobs.queue(job):
            logs.info("note_job_queued", marker=job.marker, patient_id=job.patient_id)
            answer = {"state": "queued", "marker": job.marker, "request_id": handoff.request_id}
            return Response(body=answer, status_code=202, headers={"Content-Type": errors.CONTENT_TYPE})
        if not note_jobs.fits(job):
            message = f"the hand-off's answer makes a note job larger than {note_jobs.MAX_MESSAGE_BYTES} bytes"
            return _error(413, message, handoff.request_id, field="answer")
        return _error(503, "the note queue could not be reached; the job is in the log", handoff.request_id)


def _error(status: int, message: str, request_id: str, **extra: Any) -> Response:
    return Response(
        body=errors.encoded(status, message, request_id, **extra),
        status_code=status,
        headers={"Content-Type": errors.CONTENT_TYPE},
    )


def _patient_id(value: Any) -> int:
    if not isinstance(value, str) or not DIGITS.fullmatch(value):
        raise RefusedHandoff("patient_id", "must be a string of ASCII digits")
    significant = value.lstrip("0")
    if not significant:
        raise RefusedHandoff("patient_id", "must be 1 or more")
    if len(significant) > MAX_PATIENT_DIGITS:
        raise RefusedHandoff("patient_id", f"must have at most {MAX_PATIENT_DIGITS} digits after its leading zeros")
    return int(significant)


def _answer(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RefusedHandoff("answer", "must be a string of standard base64")
    if len(value) > MAX_ANSWER_TEXT:
        raise RefusedHandoff("answer", f"is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        decoded = base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        raise RefusedHandoff("answer", "is not standard base64") from exc
    if len(decoded) > MAX_ANSWER_BYTES:
        raise RefusedHandoff("answer", f"is larger than {MAX_ANSWER_BYTES} bytes")
    return decoded


def _json_answer(answer: bytes) -> Any:
    try:
        text = answer.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefusedHandoff("answer", "is not UTF-8 JSON") from exc
    results = _json(text, "answer", "is not UTF-8 JSON")
    if _depth(results) > MAX_ANSWER_DEPTH:
        raise RefusedHandoff("answer", f"nests deeper than {MAX_ANSWER_DEPTH} levels")
    return results


def _json(text: str, field: str, reason: str) -> Any:
    """The JSON value of `text`; RefusedHandoff(field, reason) if it is not JSON (NaN and Infinity are not)."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # json.loads recurses once per level: 100,000 levels is no crash
        raise RefusedHandoff(field, reason) from exc


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (0 for a scalar), counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
