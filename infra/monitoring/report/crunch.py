"""The report's numbers, computed by DuckDB from the access log's lines.

One pass reads the log (`load`): each line's few fields the report needs go into
a table of a DuckDB database on disk, in a directory the caller owns, with a
memory limit, so that a log larger than memory spills to disk instead of
growing the process. Every figure is then a query on that table.

The definitions (docs/report.md says them for a reader):

- client requests: lines of the public listener (requests from clients, through
  CloudFront); a client failure is one of them answered with a 5xx;
- requests to HOSP: lines routed to HOSP (`HOSP_ROUTES`) with at least one
  attempt, from either listener, as the monitoring stack's HospRequests metric;
- a first-attempt failure: the first entry of `upstream_status` is a 5xx (HOSP's
  own, or the 502 or 504 NGINX writes for an error or a timeout);
- recovered: a first-attempt failure whose answer was not a 5xx;
- upstream load: attempts to HOSP (entries of `upstream_status`) per request to HOSP;
- retried and refused: `retry_budget` PASSED and REJECTED.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from chalicelib.audit.log_schema import FIELDS

# Routes that send a request to HOSP (docs/access-log.md, `route`).
HOSP_ROUTES = ("hosp", "screen")
# Routes of an X-ray screen of a patient: HOSP answers it, and its answer goes to the note path.
SCREEN_ROUTES = ("screen",)
AUDIT_ROUTE = "audit"
# The fields read; a line without a time, a status, a listener or a route is unreadable, and
# so is a time outside these years (no proxy logged it: a clock or a line gone wrong).
SANE_TIMES = (datetime(2000, 1, 1), datetime(2100, 1, 1))
READ = ("logged_at", "status", "request_time", "upstream_status", "retry_budget", "listener", "route")
# Buckets for the plots: the smallest giving at most MAX_BUCKETS over the span.
BUCKETS = (
    timedelta(seconds=1), timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5),
    timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6), timedelta(days=1),
    timedelta(days=7), timedelta(days=30),
)  # fmt: skip
MAX_BUCKETS = 300
# Events of the Lambdas' logs (chalicelib/logs.py lines) that the screens plot counts.
NOTE_EVENTS = {
    "note_job_queued": "note jobs queued",
    "note_handoff_refused": "hand-offs refused",
    "note_job_not_queued": "hand-offs not queued",
    "note_written": "notes written",
    "note_already_present": "notes already present",
    "note_job_dead_lettered": "dead-lettered",
}
AUDIT_EVENTS = {"audit_export_delivered": "exports delivered", "audit_query_failed": "exports failed"}


@dataclass(frozen=True)
class Headline:
    """The figures of one span: the whole read, or one day."""

    label: str
    client_requests: int
    client_failures: int
    hosp_requests: int
    first_attempt_failures: int
    recovered: int
    attempts: int
    retried: int
    refusals: int

    @property
    def first_attempt_failure_rate(self) -> float | None:
        return self.first_attempt_failures / self.hosp_requests if self.hosp_requests else None

    @property
    def client_failure_rate(self) -> float | None:
        return self.client_failures / self.client_requests if self.client_requests else None

    @property
    def upstream_load(self) -> float | None:
        return self.attempts / self.hosp_requests if self.hosp_requests else None


@dataclass(frozen=True)
class Read:
    """What the pass over the log found."""

    lines: int  # every line DuckDB read, readable or not
    unreadable: int  # not JSON, or without a time, status, listener or route
    outside: int  # readable, but logged outside the span asked for
    first: datetime | None  # the earliest and latest line kept
    last: datetime | None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(_quote(value) for value in values) + ")"


def connect(
    work_dir: Path, memory_limit: str = "512MB", threads: int = 2, *, progress: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB database in `work_dir` that spills to disk past `memory_limit`.

    progress: DuckDB draws its progress bar on the terminal for a pass longer than a second.
    """
    db = duckdb.connect(str(work_dir / "report.duckdb"))
    db.execute(f"SET memory_limit = {_quote(memory_limit)}")
    db.execute(f"SET temp_directory = {_quote(str(work_dir / 'spill'))}")
    db.execute(f"SET threads = {int(threads)}")
    db.execute("SET preserve_insertion_order = false")
    db.execute(f"SET enable_progress_bar = {str(progress).lower()}")
    if progress:
        db.execute("SET enable_progress_bar_print = true")
        db.execute("SET progress_bar_time = 1000")
    return db


def reader(paths: Sequence[Path], compression: str) -> str:
    types = {f.name: f.type.duckdb for f in FIELDS if f.name in READ}
    columns = "{" + ", ".join(f"{_quote(name)}: {_quote(kind)}" for name, kind in types.items()) + "}"
    files = "[" + ", ".join(_quote(str(p)) for p in paths) + "]"
    return (
        f"SELECT * FROM read_json({files}, format = 'newline_delimited', compression = {_quote(compression)}, "
        f"ignore_errors = true, columns = {columns}, maximum_object_size = 16777216)"
    )


def load(
    db: duckdb.DuckDBPyConnection,
    plain: Sequence[Path],
    gzip: Sequence[Path],
    start: datetime | None,
    end: datetime | None,
) -> Read:
    """Read the files into the table `lines`; count what was unreadable or outside [start, end)."""
    parts = [reader(plain, "none")] if plain else []
    parts += [reader(gzip, "gzip")] if gzip else []
    db.execute(
        f"""
        CREATE OR REPLACE TABLE raw AS
        SELECT
            logged_at, status, request_time, listener, route, retry_budget,
            logged_at IS NULL OR status IS NULL OR listener IS NULL OR route IS NULL
                OR logged_at < TIMESTAMP {_quote(SANE_TIMES[0].isoformat(sep=" "))}
                OR logged_at >= TIMESTAMP {_quote(SANE_TIMES[1].isoformat(sep=" "))} AS unreadable,
            CASE WHEN coalesce(upstream_status, '') = '' THEN 0
                 ELSE len(regexp_split_to_array(upstream_status, '\\s*,\\s*|\\s+:\\s+')) END AS attempts,
            regexp_extract(coalesce(upstream_status, ''), '^\\s*(\\S+?)(?:\\s*,|\\s+:|\\s*$)', 1) AS first_status
        FROM ({" UNION ALL ".join(parts)})
        """
    )
    window = []
    if start:
        window.append(f"logged_at >= TIMESTAMP {_quote(start.isoformat(sep=' '))}")
    if end:
        window.append(f"logged_at < TIMESTAMP {_quote(end.isoformat(sep=' '))}")
    inside = " AND ".join(window) or "true"
    db.execute(
        "CREATE OR REPLACE TABLE lines AS SELECT * EXCLUDE (unreadable), first_status LIKE '5%' AS first_failed "
        f"FROM raw WHERE NOT unreadable AND {inside}"
    )
    lines, unreadable = db.execute("SELECT count(*), count(*) FILTER (WHERE unreadable) FROM raw").fetchone() or (0, 0)
    db.execute("DROP TABLE raw")
    kept, first, last = db.execute("SELECT count(*), min(logged_at), max(logged_at) FROM lines").fetchone() or (
        0,
        None,
        None,
    )
    return Read(lines=lines, unreadable=unreadable, outside=lines - unreadable - kept, first=first, last=last)


_HEADLINE = f"""
    count(*) FILTER (WHERE listener = 'public'),
    count(*) FILTER (WHERE listener = 'public' AND status >= 500),
    count(*) FILTER (WHERE route IN {_in(HOSP_ROUTES)} AND attempts > 0),
    count(*) FILTER (WHERE route IN {_in(HOSP_ROUTES)} AND attempts > 0 AND first_failed),
    count(*) FILTER (WHERE route IN {_in(HOSP_ROUTES)} AND attempts > 0 AND first_failed AND status < 500),
    coalesce(sum(attempts) FILTER (WHERE route IN {_in(HOSP_ROUTES)}), 0),
    count(*) FILTER (WHERE retry_budget = 'PASSED'),
    count(*) FILTER (WHERE retry_budget = 'REJECTED')
"""


def headlines(db: duckdb.DuckDBPyConnection) -> tuple[Headline, list[Headline]]:
    """The whole span's headline, and one per UTC day, in order."""
    whole = db.execute(f"SELECT {_HEADLINE} FROM lines").fetchone()
    assert whole is not None
    days = db.execute(
        f"SELECT strftime(logged_at, '%Y-%m-%d') AS day, {_HEADLINE} FROM lines GROUP BY day ORDER BY day"
    ).fetchall()
    return Headline("whole span", *whole), [Headline(row[0], *row[1:]) for row in days]


def bucket_for(first: datetime | None, last: datetime | None) -> timedelta:
    """The plots' bucket: the smallest of BUCKETS that gives at most MAX_BUCKETS over the span."""
    span = (last - first) if first and last else timedelta(0)
    return next((size for size in BUCKETS if span / size <= MAX_BUCKETS), BUCKETS[-1])


def _bucket_sql(size: timedelta) -> str:
    return f"time_bucket(INTERVAL '{int(size.total_seconds())} seconds', logged_at)"


def series(db: duckdb.DuckDBPyConnection, size: timedelta) -> list[dict[str, Any]]:
    """Per bucket: the rates, the counts and the client latency percentiles (seconds)."""
    rows = db.execute(
        f"""
        SELECT {_bucket_sql(size)} AS bucket, {_HEADLINE},
            count(*) FILTER (WHERE route IN {_in(SCREEN_ROUTES)}),
            count(*) FILTER (WHERE route = 'audit'),
            count(*) FILTER (WHERE route = 'audit' AND status >= 500),
            approx_quantile(request_time, [0.5, 0.95, 0.99]) FILTER (WHERE listener = 'public')
        FROM lines GROUP BY bucket ORDER BY bucket
        """
    ).fetchall()
    by_bucket = {row[0]: row for row in rows}
    out = []
    # Every bucket from the first to the last, those without a line as zeros: a gap in
    # the traffic is drawn as one, not as a line across it.
    moment = rows[0][0] if rows else None
    while moment is not None and moment <= rows[-1][0]:
        row = by_bucket.get(moment) or (moment, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None)
        moment += size
        headline = Headline("", *row[1:9])
        quantiles = row[12] or [None, None, None]
        out.append(
            {
                "bucket": row[0],
                "headline": headline,
                "screens": row[9],
                "audit": row[10],
                "audit_failures": row[11],
                "p50": quantiles[0],
                "p95": quantiles[1],
                "p99": quantiles[2],
            }
        )
    return out


def offenders(db: duckdb.DuckDBPyConnection, limit: int = 10) -> list[tuple[str, int, int]]:
    """The client failures by (route, status), most first: (route, status, count)."""
    return [
        (str(route), int(status), int(count))
        for route, status, count in db.execute(
            f"""
            SELECT route, status, count(*) AS n FROM lines
            WHERE listener = 'public' AND status >= 500
            GROUP BY route, status ORDER BY n DESC, route, status LIMIT {int(limit)}
            """
        ).fetchall()
    ]


def first_failures(db: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """HOSP's failed first attempts by their status (502 and 504 are NGINX's: an error, a timeout), most first."""
    return [
        (str(status), int(count))
        for status, count in db.execute(
            f"""
            SELECT first_status, count(*) AS n FROM lines
            WHERE route IN {_in(HOSP_ROUTES)} AND attempts > 0 AND first_failed
            GROUP BY first_status ORDER BY n DESC, first_status
            """
        ).fetchall()
    ]


def lambda_events(
    paths: Iterable[Path], start: datetime | None, end: datetime | None
) -> tuple[Counter[tuple[datetime, str]], int]:
    """Counts of the Lambdas' events the report plots, by (time to the second, event); and unreadable lines.

    A line is a JSON object from chalicelib/logs.py, alone or after a prefix (as
    CloudWatch exports and `chalice local` print them). Lines without such an object
    (chalice local's own messages, stack traces) are not counted as unreadable;
    an object cut short is. Streamed: memory grows with the seconds that had
    events, not with the lines.
    """
    wanted = NOTE_EVENTS.keys() | AUDIT_EVENTS.keys()
    counts: Counter[tuple[datetime, str]] = Counter()
    unreadable = 0
    for path in paths:
        with path.open("rb") as file:
            for raw in file:
                at = raw.find(b'{"')
                if at < 0 or b'"event"' not in raw:
                    continue
                try:
                    line = json.loads(raw[at:])
                    event = line["event"]
                    when = datetime.fromisoformat(line["time"].replace("Z", "+00:00")).replace(tzinfo=None)
                    if not isinstance(event, str):
                        raise TypeError("the event is not a name")
                except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                    unreadable += 1
                    continue
                if event in wanted and (not start or when >= start) and (not end or when < end):
                    counts[(when.replace(microsecond=0), event)] += 1
    return counts, unreadable
