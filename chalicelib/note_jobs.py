"""The note job: what a successful screen leaves for the note worker, and how it is queued.

The proxy sends the nurse's screen to HOSP itself and hands HOSP's answer to
the app's note intake (POST /note-intake, chalicelib/note_intake.py), which
makes the job. A job holds the screening results, the patient, who asked and
when, the request id of the nurse's screen and a marker of this result; never
the nurse's credentials (the worker writes with its own service account). It
goes on an SQS FIFO queue: MessageGroupId = the patient, so one patient's
notes are written one at a time, and MessageDeduplicationId = the marker, so
that sending the same job twice within SQS's five minutes queues it once.

One note per distinct result: the marker is a hash of the patient (as a
number, so 04 and 4 agree) and HOSP's answer bytes, exactly as HOSP sent
them, and of nothing else. A nurse's client that sends the same screen again
(a dropped connection, a double tap) gets the same answer from HOSP (screening
is a pure function), so the same marker: the queue drops the second job
within five minutes, and the worker, which looks for the marker in the
patient's notes before it writes, drops it after that. A new image is a new
answer, so a new marker and a new note.

If the queue cannot be reached, the job is written to the log in full as an
ERROR line (event "note_job_not_queued") with the NoteJobsNotQueued metric,
which has an alarm. Lambda delivers its logs even when the function's own
network is down, so the log is the fallback store: `requeue` sends such lines
to the queue again (python -m chalicelib.requeue < lines), and with them the
proxy's own lines of the hand-offs it could not deliver ("note_handoff_failed").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib import aws, config, logs, metrics

VERSION = 1
MARKER_PREFIX = "xray-"
# Hashed before the patient and the answer: a marker of another recipe (the first one
# hashed the request id too) never equals one of this recipe.
MARKER_RECIPE = b"xray-note-v2\n"
# The events of the log lines `requeue` reads: the app's job that SQS did not take, and
# the proxy's hand-off that the note intake did not take (chalicelib/note_intake.py).
NOT_QUEUED_EVENT = "note_job_not_queued"
HANDOFF_FAILED_EVENT = "note_handoff_failed"
# SQS's limit on a message; a job above it cannot be queued.
MAX_MESSAGE_BYTES = 256 * 1024


class MalformedJob(ValueError):
    """A message that is not a note job this worker can write; it never will be."""


@dataclass(frozen=True)
class NoteJob:
    patient_id: int
    results: Any  # HOSP's screening answer, as JSON
    requested_by: str  # the nurse's HOSP user name ("" when the request had none)
    requested_at: str  # ISO 8601, UTC
    request_id: str
    marker: str
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NoteJob:
        """The job in `text`; raises MalformedJob saying what is wrong."""
        try:
            fields = json.loads(text)
        except ValueError as exc:
            raise MalformedJob("not JSON") from exc
        if not isinstance(fields, dict):
            raise MalformedJob("not a JSON object")
        if fields.get("version") != VERSION:
            raise MalformedJob(f"version {fields.get('version')!r} is not {VERSION}")
        patient_id = fields.get("patient_id")
        if not isinstance(patient_id, int) or isinstance(patient_id, bool) or patient_id < 1:
            raise MalformedJob("patient_id must be a positive integer")
        for name in ("requested_by", "requested_at", "request_id", "marker"):
            if not isinstance(fields.get(name), str):
                raise MalformedJob(f"{name} must be a string")
        if not fields["marker"].startswith(MARKER_PREFIX):
            raise MalformedJob("marker is not an X-ray marker")
        if "results" not in fields:
            raise MalformedJob("results are missing")
        known = {name: fields[name] for name in cls.__dataclass_fields__ if name in fields}
        return cls(**known)


def marker(patient_id: int, answer: bytes) -> str:
    """The marker of HOSP's `answer` (its bytes as HOSP sent them) for the patient: the same for the same result."""
    digest = hashlib.sha256(MARKER_RECIPE + f"{patient_id}\n".encode() + answer).hexdigest()
    return MARKER_PREFIX + digest[:40]


def new_job(
    patient_id: int,
    results: Any,
    requested_by: str,
    request_id: str,
    answer: bytes,
    *,
    requested_at: datetime | None = None,
) -> NoteJob:
    """The job of HOSP's `answer` (its JSON: `results`) to the screen `request_id`, asked at `requested_at` or now."""
    asked = datetime.now(UTC) if requested_at is None else requested_at.astimezone(UTC)
    return NoteJob(
        patient_id=patient_id,
        results=results,
        requested_by=requested_by,
        requested_at=asked.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        request_id=request_id,
        marker=marker(patient_id, answer),
    )


def fits(job: NoteJob) -> bool:
    """Whether the job fits in one SQS message; one that does not can never be queued."""
    return len(job.to_json().encode()) <= MAX_MESSAGE_BYTES


def queue(job: NoteJob) -> bool:
    """Put the job on the note queue; True once SQS has it.

    On failure the job goes to the log instead (see the module docstring),
    and the caller says so to whoever handed the job over.
    """
    text = job.to_json()
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        not_queued(job, "larger than an SQS message")
        return False
    try:
        aws.client("sqs").send_message(
            QueueUrl=aws.queue_url(config.note_queue_name()),
            MessageBody=text,
            MessageGroupId=str(job.patient_id),
            MessageDeduplicationId=job.marker,
        )
    except Exception as exc:  # any failure of the queue: the job must still not vanish
        not_queued(job, f"{type(exc).__name__}: {exc}")
        return False
    metrics.emit(metrics.NOTE_JOBS_QUEUED)
    return True


def not_queued(job: NoteJob, reason: str) -> None:
    logs.error(NOT_QUEUED_EVENT, reason=reason, job=asdict(job))
    metrics.emit(metrics.NOTE_JOBS_NOT_QUEUED, reason=reason[:100])
