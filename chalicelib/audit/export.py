"""A finished export: its file's SHA-256 and row count, its record in the trail, its download link.

The CSV is read once, as a stream, to hash and count it: memory does not grow
with the file. The result is kept as the export's record in the log bucket
(`exports/<day>/<job id>.json`, under Object Lock like the log itself), so later
polls read the record instead of the file, and so that every export is itself
part of the trail: who exported which filters, when, how many rows, which hash.
Every link handed out adds a record of its own: who got it, and until when.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib import aws, logs
from chalicelib.audit.jobs import Job

CHUNK = 1 << 20
# The longest field the CSV reader takes: any a file can hold (the csv module's own
# default, 131,072 characters, would fail an export on one long value a client sent).
# The limit is the process's, and no reader here wants a lower one.
CSV_FIELD_LIMIT = 2**31 - 1
CONFLICT_ATTEMPTS = 3  # of a conditional write that S3 reports as conflicting with another
CONFLICT_PAUSE = 0.1  # seconds, times the attempt
UNREADABLE_PATH = "(unreadable log line)"  # what trail.sql puts in `path` for such a line
# Presigning needs no network; SigV4 so that the link works with KMS-encrypted objects.
_PRESIGN_CONFIG = Config(signature_version="s3v4")


class ExportGone(LookupError):
    """The query finished but its file is no longer there (the results bucket expires them)."""


@dataclass(frozen=True)
class FileSummary:
    sha256: str
    rows: int  # data rows, without the header
    unreadable_rows: int  # rows standing for log lines the archive could not read
    bytes: int


class _HashingReader(io.RawIOBase):
    """Reads a stream through, hashing and counting every byte on the way."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        self.digest.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)


def summarise(stream: BinaryIO) -> FileSummary:
    """Hash and count a CSV as Athena writes it (header row, every value quoted), rows of any size."""
    reader = _HashingReader(stream)
    text = io.TextIOWrapper(io.BufferedReader(reader, CHUNK), encoding="utf-8", errors="replace", newline="")
    rows = unreadable = 0
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    records = csv.reader(text)
    header = next(records, None)
    path_column = header.index("path") if header and "path" in header else -1
    for record in records:
        rows += 1
        if 0 <= path_column < len(record) and record[path_column] == UNREADABLE_PATH:
            unreadable += 1
    return FileSummary(reader.digest.hexdigest(), rows, unreadable, reader.size)


def record_key(job: Job, suffix: str = "") -> str:
    return f"exports/{job.submitted_at:%Y-%m-%d}/{job.job_id}{suffix}.json"


def record_start(log_bucket: str, job: Job, requested_by: str) -> None:
    """The export's first record: who asked for which filters, and when."""
    record = {
        "event": "audit_export_started",
        "job_id": job.job_id,
        "requested_by": requested_by,
        "requested_at": job.submitted_at.isoformat(),
        "filters": job.filters.applied(),
    }
    logs.info("audit_export_started", **{k: v for k, v in record.items() if k != "event"})
    _put_record(log_bucket, record_key(job, ".started"), record)


def finish(log_bucket: str, job: Job, delivered_to: str) -> dict[str, Any]:
    """The finished export's record: read from the log bucket, or made now by reading the CSV once.

    Two callers finishing the same export at once both read the file, but only
    the first record is kept (a conditional write); the other reads it back.
    """
    key = record_key(job)
    found = _record(log_bucket, key)
    if found is not None:
        return found
    bucket, csv_key = job.output
    try:
        summary = summarise(aws.client("s3").get_object(Bucket=bucket, Key=csv_key)["Body"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise ExportGone(job.job_id) from error
        raise
    record = {
        "event": "audit_export",
        "job_id": job.job_id,
        "first_delivered_to": delivered_to,
        "requested_at": job.submitted_at.isoformat(),
        "completed_at": datetime.now(UTC).isoformat(),
        "filters": job.filters.applied(),
        "rows": summary.rows,
        "unreadable_rows": summary.unreadable_rows,
        "bytes": summary.bytes,
        "sha256": summary.sha256,
        "file": f"s3://{bucket}/{csv_key}",
    }
    if not _put_record(log_bucket, key, record, only_if_new=True):
        return _record(log_bucket, key) or record  # another caller's record came first
    logs.info("audit_export", **{k: v for k, v in record.items() if k != "event"})
    return record


def record_delivery(log_bucket: str, job: Job, delivered_to: str, expires: datetime) -> None:
    """Who was handed a link to the export, and until when: one record per link given."""
    now = datetime.now(UTC)
    record = {
        "event": "audit_export_delivered",
        "job_id": job.job_id,
        "delivered_to": delivered_to,
        "delivered_at": now.isoformat(),
        "link_expires_at": expires.isoformat(),
    }
    logs.info("audit_export_delivered", **{k: v for k, v in record.items() if k != "event"})
    _put_record(log_bucket, record_key(job, f".delivered.{now:%Y%m%dT%H%M%S%f}.{uuid.uuid4().hex[:8]}"), record)


def _record(bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _put_record(bucket: str, key: str, record: dict[str, Any], only_if_new: bool = False) -> bool:
    """Write a record; False if `only_if_new` and the key already holds one."""
    body = (json.dumps(record, sort_keys=True) + "\n").encode()
    condition = {"IfNoneMatch": "*"} if only_if_new else {}
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            # Object Lock buckets require an integrity checksum on every write.
            aws.client("s3").put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                **condition,
            )
            return True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if only_if_new and code in ("PreconditionFailed", "412"):
                return False  # the key holds a record already
            # S3 answers 409 to a conditional write that met another write of the key in
            # flight, and asks for a retry.
            if not (only_if_new and code == "ConditionalRequestConflict" and attempt < CONFLICT_ATTEMPTS):
                raise
            time.sleep(CONFLICT_PAUSE * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def download_link(job: Job, ttl_seconds: int, now: datetime | None = None) -> tuple[str, datetime]:
    """A GET-only presigned link to the CSV, named after the range, and when it stops working."""
    bucket, key = job.output
    client = aws.presigning_client("s3", _PRESIGN_CONFIG)
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{job.filters.file_name()}"',
            "ResponseContentType": "text/csv; charset=utf-8",
        },
        ExpiresIn=ttl_seconds,
        HttpMethod="GET",
    )
    expires = (now or datetime.now(UTC)) + timedelta(seconds=ttl_seconds)
    return str(url), expires
