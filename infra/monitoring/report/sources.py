"""Where the access log is: one file, a directory of them, or the archive in S3.

Every source ends as local files DuckDB reads, split by compression: a file
is gzip when it starts with gzip's magic bytes, whatever its name (Firehose's
objects in the audit archive are gzip; rotated logs may be). S3 objects are
downloaded, one at a time and streamed to disk, into a spool directory that
the caller removes: the archive is read where DuckDB runs, with no extension
to download, and memory stays flat in the archive's size.
"""

from __future__ import annotations

import gzip
import re
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

GZIP_MAGIC = b"\x1f\x8b"
# The access log's name on an instance and locally, and its rotated copies' (access.json.1, .2.gz).
ACCESS_LOG_NAME = "access.json"
# The archive's day partitions (infra/athena/audit.yaml: access/day=YYYY-MM-DD/).
DAY_PARTITION = re.compile(r"(?:^|/)day=(\d{4}-\d{2}-\d{2})/")


class SourceError(Exception):
    """The log cannot be read where it was said to be; the message says why, for a person."""


@dataclass
class Files:
    """Local files to read, by compression, and what they weigh."""

    plain: list[Path] = field(default_factory=list)
    gzip: list[Path] = field(default_factory=list)
    size: int = 0

    def add(self, path: Path) -> None:
        with path.open("rb") as file:
            magic = file.read(2)
        (self.gzip if magic == GZIP_MAGIC else self.plain).append(path)
        self.size += path.stat().st_size

    def __len__(self) -> int:
        return len(self.plain) + len(self.gzip)

    def drop_broken_gzip(self) -> list[Path]:
        """Leave out the gzip files that are cut short or corrupt (DuckDB stops at the first);
        the ones left out, each read through once to tell."""
        broken = [path for path in self.gzip if not _gzip_whole(path)]
        self.gzip = [path for path in self.gzip if path not in broken]
        return broken


def _gzip_whole(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error):
        return False
    return True


Progress = Callable[[str], None]


def say(message: str) -> None:
    """Progress for a person, on stderr (stdout stays for what a script reads)."""
    print(message, file=sys.stderr, flush=True)


def local(location: str) -> Files:
    """The file `location`, or every regular file under the directory, sorted; never an empty set."""
    path = Path(location)
    if not path.exists():
        raise SourceError(f"no access log at {location}: give a file, a directory or s3://bucket/prefix")
    files = Files()
    try:
        if path.is_file():
            files.add(path)
        else:
            children = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            # A fleet's log directory holds NGINX's other logs too (error.log, the failed
            # hand-offs): where access logs are named as NGINX names them, only they are read.
            access_logs = [p for p in children if p.name.startswith(ACCESS_LOG_NAME)]
            for child in access_logs or children:
                files.add(child)
    except OSError as failure:
        raise SourceError(f"cannot read {failure.filename or location}: {failure.strerror or failure}") from failure
    if not len(files):
        raise SourceError(f"{location} holds no file")
    return files


def split_s3(location: str) -> tuple[str, str]:
    """("bucket", "prefix/") of s3://bucket/prefix."""
    rest = location.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SourceError(f"{location}: an S3 location is s3://bucket/prefix")
    return bucket, prefix


def days_wanted(key: str, first: date | None, last: date | None) -> bool:
    """Whether an archive object may hold lines logged from `first` to `last` (days, UTC).

    An object lies in the partition of the day it reached the archive, which is the
    day its lines were logged or later (Firehose buffers for up to 5 minutes; a
    delivery retried after an outage can arrive days later). So partitions before
    `first` are skipped, and every one from `first` on is read when `last` is open;
    with `last`, partitions up to a week after it are read, and the lines are
    filtered by the time they were logged in any case. A key outside any partition
    is always read.
    """
    match = DAY_PARTITION.search(key)
    if not match:
        return True
    day = date.fromisoformat(match.group(1))
    if first and day < first:
        return False
    return not (last and day > last + timedelta(days=7))


def s3(
    location: str, spool: Path, first: date | None, last: date | None, *, progress: Progress = say, client: Any = None
) -> Files:
    """Download the objects under s3://bucket/prefix that may hold the days asked for, into `spool`.

    The client is boto3's default one unless given: credentials and region from the
    environment, and AWS_ENDPOINT_URL for a local S3 such as the local stack's.
    """
    bucket, prefix = split_s3(location)
    s3_client = client or boto3.client("s3")
    try:
        objects = [
            item
            for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/") and days_wanted(item["Key"], first, last)
        ]
    except (BotoCoreError, ClientError) as failure:
        raise SourceError(f"cannot list {location}: {failure}") from failure
    if not objects:
        raise SourceError(f"{location} holds no object for the days asked")
    total = sum(item["Size"] for item in objects)
    progress(f"downloading {len(objects)} objects ({total / 1e6:.1f} MB) from {location}")
    files = Files()
    done = 0
    for n, item in enumerate(objects, 1):
        target = spool / f"{n:06d}"
        try:
            s3_client.download_file(bucket, item["Key"], str(target))
        except (BotoCoreError, ClientError) as failure:
            raise SourceError(f"cannot read s3://{bucket}/{item['Key']}: {failure}") from failure
        files.add(target)
        done += item["Size"]
        if n == len(objects) or n % 50 == 0:
            progress(f"  {n}/{len(objects)} objects, {done / 1e6:.1f} of {total / 1e6:.1f} MB")
    return files


def resolve(location: str, spool: Path, first: date | None, last: date | None, progress: Progress = say) -> Files:
    """The files of `location` (a file, a directory or s3://bucket/prefix) as local files."""
    if location.startswith("s3://"):
        return s3(location, spool, first, last, progress=progress)
    return local(location)
