"""The reliability report on a large access log: time and memory beside DuckDB's floor; its headline's exactness.

A log of --lines lines with known rates (bench/access_logs.py) is written once. Then,
alternated for --rounds rounds, each in a fresh process:

- floor: DuckDB reads the same file, the same columns the report reads, into a count;
- report: `python -m infra.monitoring.report` on it, HTML and plots written.

Each prints its wall time (from the process's start, imports included) and its peak
resident memory (VmHWM). The report's headline must equal the counts the generator drew.
Targets (issue: "See the reliability"): under 10 s and under 1 GiB for 1,000,000 lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from bench.access_logs import Rates, Truth, write
from bench.report import Table, ratio
from bench.toolkit import Check, alternated, checks_table, peak_rss_kib, run_directory

DEFAULT_LINES = 1_000_000
DEFAULT_ROUNDS = 3
START = datetime(2026, 11, 30)
SPAN = timedelta(days=7)
TARGET_SECONDS = 10.0
TARGET_RSS_KIB = 1024 * 1024
HEADLINE = (
    "client_requests", "client_failures", "hosp_requests", "first_attempt_failures",
    "recovered", "attempts", "retried", "refusals",
)  # fmt: skip


def child(kind: str, log: Path, out: Path, started: float) -> int:
    """One measured step, in this fresh process; prints {"seconds", "peak_rss_kib", ...} as JSON."""
    # Each step imports what it uses only, here, so that its time and memory are its own.
    if kind == "floor":
        import duckdb  # noqa: PLC0415

        from infra.monitoring.report import crunch  # noqa: PLC0415

        query = f"SELECT count(*) FROM ({crunch.reader([log], 'none')})"
        (count,) = duckdb.connect().execute(query).fetchone() or (0,)
        extra: dict[str, object] = {"lines": count}
    else:
        from infra.monitoring.report import cli  # noqa: PLC0415

        code = cli.main(["--log", str(log), "--out", str(out)])
        extra = {"exit": code}
    print(json.dumps({"seconds": time.time() - started, "peak_rss_kib": peak_rss_kib(), **extra}))
    return 0


def measure(kind: str, log: Path, out: Path) -> dict[str, float]:
    """Run one step in a new process; its own figures, with the wall time seen from here."""
    started = time.time()
    argv = [sys.executable, "-m", "bench.report_bench", "--measure", kind, "--log", str(log), "--out", str(out)]
    argv += ["--started", repr(started)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode:
        raise SystemExit(f"report_bench: the {kind} step failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall"] = time.time() - started
    return figures


def headline_checks(out: Path, truth: Truth) -> list[Check]:
    page = out.read_text(encoding="utf-8")
    embedded = page.split('<script type="application/json" id="headline">', 1)[1].split("</script>", 1)[0]
    found = json.loads(embedded)
    counts = truth.counts()
    checks = [Check("whole span", name, str(counts[name]), str(found["whole"][name])) for name in HEADLINE]
    checks.append(Check("whole span", "unreadable lines", str(truth.unreadable), str(found["read"]["unreadable"])))
    days = {day["label"]: day for day in found["days"]}
    for label, day in truth.per_day.items():
        wrong = [name for name in HEADLINE if days.get(label, {}).get(name) != day.counts()[name]]
        checks.append(
            Check(label, "every headline count", "equal", "equal" if not wrong else "differs: " + ", ".join(wrong))
        )
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=DEFAULT_LINES, help=f"log lines (default {DEFAULT_LINES:,})")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"alternated rounds (default {DEFAULT_ROUNDS})")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated log (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (the log and the report)")
    p.add_argument("--measure", choices=("floor", "report"), help=argparse.SUPPRESS)
    p.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        return child(args.measure, args.log, args.out, args.started)

    with run_directory(args.keep, "report-bench", "the log and the report") as run_dir:
        log, out = run_dir / "access.json", run_dir / "report.html"
        print(f"writing {args.lines:,} lines over {SPAN.days} days to {log} ...", flush=True)
        truth = write(log, args.lines, START, SPAN, Rates(), seed=args.seed)
        size = log.stat().st_size
        runs: dict[str, list[dict[str, float]]] = {"floor": [], "report": []}
        for n, kind in enumerate(alternated(["floor", "report"], args.rounds), 1):
            figures = measure(kind, log, out)
            runs[kind].append(figures)
            print(
                f"  {n}/{2 * args.rounds} {kind}: {figures['wall']:.2f} s, {figures['peak_rss_kib'] / 1024:.0f} MiB",
                flush=True,
            )
        checks = headline_checks(out, truth)

    tables = [checks_table("The report's headline against the counts drawn", "span", checks)]
    table = Table(
        f"{args.lines:,} lines ({size / 1e6:.0f} MB), median of {args.rounds} alternated rounds",
        ["", "DuckDB count (floor)", "report", "report / floor", "target"],
    )
    wall = {kind: statistics.median(r["wall"] for r in rs) for kind, rs in runs.items()}
    rss = {kind: statistics.median(r["peak_rss_kib"] for r in rs) for kind, rs in runs.items()}
    seconds_ok = wall["report"] < TARGET_SECONDS
    rss_ok = rss["report"] < TARGET_RSS_KIB
    table.add("wall time, s", f"{wall['floor']:.2f}", f"{wall['report']:.2f}", ratio(wall["report"], wall["floor"]),
              f"< {TARGET_SECONDS:.0f} s: {'met' if seconds_ok else 'MISSED'}")  # fmt: skip
    floor_mib, report_mib = rss["floor"] / 1024, rss["report"] / 1024
    table.add("peak RSS, MiB", f"{floor_mib:.0f}", f"{report_mib:.0f}", ratio(report_mib, floor_mib),
              f"< 1 GiB: {'met' if rss_ok else 'MISSED'}")  # fmt: skip
    each = ", ".join(f"{r['wall']:.2f}" for r in runs["report"])
    table.notes.append(f"Report wall times by round: {each} s. Wall time from the process's start, imports included.")
    tables.append(table)
    for shown in tables:
        print("\n" + shown.plain())
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(shown.markdown() for shown in tables))
    exact = all(check.passed for check in checks)
    return 0 if exact and seconds_ok and rss_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
