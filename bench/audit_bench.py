"""The audit export benchmark: the trail query's CSV next to DuckDB's plain COPY, and the route's memory.

    python -m bench.audit_bench                        # or: make bench-audit
    python -m bench.audit_bench --records 100000       # a quick run
    python -m bench.audit_bench --help

One run writes an access log of --records lines over three days to a temporary
directory (every field of chalicelib/audit/log_schema.py; nurses, vets and admins on
the public listener, screens with the note worker's calls on the internal one, errors
and retries, formula-like user agents, a few unreadable lines),
then measures, each measurement in a process of its own so that its peak memory is
its own, and alternating the runs:
  1. the export as the local route runs it (audit_duckdb.export_csv: trail.sql with
     its derived columns and neutralising, written as CSV) next to DuckDB's plain COPY of the same
     rows, for the last two days;
  2. what the Lambda does after Athena, for CSVs of 10% and 100% of the records on a
     moto S3 server: export.finish (reads the CSV once to hash and count it, writes the
     export's record) and the presigned link.
Every step is bounded in time. See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.report import Table, ratio
from bench.toolkit import alternated, peak_rss_kib, run_directory
from chalicelib import constants
from chalicelib.audit import log_schema
from chalicelib.audit.filters import Filters

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDS = 1_000_000
DEFAULT_REPEATS = 3
DEFAULT_SEED = 2024
STEP_TIMEOUT = 900.0  # seconds, for any one measured process
RATIO_TARGET = 1.5  # the trail query's export within 1.5x of the plain COPY
FLAT_TOLERANCE = 0.10  # the Lambda's peak RSS at 100% within 10% of that at 10%
MIB = 1024 * 1024

# The log spans DAYS days from START; the exports compared take the last two.
START = datetime(2026, 11, 25, tzinfo=UTC)
DAYS = 3
EXPORT_FILTERS = Filters(START + timedelta(days=1), START + timedelta(days=DAYS))
# The day the trail exports read the log, whatever the calendar says: the day the log
# ends. Its unreadable lines count as logged that day (audit_duckdb's `today`).
READ_ON = (START + timedelta(days=DAYS)).date()
LAMBDA_SHARES = (0.1, 1.0)  # the CSVs the Lambda's step reads: the first 10% of the span, and all of it

# --- the generated log ---------------------------------------------------------------------------

PUBLIC_USERS = (
    "nurse-joy", "nurse-ben", "nurse-li", "nurse-amara", "dr-quinn", "dr-ahmed", "dr-okafor", "dr-varga",
    "admin-ana", "reception-1", "test-account",
)  # fmt: skip
SERVICE_USER = "notes-service"  # the note worker's HOSP account
# Typed at a sign-in prompt: the trail must show it as text, not run it.
FORMULA_USER = "=cmd|' /C calc'!A0"
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1",
    "HOSP-Desktop/4.2.1 (Windows)",
    "HOSP-Desktop/4.3.0 (macOS)",
)
FORMULA_AGENTS = ('=HYPERLINK("http://example.test/x","open")', "@SUM(A1:A9)", "+1+2", "-2+3|cmd")
INTERNAL_AGENT = "python-requests/2.32.3"
PATIENTS = 5000
HOSP_ADDRESS = "10.0.2.15:443"
# Lines an archive cannot read: cut short, binary, plain text, broken JSON.
UNREADABLE_LINES = (
    '{"time":"2026-11-26T10:00:00.000+00:00","logged_at":"2026-11-26 10:00:00.000","request_id":"0f',
    "\x00\x01\x02 not json",
    "GET /patients/1 HTTP/1.1",
    '{"time": }',
    "}",
)
UNREADABLE = len(UNREADABLE_LINES)

# Outcomes of a request, by cumulative probability: (bound, status, upstream_status, retry_budget).
OUTCOMES: tuple[tuple[float, int, str, str], ...] = (
    (0.010, 401, "401", ""),
    (0.015, 403, "403", ""),
    (0.035, 404, "404", ""),
    (0.038, 405, "", ""),  # a method outside the API: answered by the proxy, HOSP never saw it
    (0.043, 502, "502 : 502, 502", "PASSED"),
    (0.047, 503, "503", "REJECTED"),
    (0.050, 504, "504 : 504, 504", "PASSED"),
    (0.070, 200, "502 : 200", "PASSED"),
    (1.000, 200, "200", ""),
)


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to make, and there are a million
class Line:
    """One request's fields, apart from its time."""

    request_id: str
    user: str
    method: str
    path: str
    on_behalf_of: str = ""  # the nurse the note worker writes for (internal listener)
    normalized_path: str = ""
    query: str = ""
    patient_id: str = ""  # the X-Patient-Id header
    body_patient_id: str = ""
    status: int = 200
    upstream_status: str = "200"
    retry_budget: str = ""
    listener: str = "public"
    route: str = "hosp"
    user_agent: str = BROWSERS[0]
    viewer: int = 0  # the viewer's address; 0: none (internal, or no CloudFront header)

    @property
    def query_patient_id(self) -> str:
        """What NGINX logs as query_patient_id: a note listing's patient_id (docs/access-log.md).

        The bench's queries are plain (patient_id=N, N a record id, nothing encoded): the
        first non-blank value of the field is what NGINX logs."""
        if self.method != "GET" or (self.normalized_path or self.path) != "/notes":
            return ""
        for item in self.query.split("&"):
            key, _, value = item.partition("=")
            if key == "patient_id" and value:
                return value
        return ""


class _Stamps:
    """The two time texts of a millisecond stamp; the date formatted once per day."""

    def __init__(self) -> None:
        self.day = -1
        self.date = ""

    def texts(self, ms: int) -> tuple[str, str]:
        day, in_day = divmod(ms, 86_400_000)
        if day != self.day:
            self.day, self.date = day, datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
        seconds, milli = divmod(in_day, 1000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        clock = f"{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}"
        return f"{self.date}T{clock}+00:00", f"{self.date} {clock}"


def _below(rng: random.Random, n: int) -> int:
    """A number in 0..n-1 (faster than randrange, which a million lines feel)."""
    return int(rng.random() * n)


@functools.cache
def _json_text(value: str) -> str:
    return json.dumps(value)


def format_line(line: Line, ms: int, stamps: _Stamps, rng: random.Random) -> str:
    """`line` as NGINX writes it: one JSON object with exactly the schema's fields, in order."""
    iso, sql = stamps.texts(ms)
    public = line.listener == "public"
    viewer = f"203.0.113.{line.viewer}" if line.viewer else ""
    # The TCP peer: a CloudFront edge on the public listener, a Lambda's interface on the internal one.
    peer = f"130.176.88.{line.viewer % 32 + 1}" if public else f"10.0.3.{2 + _below(rng, 58)}"
    address = f"{viewer}:{1024 + _below(rng, 64512)}" if viewer else ""
    upstream = line.upstream_status
    attempts = upstream.count(",") + upstream.count(":") + 1 if upstream else 0
    seconds = [(1 + _below(rng, 400)) / 1000 for _ in range(attempts)]
    upstream_times = _joined(upstream, [f"{s:.3f}" for s in seconds])
    upstream_addrs = _joined(upstream, [HOSP_ADDRESS] * attempts)
    return (
        f'{{"time":"{iso}","logged_at":"{sql}","request_id":"{line.request_id}","user":{_json_text(line.user)},'
        f'"on_behalf_of":{_json_text(line.on_behalf_of)},"audit_user":"",'
        f'"client_ip":"{peer}","forwarded_for":"{viewer}","viewer_address":"{address}",'
        f'"method":"{line.method}","path":"{line.path}","normalized_path":"{line.normalized_path or line.path}",'
        f'"query":"{line.query}","patient_id":"{line.patient_id}","body_patient_id":"{line.body_patient_id}",'
        f'"query_patient_id":"{line.query_patient_id}",'
        f'"status":{line.status},"bytes_sent":{_below(rng, 20000) if upstream else 150},'
        f'"request_time":{sum(seconds) + 0.001:.3f},"upstream_addr":"{upstream_addrs}",'
        f'"upstream_status":"{upstream}","upstream_response_time":"{upstream_times}",'
        f'"retry_budget":"{line.retry_budget}","listener":"{line.listener}","route":"{line.route}",'
        f'"user_agent":{_json_text(line.user_agent)},'
        f'"note_handoff":"{"sent" if line.route == "screen" else ""}"}}'
    )


def _joined(shape: str, values: list[str]) -> str:
    """`values` joined with the separators of `shape` ("502 : 502, 200" -> "a : b, c")."""
    if len(values) < 2:
        return values[0] if values else ""
    out, index = [values[0]], 1
    for char in shape:
        if char in ",:":
            out.append((", " if char == "," else " : ") + values[index])
            index += 1
    return "".join(out)


def _outcome(rng: random.Random) -> tuple[int, str, str]:
    draw = rng.random()
    for bound, status, upstream, budget in OUTCOMES:
        if draw < bound:
            return status, upstream, budget
    return 200, "200", ""  # pragma: no cover - the last bound is 1.0


def _agent(rng: random.Random) -> str:
    if rng.random() < 0.005:
        return FORMULA_AGENTS[_below(rng, len(FORMULA_AGENTS))]
    return BROWSERS[_below(rng, len(BROWSERS))]


def requests_of(rng: random.Random) -> list[Line]:
    """The log lines of one thing a user did: one request, or a screen and the calls it causes."""
    request_id = f"{rng.getrandbits(128):032x}"
    user_index = _below(rng, len(PUBLIC_USERS))
    user = PUBLIC_USERS[user_index]
    patient = str(1 + _below(rng, PATIENTS))
    viewer = 0 if rng.random() < 0.05 else user_index * 7 + 1
    agent = _agent(rng)
    kind = rng.random()
    if kind < 0.03:  # an X-ray screen: its answer handed off, then the worker's note (docs/screen.md)
        screen = f"/patients/{patient}/screen"
        return [
            Line(request_id, user, "POST", screen, route="screen", user_agent=agent, viewer=viewer),
            Line(request_id, SERVICE_USER, "GET", "/notes", query=f"patient_id={patient}", listener="internal",
                 on_behalf_of=user, user_agent=INTERNAL_AGENT),
            Line(request_id, SERVICE_USER, "POST", "/notes", body_patient_id=patient, status=201,
                 upstream_status="201", listener="internal", on_behalf_of=user, user_agent=INTERNAL_AGENT),
        ]  # fmt: skip
    status, upstream, budget = _outcome(rng)
    if status == 401 and rng.random() < 0.5:
        user = "" if rng.random() < 0.9 else FORMULA_USER
    line = _request(rng, kind, patient, Line(request_id, user, "GET", "/", status=status, upstream_status=upstream,
                                             retry_budget=budget, user_agent=agent, viewer=viewer))  # fmt: skip
    if status == 405:  # the proxy refuses methods outside HOSP's API
        line.method = "TRACE"
    return [line]


def _request(rng: random.Random, kind: float, patient: str, line: Line) -> Line:
    """`line` made one of the public requests, by `kind` (0.03 to 1)."""
    if kind < 0.45:
        line.path = f"/patients/{patient}"
        if rng.random() < 0.02:  # sent encoded; NGINX logs the decoded path too
            line.path, line.normalized_path = f"//patients/%3{patient[0]}{patient[1:]}", line.path
    elif kind < 0.50:
        line.path = f"/patients/{patient}.json"
    elif kind < 0.55:
        line.method, line.path = "PUT", f"/patients/{patient}"
    elif kind < 0.70:
        line.path, line.query = "/notes", f"patient_id={patient}&view=full"
    elif kind < 0.78:
        line.method, line.path, line.body_patient_id = "POST", "/notes", patient
        if line.status == 200:
            line.status, line.upstream_status = 201, line.upstream_status.replace("200", "201")
    elif kind < 0.80:  # a note by its id, with the patient in the X-Patient-Id header
        line.path, line.patient_id = f"/notes/{1 + _below(rng, 99_999)}", patient
    else:
        line.path = ("/hospitals", "/staff", "/appointments", "/hospitals/1")[_below(rng, 4)]
        line.query = "date=2026-11-26" if line.path == "/appointments" else ""
    return line


def unreadable_slots(records: int, unreadable: int = UNREADABLE) -> set[int]:
    """Where the unreadable lines go: spread evenly, none first or last."""
    count = min(unreadable, max(records - 2, 0))
    return {(k + 1) * records // (count + 1) for k in range(count)}


def log_lines(records: int, seed: int = DEFAULT_SEED, unreadable: int = UNREADABLE) -> Iterator[tuple[int | None, str]]:
    """`records` lines over DAYS days from START, oldest first; the same seed gives the same log.

    Each is (ms since the epoch, line), or (None, line) for a line an archive cannot read.
    """
    rng = random.Random(seed)
    broken = unreadable_slots(records, unreadable)
    start_ms = int(START.timestamp() * 1000)
    span_ms = DAYS * 86_400_000
    stamps = _Stamps()
    slot = 0
    while slot < records:
        for line in requests_of(rng):
            while slot in broken:
                yield None, UNREADABLE_LINES[len([b for b in broken if b < slot]) % UNREADABLE]
                slot += 1
            if slot >= records:
                return
            ms = start_ms + slot * span_ms // records
            yield ms, format_line(line, ms, stamps, rng)
            slot += 1


@dataclass(frozen=True)
class LogFacts:
    """What was written: counts the exports are checked against."""

    records: int
    unreadable: int
    in_range: dict[tuple[int, int], int]  # readable lines per [from, to) range in ms
    bytes: int
    seconds: float

    def rows_between(self, chosen: Filters) -> int:
        return self.in_range[_ms_range(chosen)]


def _ms_range(chosen: Filters) -> tuple[int, int]:
    return int(chosen.start.timestamp() * 1000), int(chosen.end.timestamp() * 1000)


def lambda_filters(share: float) -> Filters:
    """The first `share` of the log's span."""
    return Filters(START, START + timedelta(days=DAYS) * share)


def write_log(
    path: Path,
    records: int,
    seed: int = DEFAULT_SEED,
    ranges: Sequence[Filters] = (),
    progress: Callable[[int], None] | None = None,
) -> LogFacts:
    """Write the log to `path`, counting the readable lines of each of `ranges`."""
    bounds = [_ms_range(chosen) for chosen in ranges]
    counts = dict.fromkeys(bounds, 0)
    unreadable = 0
    started = time.perf_counter()
    batch: list[str] = []
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for written, (ms, text) in enumerate(log_lines(records, seed), start=1):
            batch.append(text)
            if ms is None:
                unreadable += 1
            else:
                for low, high in bounds:
                    if low <= ms < high:
                        counts[low, high] += 1
            if len(batch) == 10_000:
                out.write("\n".join(batch) + "\n")
                batch.clear()
                if progress is not None:
                    progress(written)
        if batch:
            out.write("\n".join(batch) + "\n")
    return LogFacts(records, unreadable, counts, path.stat().st_size, time.perf_counter() - started)


# --- the plain COPY (B) ------------------------------------------------------------------------

# The trail's 12 columns, each taken plainly from the nearest field of the log.
PLAIN_COLUMNS = (
    '"time", "user", on_behalf_of, \'\' AS authenticated, client_ip, method, path, patient_id, status, '
    "upstream_status AS attempts, request_id, user_agent"
)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def plain_copy_sql(log_path: str, destination: str) -> str:
    """DuckDB's own COPY of the range's rows: no joins, no CASE, no regular expressions; `?`: from, to.

    ignore_errors: the log holds unreadable lines, which would stop the reader otherwise.
    """
    columns = "{" + ", ".join(f"{_quoted(n)}: {_quoted(t)}" for n, t in log_schema.duckdb_columns().items()) + "}"
    return (
        f"COPY (SELECT {PLAIN_COLUMNS} "
        f"FROM read_json({_quoted(log_path)}, columns = {columns}, format = 'newline_delimited', "
        "ignore_errors = true) "
        "WHERE logged_at >= CAST(? AS TIMESTAMP) AND logged_at < CAST(? AS TIMESTAMP) ORDER BY logged_at) "
        f"TO {_quoted(destination)} (FORMAT csv, HEADER)"
    )


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    low: float
    median: float
    high: float


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no values")
    return Spread(min(values), statistics.median(values), max(values))


def shown(values: Sequence[float], digits: int = 2) -> str:
    """min / median / max, e.g. "2.31 / 2.40 / 2.55"."""
    s = spread(values)
    return f"{s.low:.{digits}f} / {s.median:.{digits}f} / {s.high:.{digits}f}"


def within(measured: float, target: float) -> str:
    """The ratio against its target: "1.42x, within 1.5x" or "2.10x, over 1.5x"."""
    return f"{measured:.2f}x, {'within' if measured <= target else 'over'} {target:g}x"


def flat(small: float, large: float, tolerance: float = FLAT_TOLERANCE) -> bool:
    """Whether `large` is at most `tolerance` above `small` (memory that does not grow)."""
    return large <= small * (1 + tolerance)


def yes(value: bool) -> str:
    return "yes" if value else "no"


def runs(repeats: int) -> str:
    return "1 run each" if repeats == 1 else f"{repeats} runs each, alternated"


def expected_seconds(records: int, repeats: int, sections: set[str]) -> float:
    """About how long a run takes on the 2-core bench machine when it is quiet, to say at the start."""
    million = records / 1_000_000
    seconds = 5 + 13 * million  # writing the log
    if "export" in sections:
        seconds += repeats * (2 + 7 * million)  # a trail export and a plain COPY, each in a new process
    if "lambda" in sections:
        seconds += 8 + 12 * million  # the two CSVs made, counted and uploaded; moto
        seconds += 1 + repeats * (2 + 4 * million)  # finish at 10% and at 100%, each in a new process; the floor
    return seconds


# --- one measurement in its own process ----------------------------------------------------------


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step (in a process of its own): how long it took, and the process's peak RSS.

    The clock starts once the modules are imported and, for the trail query, once sqlglot
    has translated trail.sql: chalice local does both once, not on every export.
    """
    kind = spec["kind"]
    chosen = Filters(_time(spec["from"]), _time(spec["to"]))
    prepared = time.perf_counter()
    found: dict[str, Any] = {}
    if kind == "trail":
        from local import audit_duckdb  # noqa: PLC0415 - each child imports only what it measures

        audit_duckdb.duckdb_sql()
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        audit_duckdb.export_csv(spec["log"], chosen.query_parameters(), Path(spec["out"]), today=READ_ON)
    elif kind == "copy":
        import duckdb  # noqa: PLC0415

        parameters = chosen.query_parameters()
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        with duckdb.connect() as connection:
            connection.execute(
                plain_copy_sql(spec["log"], spec["out"]), [parameters["from_time"], parameters["to_time"]]
            )
    elif kind in ("finish", "floor"):
        from chalicelib.audit import export, jobs  # noqa: PLC0415

        job = jobs.Job(str(uuid.uuid4()), "SUCCEEDED", chosen, datetime.now(UTC), output=(spec["bucket"], spec["key"]))
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        if kind == "finish":
            record = export.finish(spec["log_bucket"], job, "audit-admin")
            found = {key: record[key] for key in ("rows", "unreadable_rows", "bytes", "sha256")}
        found["url"], _ = export.download_link(job, spec["ttl"])
    else:
        raise ValueError(f"unknown measurement {kind!r}")
    seconds = time.perf_counter() - started
    return {
        **found,
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu_started,
        "prepare_seconds": started - prepared,
        "peak_rss_kib": peak_rss_kib(),
    }


def _cpu_seconds() -> float:
    """User and system CPU time of this process, all its threads (DuckDB's too)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class BenchError(RuntimeError):
    """A measured step failed, or a server did not start."""


def run_measured(
    spec: dict[str, Any], work_dir: Path, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """measure(spec) in a new Python process; its result, or BenchError with the end of its stderr."""
    result = work_dir / f"result-{uuid.uuid4().hex}.json"
    argv = [sys.executable, "-m", "bench.audit_bench", "--measure", json.dumps({**spec, "result": str(result)})]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as late:
        raise BenchError(f"{spec['kind']} took over {timeout:.0f} s (--step-timeout)") from late
    if done.returncode != 0 or not result.exists():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(f"{spec['kind']} failed with status {done.returncode}:\n{tail}")
    found = dict(json.loads(result.read_text()))
    result.unlink()
    return found


def child(spec_text: str) -> int:
    spec = json.loads(spec_text)
    found = measure(spec)
    Path(spec["result"]).write_text(json.dumps(found))
    return 0


# --- 1: the export, trail query vs plain COPY ------------------------------------------------------

RUNS = {
    "trail": "A: export_csv (trail.sql on DuckDB, as the local route runs it)",
    "copy": "B: DuckDB's plain COPY of the same rows",
}


@dataclass
class Series:
    """The results of measured steps, by name, in the order they ran."""

    found: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, name: str, result: dict[str, Any]) -> None:
        self.found.setdefault(name, []).append(result)

    def values(self, name: str, key: str, scale: float = 1) -> list[float]:
        return [float(result[key]) / scale for result in self.found[name]]

    def median(self, name: str, key: str, scale: float = 1) -> float:
        return statistics.median(self.values(name, key, scale))

    def last(self, name: str) -> dict[str, Any]:
        return self.found[name][-1]


def run_series(
    names: Sequence[str],
    spec_of: Callable[[str], dict[str, Any]],
    run_dir: Path,
    args: argparse.Namespace,
    env: dict[str, str] | None = None,
) -> Series:
    """Each named step in its own process, in the order given."""
    series = Series()
    for index, name in enumerate(names, start=1):
        found = run_measured(spec_of(name), run_dir, args.step_timeout, env)
        series.add(name, found)
        note(
            f"  {index}/{len(names)} {name}: {found['seconds']:.2f} s, peak RSS {found['peak_rss_kib'] / 1024:.0f} MiB"
        )
    return series


@dataclass(frozen=True)
class CsvFacts:
    rows: int
    unreadable_rows: int
    bytes: int


def csv_facts(path: Path) -> CsvFacts:
    """Rows of a CSV (not the header), and those standing for unreadable log lines, read as export.finish does."""
    from chalicelib.audit import export  # noqa: PLC0415 - imports boto3; the children need not

    with path.open("rb") as stream:
        summary = export.summarise(stream)
    return CsvFacts(summary.rows, summary.unreadable_rows, summary.bytes)


@dataclass
class ExportResult:
    series: Series
    csv: dict[str, CsvFacts]

    def ratio(self) -> float:
        return self.series.median("trail", "seconds") / self.series.median("copy", "seconds")


def measure_exports(log: Path, run_dir: Path, args: argparse.Namespace) -> ExportResult:
    def spec_of(kind: str) -> dict[str, Any]:
        return {"kind": kind, "log": str(log), "out": str(run_dir / f"{kind}.csv"), **_range(EXPORT_FILTERS)}

    series = run_series(alternated(list(RUNS), args.repeats), spec_of, run_dir, args)
    return ExportResult(series, {kind: csv_facts(run_dir / f"{kind}.csv") for kind in RUNS})


def _range(chosen: Filters) -> dict[str, str]:
    return {"from": chosen.start.isoformat(), "to": chosen.end.isoformat()}


def export_table(result: ExportResult, facts: LogFacts, args: argparse.Namespace) -> Table:
    title = (
        f"1. The export on DuckDB: trail query (A) vs plain COPY (B), {facts.records} log lines, "
        f"{EXPORT_FILTERS.start:%Y-%m-%d} to {EXPORT_FILTERS.end:%Y-%m-%d}, {runs(args.repeats)}"
    )
    headers = [
        "run",
        "wall s (min / median / max)",
        "CPU s (median)",
        "peak RSS MiB (min / median / max)",
        "CSV rows",
        "CSV MiB",
    ]
    table = Table(title, headers)
    series = result.series
    for kind, label in RUNS.items():
        table.add(
            label,
            shown(series.values(kind, "seconds")),
            f"{series.median(kind, 'cpu_seconds'):.2f}",
            shown(series.values(kind, "peak_rss_kib", 1024), 0),
            result.csv[kind].rows,
            f"{result.csv[kind].bytes / MIB:.1f}",
        )
    wall_a, wall_b = (series.median(kind, "seconds") for kind in RUNS)
    cpu_a, cpu_b = (series.median(kind, "cpu_seconds") for kind in RUNS)
    table.notes += [
        f"A / B, medians of the wall time: {ratio(wall_a, wall_b)} ({wall_a:.2f} s / {wall_b:.2f} s), "
        f"target within {RATIO_TARGET:g}x; of the CPU time: {ratio(cpu_a, cpu_b)}.",
        "Each run is a new Python process, so that its peak RSS (VmHWM) is its own; the clock runs from "
        "connecting to DuckDB to the CSV written, with the modules imported and trail.sql translated by sqlglot "
        f"beforehand, as chalice local does once (median {series.median('trail', 'prepare_seconds'):.2f} s, not "
        "counted). CPU: user + system time of all the process's threads. The log is in the page cache.",
        f"A: audit_duckdb.export_csv(log, filters.query_parameters(), csv, today={READ_ON}): trail.sql with the "
        "patient and client expressions, the neutralised cells, every value quoted (FORCE_QUOTE, as Athena). "
        "B: COPY (SELECT the 12 columns plainly FROM read_json(log, the schema's columns, newline_delimited, "
        "ignore_errors) WHERE logged_at in the range ORDER BY logged_at) TO csv (HEADER).",
        f"A's rows are B's plus the {facts.unreadable} unreadable log lines, which the trail always shows.",
    ]
    return table


# --- 2: the Lambda's step after the query ---------------------------------------------------------


def size_name(share: float) -> str:
    return f"{share:.0%}"


FLOOR = "floor"


@dataclass
class LambdaResult:
    series: Series
    csv: dict[str, CsvFacts]  # by size name
    sha256: dict[str, str]  # of the local files
    link_works: dict[str, bool]

    def matches(self, name: str) -> bool:
        """The record's hash and counts are those of the file that was uploaded."""
        record, local = self.series.last(name), self.csv[name]
        return (record["sha256"], record["rows"], record["unreadable_rows"], record["bytes"]) == (
            self.sha256[name],
            local.rows,
            local.unreadable_rows,
            local.bytes,
        )


def lambda_environment(aws_url: str) -> dict[str, str]:
    """The Lambda's environment against the local AWS, as local/stack.py gives chalice local."""
    ours = set(constants.VARIABLES)
    inherited = {name: value for name, value in os.environ.items() if name not in ours}
    return {
        **inherited,
        constants.STAGE: constants.LOCAL_STAGE,
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any key; never a real one here
        "AWS_DEFAULT_REGION": "eu-west-2",
    }


def _key(name: str) -> str:
    return f"audit/bench-{name.rstrip('%')}.csv"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def measure_lambda(log: Path, run_dir: Path, args: argparse.Namespace) -> LambdaResult:
    import boto3  # noqa: PLC0415 - the parent's own imports; the measured children import theirs
    import requests  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    from chalicelib.audit import settings  # noqa: PLC0415
    from local import audit_buckets  # noqa: PLC0415
    from local.processes import CommandServer, ProcessError, free_port  # noqa: PLC0415

    files = {size_name(share): run_dir / f"lambda-{share:.0%}.csv".replace("%", "") for share in LAMBDA_SHARES}
    shares = {size_name(share): share for share in LAMBDA_SHARES}
    for name, path in files.items():
        note(f"  the CSV of the first {name} of the log's span (trail query)")
        spec = {"kind": "trail", "log": str(log), "out": str(path), **_range(lambda_filters(shares[name]))}
        run_measured(spec, run_dir, args.step_timeout)
    csv = {name: csv_facts(path) for name, path in files.items()}
    sha256 = {name: _sha256(path) for name, path in files.items()}
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    try:
        moto = CommandServer(argv, port, run_dir / "moto.log", health_path="/moto-api/").start()
    except ProcessError as failed:
        raise BenchError(f"moto did not start: {failed}") from failed
    try:
        s3 = boto3.client(
            "s3", endpoint_url=moto.url, region_name="eu-west-2",
            aws_access_key_id="local", aws_secret_access_key="local",  # moto accepts any key
            config=Config(connect_timeout=5, read_timeout=120, retries={"mode": "standard", "total_max_attempts": 2}),
        )  # fmt: skip
        audit_buckets.create(s3)
        for name, path in files.items():
            note(f"  uploading the {name} CSV ({path.stat().st_size / MIB:.0f} MiB) to moto")
            s3.upload_file(str(path), audit_buckets.RESULTS_BUCKET, _key(name))

        def spec_of(name: str) -> dict[str, Any]:
            size = size_name(LAMBDA_SHARES[-1]) if name == FLOOR else name
            return {
                "kind": FLOOR if name == FLOOR else "finish",
                "bucket": audit_buckets.RESULTS_BUCKET,
                "key": _key(size),
                "log_bucket": audit_buckets.LOG_BUCKET,
                "ttl": settings.MAX_URL_TTL_SECONDS,
                **_range(lambda_filters(shares[size])),
            }

        order = [*alternated(list(files), args.repeats), FLOOR]
        series = run_series(order, spec_of, run_dir, args, env=lambda_environment(moto.url))
        links = {}
        for name in files:
            answer = requests.get(series.last(name)["url"], headers={"Range": "bytes=0-5"}, timeout=30)
            links[name] = answer.status_code in (200, 206) and answer.content.startswith(b'"time"')
    finally:
        moto.stop()
    return LambdaResult(series, csv, sha256, links)


def lambda_table(result: LambdaResult, args: argparse.Namespace) -> Table:
    title = f"2. The Lambda's step after the query: export.finish and download_link on moto's S3, {runs(args.repeats)}"
    headers = [
        "CSV",
        "rows",
        "MiB",
        "wall s (min / median / max)",
        "peak RSS MiB (min / median / max)",
        "record right",
        "link works",
    ]
    table = Table(title, headers)
    series = result.series
    for name, facts in result.csv.items():
        table.add(
            f"{name} of the records",
            facts.rows,
            f"{facts.bytes / MIB:.1f}",
            shown(series.values(name, "seconds")),
            shown(series.values(name, "peak_rss_kib", 1024), 0),
            yes(result.matches(name)),
            yes(result.link_works[name]),
        )
    table.add(
        "floor: the same process and imports, the link only, no CSV read",
        "-",
        "-",
        shown(series.values(FLOOR, "seconds")),
        shown(series.values(FLOOR, "peak_rss_kib", 1024), 0),
        "-",
        "-",
    )
    table.notes += [
        "Each run is a new Python process with the Lambda's environment pointed at a moto server on loopback "
        "(AWS_ENDPOINT_URL): it makes a jobs.Job for the uploaded CSV, then calls export.finish (reads the file "
        "once from S3, hashing and counting it, and writes the export's record to the Object Lock bucket) and "
        "export.download_link; the clock runs over those two calls, the S3 clients' creation included. Peak "
        "RSS: the process's VmHWM, imports and all.",
        "The CSVs are the trail query's for the first 10% of the log's span and for all of it. record right: the "
        "record's sha256, rows, unreadable rows and bytes are those of the file uploaded. link works: a GET of "
        "the link's first bytes returns the CSV's header.",
        "In AWS the query runs in Athena and the Lambda never holds a row: this is all the route does with the file.",
    ]
    return table


# --- main --------------------------------------------------------------------------------------


def note(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(facts: LogFacts) -> Table:
    table = Table("Environment", ["item", "value"])
    table.add("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("nproc", os.cpu_count())
    table.add("load average after writing the log (1, 5, 15 min)", load_average())
    table.add("python", platform.python_version())
    table.add("duckdb / sqlglot", " / ".join(version_of(p) for p in ("duckdb", "sqlglot")))
    table.add("moto / boto3", " / ".join(version_of(p) for p in ("moto", "boto3")))
    table.add(
        "access log",
        f"{facts.records} lines ({facts.unreadable} unreadable), {facts.bytes / MIB:.0f} MiB, "
        f"{START:%Y-%m-%d} to {START + timedelta(days=DAYS):%Y-%m-%d}, written in {facts.seconds:.1f} s",
    )
    return table


def targets_table(
    facts: LogFacts, exports: ExportResult | None, lambda_result: LambdaResult | None
) -> tuple[Table, bool]:
    """The targets, and whether every check of correctness held (speed and memory aside)."""
    table = Table("Targets", ["target", "measured", "met"])
    correct = True
    if exports is not None:
        measured = exports.ratio()
        table.add(
            f"A (trail query) within {RATIO_TARGET:g}x of B (plain COPY), medians of the wall time",
            within(measured, RATIO_TARGET),
            yes(measured <= RATIO_TARGET),
        )
        expected = facts.rows_between(EXPORT_FILTERS)
        a, b = exports.csv["trail"], exports.csv["copy"]
        rows_right = b.rows == expected and a.rows == expected + facts.unreadable == b.rows + a.unreadable_rows
        table.add(
            "rows: A = B + the unreadable lines; B = the log's lines in the range",
            f"A {a.rows} = B {b.rows} + {a.unreadable_rows}; in range {expected}",
            yes(rows_right),
        )
        correct = correct and rows_right
    if lambda_result is not None:
        small, large = (lambda_result.series.median(size_name(s), "peak_rss_kib", 1024) for s in LAMBDA_SHARES)
        table.add(
            f"the Lambda's peak RSS does not grow with the CSV (100% within {FLAT_TOLERANCE:.0%} of 10%), medians",
            f"{small:.0f} MiB -> {large:.0f} MiB ({ratio(large, small)})",
            yes(flat(small, large)),
        )
        records_right = all(lambda_result.matches(name) for name in lambda_result.csv)
        links = all(lambda_result.link_works.values())
        table.add(
            "the export records hash and count the files uploaded; the links work",
            f"{yes(records_right)}, {yes(links)}",
            yes(records_right and links),
        )
        correct = correct and records_right and links
    return table, correct


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.audit_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=DEFAULT_RECORDS, help=f"log lines (default {DEFAULT_RECORDS})")
    p.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help=f"runs of each measurement (default {DEFAULT_REPEATS})"
    )
    p.add_argument("--sections", default="export,lambda", help="export, lambda or both (default both)")
    p.add_argument(
        "--step-timeout",
        type=float,
        default=STEP_TIMEOUT,
        help=f"s for any one measured step (default {STEP_TIMEOUT:g})",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the generated log (default {DEFAULT_SEED})")
    p.add_argument("--keep", action="store_true", help="keep the run directory (the log, the CSVs, moto's log)")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # one measured step, in a child process
    args = p.parse_args(argv)
    if args.records < 10:
        p.error("--records must be at least 10")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    unknown = set(args.sections.split(",")) - {"export", "lambda"}
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        return child(args.measure)
    sections = set(args.sections.split(","))
    minutes = expected_seconds(args.records, args.repeats, sections) / 60
    print(
        f"audit_bench: {args.records} records, {runs(args.repeats)}; expected to take about {minutes:.1f} min "
        "on 2 cores (longer when the machine is busy)",
        flush=True,
    )
    tables: list[Table] = []

    def show(table: Table) -> None:
        tables.append(table)
        print("\n" + table.plain() + "\n", flush=True)

    exports: ExportResult | None = None
    lambda_result: LambdaResult | None = None
    started = time.monotonic()
    try:
        with run_directory(args.keep, "audit-bench", "the log and the CSVs") as run_dir:
            log = run_dir / "access.json"
            note(f"writing {args.records} log lines to {log}")
            step = max(args.records // 10, 10_000)

            def progress(written: int) -> None:
                if written % step < 10_000:
                    note(f"  {written} of {args.records} lines ({written / args.records:.0%})")

            ranges = [EXPORT_FILTERS, *(lambda_filters(share) for share in LAMBDA_SHARES)]
            facts = write_log(log, args.records, args.seed, ranges, progress)
            show(environment(facts))
            if "export" in sections:
                note("1. the export: trail query (A) and plain COPY (B), alternated")
                exports = measure_exports(log, run_dir, args)
                show(export_table(exports, facts, args))
            if "lambda" in sections:
                note("2. the Lambda's step after the query, on moto's S3")
                lambda_result = measure_lambda(log, run_dir, args)
                show(lambda_table(lambda_result, args))
        targets, correct = targets_table(facts, exports, lambda_result)
        targets.notes.append(
            f"The run took {time.monotonic() - started:.0f} s; load average at its end (1, 5, 15 min): "
            f"{load_average()}. The machine is shared: other work on it shows in the wall times."
        )
        show(targets)
    except BenchError as error:
        print(f"audit_bench: {error}", file=sys.stderr)
        return 2
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(table.markdown() for table in tables))
    if not correct:
        print("\naudit_bench: an export's rows or record are NOT right (see Targets)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
