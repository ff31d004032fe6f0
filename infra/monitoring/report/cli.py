"""The report's command line: where to read, which span, where to write."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from infra.monitoring.report import crunch, render, sources
from infra.monitoring.report.sources import SourceError, say

# The local stack's run directory (local/stack.py): its access log, Lambda logs, and the report.
RUN_DIR = Path(".local")
ACCESS_LOG = Path("nginx/access.json")
LAMBDA_LOGS = (Path("chalice.log"), Path("note-worker.log"))
OUT = Path("report.html")

DESCRIPTION = """\
Write the reliability report: one self-contained HTML file (plots included, no network
needed to open it) with HOSP's first-attempt failure rate against the failure rate
clients saw, retries, the retry budget's refusals, latency, the top failing routes,
screens and their notes, and audit exports, for the whole span and per day.

Without --log it reads the running local stack's log (.local/nginx/access.json) and its
Lambda logs, and writes .local/report.html. docs/report.md explains every figure.
"""

EPILOG = """\
examples:
  make report
  make report LOG=/var/log/hosp-proxy FROM=2026-12-01 TO=2026-12-07 OUT=week.html
  python -m infra.monitoring.report --log s3://hosp-reliability-prod-audit-log-123456789012/access/ \\
      --from 2026-12-01 --to 2026-12-07 --out week.html

FROM and TO are UTC: a day (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM[:SS], with an
offset if not UTC). FROM is inclusive; TO as a day includes that whole day, as a time
it is exclusive. S3 reads use the AWS credentials and region of the environment
(AWS_ENDPOINT_URL for a local S3).
"""


class UsageError(Exception):
    """A wrong option; the message says what to give instead."""


def parse_moment(text: str, name: str, end: bool) -> datetime:
    """FROM or TO as a naive UTC datetime; a day given as TO means the end of that day."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise UsageError(f"{name} must be a UTC day (2026-12-01) or time (2026-12-01T08:30), got {text!r}") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m infra.monitoring.report", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--log",
        default="",
        help="the access log: a file, a directory (every file under it, gzip or not), "
        "or s3://bucket/prefix (the audit archive)",
    )
    p.add_argument(
        "--lambda-log",
        action="append",
        default=[],
        type=Path,
        help="a Lambda log file or directory (JSON lines) for the screens and audit plots; repeatable. "
        "Default with --log unset: the local stack's",
    )
    p.add_argument("--from", dest="start", default="", help="first moment read (UTC), e.g. 2026-12-01")
    p.add_argument("--to", dest="end", default="", help="last day read, or the moment reading stops (UTC)")
    p.add_argument("--out", default="", type=Path, help="the HTML file written (default: RUN_DIR/report.html)")
    p.add_argument("--run-dir", default=RUN_DIR, type=Path, help="the local stack's run directory (default: .local)")
    p.add_argument("--memory-limit", default="512MB", help="DuckDB's memory before it spills to disk (default: 512MB)")
    return p


def lambda_files(given: Sequence[Path], log: str, run_dir: Path) -> list[Path] | None:
    """The Lambda log files: those given, or the local stack's when reading its access log."""
    if not given:
        if log:
            return None
        found = [run_dir / name for name in LAMBDA_LOGS if (run_dir / name).is_file()]
        return found or None
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no Lambda log at {path}")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, SourceError) as problem:
        print(f"report: {problem}", file=sys.stderr)
        return 2
    except duckdb.Error as problem:
        print(f"report: DuckDB could not read the log: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("report: interrupted; the previous report, if any, is left as it was", file=sys.stderr)
        return 130


WORK_PREFIX = "hosp-report-"


def work_directory() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for the spool and DuckDB's files, named after this process.

    A report killed with -9 cannot remove its own, which may hold gigabytes of spooled
    archive: each run first removes those of processes that no longer exist.
    """
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{WORK_PREFIX}*-pid*"):
        pid = stale.name.rpartition("-pid")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=WORK_PREFIX, suffix=f"-pid{os.getpid()}")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    start = parse_moment(args.start, "FROM", end=False) if args.start else None
    end = parse_moment(args.end, "TO", end=True) if args.end else None
    if start and end and start >= end:
        raise UsageError(f"FROM ({args.start}) must come before TO ({args.end})")
    log = args.log or str(args.run_dir / ACCESS_LOG)
    out = args.out if str(args.out) not in ("", ".") else args.run_dir / OUT
    lambdas = lambda_files(args.lambda_log, args.log, args.run_dir)
    with work_directory() as work:
        work_dir = Path(work)
        spool = work_dir / "spool"
        spool.mkdir()
        files = sources.resolve(
            log, spool, start.date() if start else None, (end - timedelta(microseconds=1)).date() if end else None
        )
        say(f"reading {len(files)} file{'s' if len(files) != 1 else ''} ({files.size / 1e6:.1f} MB) with DuckDB ...")
        on_a_terminal = sys.stdout.isatty() and sys.stderr.isatty()
        db = crunch.connect(work_dir, memory_limit=args.memory_limit, progress=on_a_terminal)
        try:
            try:
                read = crunch.load(db, files.plain, files.gzip, start, end)
            except duckdb.Error:
                broken = files.drop_broken_gzip()
                if not broken:
                    raise
                say(f"  {len(broken)} gzip file(s) cut short or corrupt, skipped: {', '.join(map(str, broken[:5]))}")
                log += f" ({len(broken)} corrupt gzip file{'s' if len(broken) != 1 else ''} skipped)"
                read = crunch.load(db, files.plain, files.gzip, start, end)
            took = time.monotonic() - started
            say(
                f"  {read.lines:,} lines in {took:.1f} s: "
                f"{read.unreadable:,} unreadable, {read.outside:,} outside the span"
            )
            whole, days = crunch.headlines(db)
            bucket = crunch.bucket_for(read.first, read.last)
            series = crunch.series(db, bucket)
            offenders = crunch.offenders(db)
            first_failures = crunch.first_failures(db)
        finally:
            db.close()
    # The Lambdas' events of the buckets drawn: a Lambda log that reaches further back
    # than the access log (the local stack's is kept across runs) must not stretch the plots.
    events, lambda_unreadable = None, 0
    if lambdas is not None:
        within = (series[0]["bucket"], series[-1]["bucket"] + bucket) if series else (start, end)
        events, lambda_unreadable = crunch.lambda_events(lambdas, *within)
    say(f"drawing {len(series)} buckets of {render.duration(bucket)} ...")
    report = render.Report(
        sources=log + (f" and {len(lambdas)} Lambda log{'s' if len(lambdas) != 1 else ''}" if lambdas else ""),
        read=read, lambda_unreadable=lambda_unreadable, start=start, end=end, bucket=bucket,
        whole=whole, days=days, series=series, offenders=offenders, first_failures=first_failures,
        lambda_events=events,
    )  # fmt: skip
    write_atomically(out, render.page(report))
    print(summary(whole, read, out, time.monotonic() - started))
    return 0


def write_atomically(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a report killed midway leaves the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def summary(whole: crunch.Headline, read: crunch.Read, out: Path, seconds: float) -> str:
    """The headline in a few lines, for the terminal."""

    def rate(value: float | None) -> str:
        return f"{100 * value:.2f}%" if value is not None else "-"

    load = f"{whole.upstream_load:.3f}" if whole.upstream_load is not None else "-"
    hosp = f"{rate(whole.first_attempt_failure_rate)} ({whole.first_attempt_failures:,} of {whole.hosp_requests:,})"
    clients = f"{rate(whole.client_failure_rate)} ({whole.client_failures:,} of {whole.client_requests:,})"
    return "\n".join(
        [
            f"wrote {out} in {seconds:.1f} s",
            f"  client requests                {whole.client_requests:,}",
            f"  HOSP first attempts failed     {hosp}",
            f"  clients saw a failure          {clients}",
            f"  recovered by retries           {whole.recovered:,}",
            f"  attempts to HOSP per request   {load}",
            f"  retried / refused by budget    {whole.retried:,} / {whole.refusals:,}",
            f"  lines skipped (unreadable)     {read.unreadable:,}",
        ]
    )
