"""The trail's days on any calendar: clocks pinned a year ahead, at a month's end and at a year's end.

Athena reads only the day partitions from the day of `from` to the day after `to`,
because a line is in the partition of the day it reached the archive, the day it was
logged or a later one. Locally a line that cannot be read counts as logged on the day
the export reads the log. Each test here pins that day and the filters' "now", so
that what it checks holds on whatever day it runs.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import aws
from chalicelib.audit import filters, jobs
from local import audit_buckets, audit_engine
from tests.functional.test_audit_trail_sql import entry, exported, ids, rid

UNREADABLE = "(unreadable log line)"
CLOCKS = {
    "a year ahead": datetime(2027, 12, 6, 12, 0, tzinfo=UTC),
    "a month's last second": datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC),
    "a year's last second": datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC),
    "just past new year": datetime(2028, 1, 1, 0, 0, 30, tzinfo=UTC),
    "a leap day's last second": datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC),
}
at_each_clock = pytest.mark.parametrize("now", list(CLOCKS.values()), ids=list(CLOCKS))
# The last day of a month, of a year and of a leap February, as an admin may ask for it:
# up to the next midnight (`to` is excluded), or up to the day's last millisecond.
on_each_last_day = pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2027-01-31T00:00:00Z", "2027-02-01T00:00:00Z"),
        ("2027-01-31T00:00:00Z", "2027-01-31T23:59:59.999Z"),
        ("2027-12-31T00:00:00Z", "2028-01-01T00:00:00Z"),
        ("2027-12-31T00:00:00Z", "2027-12-31T23:59:59.999Z"),
        ("2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"),
    ],
)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def last_second(day_start: str) -> datetime:
    """23:59:59 on the day that starts at `day_start`."""
    return moment(day_start) + timedelta(days=1, seconds=-1)


def partitions_read(chosen: filters.Filters) -> set[date]:
    """The day partitions the query reads for `chosen`: first_day to last_day, both included."""
    values = chosen.query_parameters()
    first, last = date.fromisoformat(values["first_day"]), date.fromisoformat(values["last_day"])
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def logged(at: datetime, **fields: Any) -> dict[str, Any]:
    return entry(filters.sql_time(at), **fields)


# --- the day partitions Athena reads ----------------------------------------------------------------


@at_each_clock
def test_the_default_range_ends_at_the_clock_and_reads_every_day_its_lines_can_be_archived_on(now: datetime) -> None:
    chosen = filters.parse({}, now)

    assert (chosen.start, chosen.end) == (now - filters.DEFAULT_SPAN, now)
    first, last = chosen.start, chosen.end - timedelta(milliseconds=1)
    # The first and the last line of the range, each archived the day it was logged or the day after.
    for line in (first, last):
        assert {line.date(), line.date() + timedelta(days=1)} <= partitions_read(chosen)
    assert min(partitions_read(chosen)) == first.date()  # nothing before the range is read


@on_each_last_day
def test_a_line_logged_in_the_last_second_of_a_month_and_archived_after_midnight_is_read(start: str, end: str) -> None:
    chosen = filters.parse({"from": [start], "to": [end]}, moment(end) + timedelta(days=400))
    line = last_second(start)
    archived = line.date() + timedelta(days=1)  # it reached the archive after midnight

    assert chosen.start <= line < chosen.end
    assert {line.date(), archived} <= partitions_read(chosen)


@at_each_clock
def test_a_range_up_to_31_days_before_the_clock_is_taken_and_a_longer_one_is_not(now: datetime) -> None:
    month_ago = filters.iso(now - filters.MAX_SPAN)

    assert filters.parse({"from": [month_ago]}, now).end == now
    with pytest.raises(filters.BadFilter) as refused:
        filters.parse({"from": [filters.iso(now - filters.MAX_SPAN - timedelta(seconds=1))]}, now)
    assert refused.value.field == "from"


# --- on DuckDB, as the local route runs it ---------------------------------------------------------


@at_each_clock
def test_an_unreadable_line_is_found_by_the_default_range_whatever_the_date(tmp_path: Path, now: datetime) -> None:
    lines: list[dict[str, Any] | str] = [
        logged(now - timedelta(hours=23, minutes=59), request_id=rid(1), user="alice"),
        logged(now - timedelta(minutes=1), request_id=rid(2), user="alice"),
        '{"time":"2027-',
    ]

    everything = exported(tmp_path, lines, {}, now)
    nothing_matches = exported(tmp_path, lines, {"user": "bob", "status": "5xx"}, now)

    assert [row["path"] for row in everything] == ["/hospitals", "/hospitals", UNREADABLE]
    assert ids(everything)[:2] == [rid(1), rid(2)]
    assert [row["path"] for row in nothing_matches] == [UNREADABLE]


@at_each_clock
def test_an_export_asked_for_before_midnight_that_reads_the_log_after_it_still_finds_an_unreadable_line(
    tmp_path: Path, now: datetime
) -> None:
    the_next_day = (now + timedelta(days=1)).date()

    rows = exported(tmp_path, ["\x00 not json"], {"user": "nobody"}, now, today=the_next_day)

    assert [row["path"] for row in rows] == [UNREADABLE]


@on_each_last_day
def test_a_line_logged_at_the_last_second_of_a_month_is_found_by_a_range_ending_that_day(
    tmp_path: Path, start: str, end: str
) -> None:
    midnight = last_second(start) + timedelta(seconds=1)
    lines = [
        logged(moment(start) - timedelta(milliseconds=1), request_id=rid(1)),
        logged(moment(start), request_id=rid(2)),
        logged(last_second(start), request_id=rid(3)),
        logged(midnight, request_id=rid(4)),
    ]

    rows = exported(tmp_path, lines, {"from": start, "to": end}, midnight + timedelta(seconds=1))

    assert ids(rows) == [rid(2), rid(3)]


# --- the local engine, its clock pinned ------------------------------------------------------------


@pytest.fixture
def local_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 in this process, with the audit buckets; the engine's clients use it."""
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws.reset()
        s3 = boto3.client("s3", region_name="eu-west-2")
        audit_buckets.create(s3)
        yield s3
    aws.reset()


def finished(engine: audit_engine.LocalEngine, job_id: str) -> jobs.Job:
    deadline = time.monotonic() + 30
    while (job := engine.job(job_id)).running and time.monotonic() < deadline:
        time.sleep(0.05)
    return job


@at_each_clock
def test_the_local_engine_shows_an_unreadable_line_on_the_day_its_clock_says(
    tmp_path: Path, local_s3: Any, now: datetime
) -> None:
    log = tmp_path / "access.json"
    log.write_text("\x00\x01 not json\n", encoding="utf-8")
    engine = audit_engine.LocalEngine(
        str(log), audit_buckets.RESULTS_BUCKET, "audit/", tmp_path / "work", clock=lambda: now
    )

    job = finished(engine, engine.start(filters.parse({"user": ["nobody"]}, now)))

    assert (job.state, job.reason) == ("SUCCEEDED", "")
    assert job.submitted_at == now
    text = local_s3.get_object(Bucket=job.output[0], Key=job.output[1])["Body"].read().decode()
    assert [row["path"] for row in csv.DictReader(io.StringIO(text))] == [UNREADABLE]
