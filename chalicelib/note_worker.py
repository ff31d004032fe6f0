"""The note worker: one note in HOSP per note job, even when HOSP fails.

POST /notes is not idempotent, and HOSP may commit a note and still fail its
answer. So before every write, the first and each retry alike, the worker
reads the patient's notes (GET /notes?patient_id=) and writes only if none
carries the job's marker. A message delivered twice, a worker that died
after the POST, a commit-then-fail: each is caught by that read.

What happens to a message:
  written, or found already written   -> done (the message is deleted)
  transient failure (HOSP down, 5xx)  -> left for redelivery after a backoff
                                          that doubles with each receive; after
                                          the queue's maxReceiveCount it goes to
                                          the dead-letter queue
  can never succeed (malformed job,   -> logged, sent to the dead-letter queue
  HOSP's 400/404/409/410/422:            at once, and deleted from the queue
  PERMANENT_STATUSES)
  misconfigured (the service account  -> left for redelivery after a wait that
  secret empty or unreadable, no         grows to 12 h (about 42 hours in all
  HOSP address)                          before the dead-letter queue); HOSP is
                                         not asked; a metric and its alarm
                                         (NoteWorkerMisconfigured) say so

Two workers never write the same job at once: a FIFO queue hands out one
message of a group (a patient) at a time, and a message stays invisible for
longer than a worker may run (infra/notes/queues.yaml).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import aws, config, hosp, logs, metrics, service_account
from chalicelib.audit import log_schema
from chalicelib.note_jobs import MalformedJob, NoteJob

# Within one invocation: this many write attempts, each after a fresh read.
ATTEMPTS = 3
FIRST_PAUSE = 0.5  # seconds between attempts; doubled each time
# The Lambda runs for at most 30 s; the worker stops trying well before.
DEADLINE = 20.0
# Redelivery backoff: BASE x 2^(receives - 1), at most MAX_BACKOFF seconds.
BACKOFF_BASE = 15
MAX_BACKOFF = 900
MISCONFIGURED_BACKOFF_BASE = 60
MISCONFIGURED_MAX_BACKOFF = 43200  # SQS's longest visibility timeout
PERMANENT_STATUSES = frozenset({400, 404, 409, 410, 422})
# The header that tells the proxy whose note the service account writes (docs/access-log.md).
ON_BEHALF_OF = "X-On-Behalf-Of"


class TransientFailure(Exception):
    """HOSP could not take the note now; a later delivery may succeed."""


class PermanentFailure(Exception):
    """HOSP refused the note in a way no retry changes."""


@dataclass(frozen=True)
class Message:
    """What the worker needs of one SQS record."""

    body: str
    receipt_handle: str
    receive_count: int
    queue_url: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Message:
        """From one record of the event Lambda's SQS event source builds."""
        return cls(
            body=record["body"],
            receipt_handle=record["receiptHandle"],
            receive_count=int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")),
            queue_url=queue_url_of(record.get("eventSourceARN", "")),
        )


def handle(message: Message) -> None:
    """Write the message's note; raises TransientFailure when the message must come back."""
    try:
        job = NoteJob.from_json(message.body)
    except MalformedJob as exc:
        dead_letter(message, f"malformed job: {exc}", None)
        return
    with logs.request_context(job.request_id):
        try:
            outcome = write_once(job, service_account.load())
        except PermanentFailure as exc:
            dead_letter(message, str(exc), job)
            return
        except (service_account.ServiceAccountError, config.ConfigError) as exc:
            # Only an operator can fix it: the job waits, longer each time, and the alarm
            # on the metric says so; HOSP is not asked (docs/screen.md).
            delay = misconfigured_backoff(message.receive_count)
            receives = message.receive_count
            logs.error("note_worker_misconfigured", reason=str(exc), marker=job.marker, receives=receives, delay=delay)
            metrics.emit(metrics.NOTE_WORKER_MISCONFIGURED)
            defer(message, delay)
            raise TransientFailure(str(exc)) from exc
        except (TransientFailure, ClientError, BotoCoreError) as exc:
            delay = backoff(message.receive_count)
            logs.warning(
                "note_write_deferred", reason=str(exc), marker=job.marker, receives=message.receive_count, delay=delay
            )
            metrics.emit(metrics.NOTE_WRITE_TRANSIENT_FAILURES)
            defer(message, delay)
            raise TransientFailure(str(exc)) from exc
        logs.info("note_" + outcome, marker=job.marker, patient_id=job.patient_id)


def write_once(job: NoteJob, account: service_account.ServiceAccount) -> str:
    """ "written" or "already_present"; raises TransientFailure or PermanentFailure.

    Every HOSP call waits at most until the deadline, so that the invocation ends
    before the Lambda's timeout (30 s) whatever HOSP does.
    """
    deadline = time.monotonic() + DEADLINE
    pause = FIRST_PAUSE
    failure = "no attempt made"
    for _attempt in range(ATTEMPTS):
        try:
            if marker_present(job, account, deadline):
                metrics.emit(metrics.NOTES_ALREADY_PRESENT)
                return "already_present"
            post_note(job, account, deadline)
            metrics.emit(metrics.NOTES_WRITTEN)
            return "written"
        except TransientFailure as exc:
            failure = str(exc)
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
        pause *= 2
    raise TransientFailure(failure)


def marker_present(job: NoteJob, account: service_account.ServiceAccount, deadline: float) -> bool:
    params = {"patient_id": str(job.patient_id)}
    answer = _hosp("GET", "/notes", job, account, params=params, deadline=deadline)
    if answer.status in PERMANENT_STATUSES:
        raise PermanentFailure(f"GET /notes answered {answer.status}")
    if answer.status != 200:
        raise TransientFailure(f"GET /notes answered {answer.status}")
    notes = hosp.json_of(answer)
    if not isinstance(notes, list):
        raise TransientFailure("GET /notes did not answer a JSON list")
    return any(isinstance(n, dict) and written_by_us(n, job, account) for n in notes)


def written_by_us(note: dict[str, Any], job: NoteJob, account: service_account.ServiceAccount) -> bool:
    """Whether `note` is this job's note: the service account's, with the job's marker.

    Not a substring search: a note anyone else wrote, quoting the marker, must
    not stop the real one being written.
    """
    if note.get("staff_id") != account.staff_id:
        return False
    try:
        body = json.loads(str(note.get("body", "")))
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("marker") == job.marker


def post_note(job: NoteJob, account: service_account.ServiceAccount, deadline: float) -> None:
    note = {
        "title": note_title(job),
        "body": note_body(job),
        "patient_id": job.patient_id,
        "staff_id": account.staff_id,
    }
    answer = _hosp("POST", "/notes", job, account, body=json.dumps(note).encode(), deadline=deadline)
    if answer.status in (200, 201):
        return
    if answer.status in PERMANENT_STATUSES:
        raise PermanentFailure(f"POST /notes answered {answer.status}: {answer.body[:300]!r}")
    raise TransientFailure(f"POST /notes answered {answer.status}")


def note_title(job: NoteJob) -> str:
    by = f" requested by {job.requested_by}" if job.requested_by else ""
    return f"X-ray screening results{by}"


def note_body(job: NoteJob) -> str:
    """The note's body: the results as structured JSON, with the marker and who asked."""
    return json.dumps(
        {
            "kind": "xray-screening",
            "marker": job.marker,
            "requested_by": job.requested_by,
            "requested_at": job.requested_at,
            "request_id": job.request_id,
            "results": job.results,
        },
        separators=(",", ":"),
    )


def backoff(receive_count: int) -> int:
    return int(min(MAX_BACKOFF, BACKOFF_BASE * 2 ** max(0, receive_count - 1)))


def misconfigured_backoff(receive_count: int) -> int:
    """The wait of a job the worker cannot write for want of configuration: 1, 4, 16, 64
    minutes, then 4.3 h, then SQS's longest (12 h), so that with the queue's 8 receives a
    job waits about 42 hours for an operator (eight waits, the last 12 h) before it is dead-lettered."""
    return int(min(MISCONFIGURED_MAX_BACKOFF, MISCONFIGURED_BACKOFF_BASE * 4 ** max(0, receive_count - 1)))


def defer(message: Message, delay: int) -> None:
    """Keep the message away for `delay` s, so that a HOSP outage is not hammered."""
    if message.queue_url is None:
        return
    try:
        aws.client("sqs").change_message_visibility(
            QueueUrl=message.queue_url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=delay
        )
    except Exception as exc:  # the queue's own visibility timeout applies instead
        logs.warning("note_defer_failed", reason=f"{type(exc).__name__}")


def dead_letter(message: Message, reason: str, job: NoteJob | None) -> None:
    """Move a message that can never succeed to the dead-letter queue, at once."""
    logs.error("note_job_dead_lettered", reason=reason, marker=job.marker if job else None)
    metrics.emit(metrics.NOTE_JOBS_DEAD_LETTERED)
    group = str(job.patient_id) if job else "malformed"
    aws.client("sqs").send_message(
        QueueUrl=aws.queue_url(config.note_dead_letter_queue_name()),
        MessageBody=message.body,
        MessageGroupId=group,
        MessageDeduplicationId=job.marker if job else _digest(message.body),
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
    )


def on_behalf_of_header(nurse: str) -> bytes | None:
    """X-On-Behalf-Of for the nurse a note is written for: the bytes of her user name.

    The hand-off names her as the access log writes her `user` (docs/access-log.md,
    "Client text": backslashes doubled, a byte that is not UTF-8 as \\xHH). The header
    carries the bytes that text stands for, so that the proxy, which logs it on its
    internal listener only as the row's on_behalf_of, writes it exactly as it wrote
    her `user`, and the audit trail's user filter finds both. None when no header can
    carry the name exactly: none, one the log cut at its bound, one with control
    characters, or one starting or ending with a space or a tab, which NGINX strips.
    """
    raw = log_schema.client_bytes(nurse)
    if not raw or any(byte < 0x20 or byte == 0x7F for byte in raw) or raw != raw.strip(b" \t"):
        return None
    return raw


def _hosp(
    method: str,
    path: str,
    job: NoteJob,
    account: service_account.ServiceAccount,
    *,
    body: bytes | None = None,
    params: dict[str, str] | None = None,
    deadline: float,
) -> hosp.Answer:
    headers: dict[str, Any] = {
        "Authorization": account.authorization,
        "X-Request-Id": job.request_id,
        "X-Patient-Id": str(job.patient_id),
    }
    if on_behalf_of := on_behalf_of_header(job.requested_by):
        headers[ON_BEHALF_OF] = on_behalf_of
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransientFailure("the invocation's deadline has passed")
        timeout = min(hosp.READ_TIMEOUT, left)
        return hosp.call(method, config.load().hosp_base_url + path, headers, body, params=params, timeout=timeout)
    except hosp.HospUnreachable as exc:
        raise TransientFailure(str(exc)) from exc


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def queue_url_of(arn: str) -> str | None:
    """The queue's URL from its ARN (arn:aws:sqs:REGION:ACCOUNT:NAME), as the event gives it."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    try:
        return aws.queue_url(parts[5])
    except Exception:
        return None
