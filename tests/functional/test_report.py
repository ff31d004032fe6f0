"""The reliability report (infra/monitoring/report) on access logs with known rates.

The logs are made by bench/access_logs.py, which counts what it draws as it draws it;
the report reads them back with DuckDB. Its headline must equal those counts exactly,
for the whole span and for each day, whether the log is one file, a directory of
plain and gzip files, or the audit archive in S3 (moto's, made as the local stack makes
it). Unreadable lines are counted and skipped, never a crash.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.access_logs import Rates, Truth, write
from infra.monitoring.report import cli, crunch
from local import audit_buckets
from tests.support import local_aws

START = datetime(2026, 11, 29, 22, 0)
SPAN = timedelta(days=2, hours=4)  # 29 Nov 22:00 to 2 Dec 02:00: four days, two of them partial
LINES = 20_000
RATES = Rates(first_failure=0.25, refusal=0.1, broken=0.01)
HEADLINE_FIELDS = (
    "client_requests", "client_failures", "hosp_requests", "first_attempt_failures",
    "recovered", "attempts", "retried", "refusals",
)  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("log") / "access.json"
    return path, write(path, LINES, START, SPAN, RATES, seed=7)


def report(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    """Run the command line; (exit code, the headline embedded in the HTML, the HTML)."""
    argv = [str(arg) for arg in args]
    code = cli.main(argv)
    if code:
        return code, {}, ""
    out = Path(argv[argv.index("--out") + 1])
    page = out.read_text(encoding="utf-8")
    (embedded,) = re.findall(r'<script type="application/json" id="headline">(.*?)</script>', page, re.S)
    return code, json.loads(embedded), page


def expected(truth: Truth) -> dict[str, int]:
    counts = truth.counts()
    return {
        "client_requests": counts["client_requests"],
        "client_failures": counts["client_failures"],
        "hosp_requests": counts["hosp_requests"],
        "first_attempt_failures": counts["first_attempt_failures"],
        "recovered": counts["recovered"],
        "attempts": counts["attempts"],
        "retried": counts["retried"],
        "refusals": counts["refusals"],
    }


def headline(found: dict[str, Any]) -> dict[str, int]:
    return {name: found[name] for name in HEADLINE_FIELDS}


def test_the_headline_equals_the_rates_drawn_for_the_span_and_each_day(
    generated: tuple[Path, Truth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, truth = generated
    # The log holds each kind.
    assert truth.unreadable > 50
    assert truth.refusals > 100
    assert truth.recovered > 1000

    code, found, page = report("--log", log, "--out", tmp_path / "r.html")

    assert code == 0
    assert headline(found["whole"]) == expected(truth)
    assert {day["label"]: headline(day) for day in found["days"]} == {
        day: expected(counts) for day, counts in truth.per_day.items()
    }
    assert list(truth.per_day) == ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert found["read"]["lines"] == truth.lines
    assert found["read"]["unreadable"] == truth.unreadable
    assert found["read"]["outside"] == 0
    printed = capsys.readouterr()
    whole = truth.counts()
    rate = 100 * whole["first_attempt_failures"] / whole["hosp_requests"]
    assert f"HOSP first attempts failed     {rate:.2f}%" in printed.out
    assert f"{truth.unreadable:,} unreadable" in printed.err  # progress goes to stderr
    assert f"{truth.unreadable:,} unreadable and skipped" in page
    assert page.count("<svg") == 7  # 3 over time, 2 of failures, screens, audit


def test_from_and_to_read_whole_utc_days(generated: tuple[Path, Truth], tmp_path: Path) -> None:
    log, truth = generated
    code, found, _ = report("--log", log, "--from", "2026-11-30", "--to", "2026-12-01", "--out", tmp_path / "r.html")

    assert code == 0
    both = [truth.per_day["2026-11-30"], truth.per_day["2026-12-01"]]
    assert headline(found["whole"]) == {name: sum(expected(day)[name] for day in both) for name in HEADLINE_FIELDS}
    assert [day["label"] for day in found["days"]] == ["2026-11-30", "2026-12-01"]
    outside = sum(
        day.lines - day.unreadable for name, day in truth.per_day.items() if name not in ("2026-11-30", "2026-12-01")
    )
    assert found["read"]["outside"] == outside


def test_a_time_with_an_offset_is_read_as_utc(generated: tuple[Path, Truth], tmp_path: Path) -> None:
    log, truth = generated
    # 2026-12-02T03:00+01:00 is 02:00 UTC: the end of the log, so nothing is left out at the end.
    code, found, _ = report(
        "--log", log, "--from", "2026-12-01T01:00+01:00", "--to", "2026-12-02T03:00+01:00", "--out", tmp_path / "r.html"
    )
    assert code == 0
    days = [truth.per_day["2026-12-01"], truth.per_day["2026-12-02"]]
    assert headline(found["whole"]) == {name: sum(expected(day)[name] for day in days) for name in HEADLINE_FIELDS}


def _split(log: Path, into: Path, gzip_names: tuple[str, ...] = ("part-b",)) -> Path:
    """The log cut in three files under `into`, some gzip-compressed under names without .gz."""
    lines = log.read_bytes().splitlines(keepends=True)
    into.mkdir()
    third = len(lines) // 3
    for name, part in zip(
        ("part-a", "part-b", "nested/part-c"),
        (lines[:third], lines[third : 2 * third], lines[2 * third :]),
        strict=True,
    ):
        target = into / name
        target.parent.mkdir(exist_ok=True)
        data = b"".join(part)
        target.write_bytes(gzip.compress(data) if name in gzip_names else data)
    return into


def test_a_directory_of_plain_and_gzip_files_reads_as_the_one_log(
    generated: tuple[Path, Truth], tmp_path: Path
) -> None:
    log, truth = generated
    code, found, _ = report("--log", _split(log, tmp_path / "logs"), "--out", tmp_path / "r.html")
    assert code == 0
    assert headline(found["whole"]) == expected(truth)
    assert found["read"]["unreadable"] == truth.unreadable


def point_boto3_at(aws_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's default boto3 client goes to the local S3, as an operator's would with AWS_ENDPOINT_URL."""
    for name, value in {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "eu-west-2",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def aws_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_aws(tmp_path_factory.mktemp("moto")) as url:
        yield url


def test_the_archive_in_s3_is_read_by_day_partition(
    generated: tuple[Path, Truth], aws_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The local stack's locked log bucket, objects gzip-compressed under access/day=.../ as
    Firehose writes them: a line is in the partition of the day it arrived, so lines of 30 Nov
    late in the evening lie in 1 Dec's partition, and a partition before FROM is never read."""
    log, truth = generated
    s3 = audit_buckets.client(aws_url)
    audit_buckets.create(s3)
    by_partition: dict[str, list[bytes]] = {}
    for raw in log.read_bytes().splitlines(keepends=True):
        logged = re.search(rb'"logged_at":"(\d{4}-\d\d-\d\d) (\d\d)', raw)
        day, hour = (logged.group(1).decode(), int(logged.group(2))) if logged else ("2026-11-29", 0)
        arrived = (datetime.fromisoformat(day) + timedelta(days=1 if hour >= 23 else 0)).strftime("%Y-%m-%d")
        by_partition.setdefault(arrived, []).append(raw)
    for day, lines in by_partition.items():
        key = f"access/day={day}/hosp-reliability-local-access-1-{day}-00-00-00-0000"
        s3.put_object(
            Bucket=audit_buckets.LOG_BUCKET, Key=key, Body=gzip.compress(b"".join(lines)), ChecksumAlgorithm="SHA256"
        )
    point_boto3_at(aws_url, monkeypatch)

    code, found, _ = report(
        "--log",
        f"s3://{audit_buckets.LOG_BUCKET}/access/",
        "--from",
        "2026-11-30",
        "--to",
        "2026-12-01",
        "--out",
        tmp_path / "r.html",
    )

    assert code == 0
    both = [truth.per_day["2026-11-30"], truth.per_day["2026-12-01"]]
    assert headline(found["whole"]) == {name: sum(expected(day)[name] for day in both) for name in HEADLINE_FIELDS}
    # 30 Nov, 1 Dec, and 2 Dec (lines of 1 Dec that arrived the next day); not 29 Nov.
    assert "downloading 3 objects" in capsys.readouterr().err


def test_a_bucket_without_objects_for_the_days_says_so(
    aws_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = audit_buckets.client(aws_url)
    audit_buckets.create(s3)
    point_boto3_at(aws_url, monkeypatch)
    assert cli.main(["--log", f"s3://{audit_buckets.LOG_BUCKET}/nothing-here/", "--out", str(tmp_path / "r.html")]) == 2
    assert cli.main(["--log", "s3://no-such-bucket-here/access/", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "holds no object for the days asked" in err
    assert "cannot list s3://no-such-bucket-here/access/" in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "FROM must be a UTC day (2026-12-01) or time (2026-12-01T08:30), got 'yesterday'"),
        (["--to", "2026-13-01"], "TO must be a UTC day"),
        (["--from", "2026-12-02", "--to", "2026-12-01"], "FROM (2026-12-02) must come before TO (2026-12-01)"),
    ],
)
def test_wrong_options_are_refused_with_what_to_give(
    generated: tuple[Path, Truth], tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = generated
    assert cli.main(["--log", str(log), "--out", str(tmp_path / "r.html"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_a_missing_log_is_refused_and_the_previous_report_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    out.write_text("the previous report")
    assert cli.main(["--log", str(tmp_path / "nowhere.json"), "--out", str(out)]) == 2
    assert f"no access log at {tmp_path / 'nowhere.json'}" in capsys.readouterr().err
    assert out.read_text() == "the previous report"
    (tmp_path / "empty-dir").mkdir()
    assert cli.main(["--log", str(tmp_path / "empty-dir"), "--out", str(out)]) == 2
    assert "holds no file" in capsys.readouterr().err


def test_the_local_stack_run_directory_is_the_default(generated: tuple[Path, Truth], tmp_path: Path) -> None:
    log, truth = generated
    run_dir = tmp_path / "run"
    (run_dir / "nginx").mkdir(parents=True)
    (run_dir / "nginx" / "access.json").write_bytes(log.read_bytes())
    (run_dir / "chalice.log").write_text(
        "INFO chalice local started\n"
        '{"time": "2026-11-30T10:00:00.000Z", "level": "info", "event": "note_job_queued", "request_id": "x"}\n'
    )

    assert cli.main(["--run-dir", str(run_dir)]) == 0

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"{truth.lines:,} lines" in page
    assert "and 1 Lambda log" in page
    assert oct((run_dir / "report.html").stat().st_mode & 0o777) != oct(0o600)  # readable as any file written


HOSTILE_LINES = [
    b"",  # blank lines are not lines
    b"\xff\xfe\x00 not UTF-8 at all",
    b'{"logged_at": "2026-11-30 10:00:00.000", "status": 503, "listener": "public", '
    b'"route": "</script><script>alert(1)</script> $\\\\frac{1}{$", "upstream_status": "", "request_time": 0.1}',
    b"[" * 100_000,
    b'{"logged_at": "2026-11-30 10:00:00.000", "status": 200, "listener": "public", "route": "hosp", '
    b'"upstream_status": "200"' + b', "x": "' + b"a" * 3_000_000 + b'"}',
    b'{"logged_at": "not a time", "status": 200, "listener": "public", "route": "hosp"}',
    b'{"logged_at": "2026-11-30 10:00:00.000", "status": "200", "listener": "public", "route": "hosp"}',
    b"null",
]


def test_hostile_lines_are_skipped_or_escaped_never_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "access.json"
    log.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")

    code, found, page = report("--log", log, "--out", tmp_path / "r.html")

    assert code == 0
    # The route with markup is a real line (a 5xx a client saw): counted, and its text escaped.
    assert found["whole"]["client_failures"] == 1
    assert found["whole"]["client_requests"] == 3  # it, the 3 MB line, and the status given as text
    assert found["read"]["unreadable"] == 4  # not UTF-8, the 100,000 brackets, the bad time, null
    assert "<script>alert" not in page
    assert "</script><script>" not in page
    assert page.count("<script") == 1  # the embedded headline, and nothing else


def test_an_empty_log_makes_a_report_that_says_there_is_nothing(tmp_path: Path) -> None:
    log = tmp_path / "access.json"
    log.write_bytes(b"")
    code, found, page = report("--log", log, "--out", tmp_path / "r.html")
    assert code == 0
    assert found["whole"]["client_requests"] == 0
    assert "No readable line in the span: nothing to plot." in page


@pytest.mark.parametrize(
    ("span", "bucket"),
    [
        (timedelta(0), timedelta(seconds=1)),
        (timedelta(seconds=20), timedelta(seconds=1)),
        (timedelta(minutes=30), timedelta(seconds=10)),
        (timedelta(hours=2), timedelta(minutes=1)),
        (timedelta(days=3), timedelta(minutes=15)),
        (timedelta(days=30), timedelta(hours=6)),
        (timedelta(days=300), timedelta(days=1)),
        (timedelta(days=400), timedelta(days=7)),
        (timedelta(days=36500), timedelta(days=30)),
    ],
)
def test_the_plot_bucket_follows_the_span(span: timedelta, bucket: timedelta) -> None:
    assert crunch.bucket_for(START, START + span) == bucket


def test_lambda_events_are_counted_with_or_without_a_prefix(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(
        "\n".join(
            [
                '{"time": "2026-11-30T10:00:00.100Z", "level": "info", "event": "note_written", "request_id": "a"}',
                '2026-11-30T10:00:00.200Z\tabc\t{"time": "2026-11-30T10:00:00.200Z", "event": "note_written"}',
                '{"time": "2026-11-30T10:00:01.000Z", "level": "error", "event": "note_job_dead_lettered"}',
                '{"time": "2026-11-30T10:00:01.000Z", "level": "info", "event": "something_else"}',
                '{"time": "2026-11-30T10:00:02.000Z", "event": "note_written"',  # cut short
                "Traceback (most recent call last):",
                '{"time": "2026-12-05T10:00:00.000Z", "event": "note_written"}',  # after TO
            ]
        )
        + "\n"
    )
    counts, unreadable = crunch.lambda_events([log], None, datetime(2026, 12, 1))
    assert dict(counts) == {
        (datetime(2026, 11, 30, 10, 0, 0), "note_written"): 2,
        (datetime(2026, 11, 30, 10, 0, 1), "note_job_dead_lettered"): 1,
    }
    assert unreadable == 1


def test_a_report_killed_midway_leaves_no_spool_behind_for_long(generated: tuple[Path, Truth], tmp_path: Path) -> None:
    """A run killed with -9 keeps its temporary directory (the spooled archive, DuckDB's
    files); the next run removes it, and leaves a running one's alone."""
    log, _ = generated
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = Path(tempfile.gettempdir())
    stale = root / f"{cli.WORK_PREFIX}abc-pid{dead.pid}"
    alive = root / f"{cli.WORK_PREFIX}def-pid{os.getpid()}"
    for directory in (stale, alive):
        (directory / "spool").mkdir(parents=True)
    try:
        assert cli.main(["--log", str(log), "--out", str(tmp_path / "r.html")]) == 0
        assert not stale.exists()
        assert alive.exists()
    finally:
        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def test_times_no_proxy_logged_are_unreadable_lines_not_a_crash(generated: tuple[Path, Truth], tmp_path: Path) -> None:
    """A line of the year 9999, 1970 or 0001 (a clock or a line gone wrong) would stretch the
    plots over millennia: it is counted as unreadable, and the rest is read as ever."""
    log, truth = generated
    odd = tmp_path / "access.json"
    line = '{{"logged_at": "{at}", "status": 503, "listener": "public", "route": "hosp", "upstream_status": "503"}}'
    extra = [
        line.format(at=at) for at in ("9999-12-31 23:59:59.000", "1970-01-01 00:00:00.000", "0001-01-01 00:00:00.000")
    ]
    odd.write_bytes(log.read_bytes() + ("\n".join(extra) + "\n").encode())

    code, found, _ = report("--log", odd, "--out", tmp_path / "r.html")

    assert code == 0
    assert headline(found["whole"]) == expected(truth)
    assert found["read"]["unreadable"] == truth.unreadable + 3


def test_a_fleets_log_directory_is_read_for_its_access_logs_and_a_cut_gzip_is_skipped(
    generated: tuple[Path, Truth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/var/log/hosp-proxy holds NGINX's error log and the failed hand-offs beside the access
    log and its rotations: only the access logs are read. A rotated copy cut short is left out
    and named, and the rest is reported."""
    log, truth = generated
    fleet = tmp_path / "hosp-proxy"
    fleet.mkdir()
    data = log.read_bytes()
    half = data.rfind(b"\n", 0, len(data) // 2) + 1
    (fleet / "access.json.1").write_bytes(data[:half])
    (fleet / "access.json").write_bytes(data[half:])
    (fleet / "access.json.2.gz").write_bytes(gzip.compress(data[:half])[:-100])  # cut short
    (fleet / "error.log").write_text("2026/12/01 10:00:00 [error] 12#12: *1 connect() failed\n" * 3)
    (fleet / "note-handoff-failed.json").write_text('{"event":"note_handoff_failed","handoff":"{}"}\n')

    code, found, page = report("--log", fleet, "--out", tmp_path / "r.html")

    assert code == 0
    assert headline(found["whole"]) == expected(truth)
    assert found["read"]["unreadable"] == truth.unreadable
    assert "1 corrupt gzip file skipped" in page
    assert "access.json.2.gz" in capsys.readouterr().err


def test_a_to_past_the_calendar_is_refused_with_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.json"
    log.write_text("")
    assert cli.main(["--log", str(log), "--to", "9999-12-31", "--out", str(tmp_path / "r.html")]) == 2
    assert "TO must be a UTC day" in capsys.readouterr().err


def test_a_lambda_line_whose_event_is_not_a_name_is_unreadable(tmp_path: Path) -> None:
    log = tmp_path / "lambda.log"
    log.write_text(
        '{"time": "2026-11-30T10:00:00.000Z", "event": {}}\n{"time": "2026-11-30T10:00:00.000Z", "event": ["x"]}\n'
    )
    counts, unreadable = crunch.lambda_events([log], None, None)
    assert (dict(counts), unreadable) == ({}, 2)
