"""Writes and HOSP's idle timeout: how often does a pooled connection that HOSP is closing take a write?

    python -m bench.write_reuse            # about 3 minutes on 2 cores
    python -m bench.write_reuse --help

HOSP (the stand-in, `--idle-timeout`) closes a keep-alive connection after IDLE seconds
without a request. NGINX sends `POST /notes` (a JSON body) to it in one of four ways:

  fresh   a new connection per write: what the proxy does today (named-locations.conf);
  above   a keep-alive pool whose idle connections live longer than HOSP's (2 x IDLE);
  below   a keep-alive pool whose idle connections close a margin before HOSP's
          (0.75 x IDLE: production's 15 s against Puma's 20 s);
  proxy   the project's proxy as rendered (infra/nginx/render.py, keepalive_timeout 0.75 x IDLE).

The first three run in one NGINX (bench/write-pool.conf: one worker, the proxy's
proxying directives, one attempt). Each way gets the same traffic:

  gaps    one client, one connection to NGINX, one write at a time; before each write an
          idle gap drawn uniformly within +-BAND ms of HOSP's idle timeout ("at HOSP's"),
          then of the pool's own timeout ("at the pool's"), so that the pooled
          connection is as old as it can be when HOSP or NGINX gives it up;
  load    CLIENTS concurrent clients, each pausing a random 0..2.5 x IDLE between writes:
          the pool's connections get every idle age, under a steady flow of writes.

Counted for each: writes sent, failed (any answer but 201, or a connection error), the
failed ones HOSP never received (by the X-Request-Id in its request log: the write went
into a connection HOSP had closed), and writes HOSP received more than once (never
allowed). Loopback only; every series is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from bench.clients import AUTH, NOTE
from bench.report import Table
from bench.servers import BenchError
from bench.toolkit import run_directory
from infra.nginx.render import Tuning, render_template
from local.hosp_standin.process import StandInProcess
from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.nginx_proxy import NginxProxy, nginx_binary
from local.processes import LoopbackServer, ProcessError, free_port

HERE = Path(__file__).resolve().parent
CASES = ("fresh", "above", "below", "proxy")
PATTERNS = ("gaps", "load")
ABOVE = 2.0  # the pool's idle timeout, times HOSP's, for "above"
BELOW = 0.75  # and for "below" and "proxy": 15 s against 20 s
LOAD_PAUSE = 2.5  # load: each client pauses uniformly 0..LOAD_PAUSE x IDLE between writes
REQUEST_TIMEOUT = 10.0
SERIES_TIME_LIMIT = 120.0  # seconds; writes not started by then are skipped and reported
BODY = json.dumps(NOTE).encode()
HEADERS = {**AUTH, "Content-Type": "application/json"}


# --- pure parts -------------------------------------------------------------------------------


def pool_timeout(case: str, idle: float) -> float | None:
    """The pool's idle timeout of a case, in seconds; None: no pool."""
    return {"fresh": None, "above": ABOVE * idle, "below": BELOW * idle, "proxy": BELOW * idle}[case]


def gap_schedule(centre: float, band: float, count: int, rng: random.Random) -> list[float]:
    """`count` idle gaps drawn uniformly within centre +- band (seconds), never negative."""
    return [max(0.0, centre + rng.uniform(-band, band)) for _ in range(count)]


@dataclass(frozen=True)
class Write:
    request_id: str
    status: int | None  # None: a connection error
    gap: float  # the idle gap before it, seconds (load: the client's pause)

    @property
    def failed(self) -> bool:
        return self.status != 201


@dataclass(frozen=True)
class Tally:
    sent: int
    failed: int
    failed_unreceived: int  # failed writes HOSP never received
    received_twice: int  # writes HOSP received more than once
    skipped: int  # not sent: the series' time limit was reached

    def cell(self) -> str:
        return f"{self.failed}/{self.sent}"


def tally(writes: Sequence[Write], received_ids: Iterable[str | None], skipped: int = 0) -> Tally:
    """Failures of a series, against the X-Request-Ids HOSP logged (one per request it received)."""
    counts = Counter(i for i in received_ids if i)
    ours = {w.request_id for w in writes}
    failed = [w for w in writes if w.failed]
    return Tally(
        sent=len(writes),
        failed=len(failed),
        failed_unreceived=sum(1 for w in failed if counts[w.request_id] == 0),
        received_twice=sum(1 for i, n in counts.items() if n > 1 and i in ours),
        skipped=skipped,
    )


def failure_rate(t: Tally) -> str:
    return f"{1000 * t.failed / t.sent:.0f}" if t.sent else "-"


# --- servers ----------------------------------------------------------------------------------


@dataclass
class WritePool(LoopbackServer):
    """NGINX (one worker) with /fresh/, /above/ and /below/ in front of `upstream` (bench/write-pool.conf)."""

    upstream: str
    run_dir: Path
    idle: float
    port: int = 0

    def start(self) -> Self:
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        values = {
            "run_dir": str(self.run_dir),
            "temp_dir": str(self.run_dir / "tmp"),
            "listen": self.address,
            "upstream": self.upstream,
            "above": f"{round(ABOVE * self.idle * 1000)}ms",
            "below": f"{round(BELOW * self.idle * 1000)}ms",
        }
        config = self.run_dir / "write-pool.conf"
        config.write_text(render_template(HERE / "write-pool.conf", values))
        error_log = str(self.run_dir / "write-pool-error.log")
        self._launch([nginx_binary(), "-c", str(config), "-e", error_log, "-g", "daemon off;"])
        return self


# --- clients ----------------------------------------------------------------------------------


def post(conn: http.client.HTTPConnection, path: str, gap: float) -> Write:
    """One write on `conn` with a fresh X-Request-Id; a failed connection is closed (reopened on next use)."""
    request_id = uuid.uuid4().hex
    try:
        conn.request("POST", path, body=BODY, headers={**HEADERS, "X-Request-Id": request_id})
        answer = conn.getresponse()
        answer.read()
        if answer.getheader("X-Request-Id"):
            request_id = answer.getheader("X-Request-Id", request_id)  # the proxy's own id, sent to HOSP
        status: int | None = answer.status
    except (OSError, http.client.HTTPException):
        conn.close()
        status = None
    return Write(request_id, status, gap)


def gaps_series(port: int, path: str, gaps: Sequence[float]) -> tuple[list[Write], int]:
    """One client, one write at a time, each after its idle gap; the first write opens the pool's connection."""
    deadline = time.monotonic() + SERIES_TIME_LIMIT
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    writes: list[Write] = []
    try:
        post(conn, path, 0.0)  # warm: the pool holds a connection HOSP has just answered on
        for index, gap in enumerate(gaps):
            if time.monotonic() + gap > deadline:
                return writes, len(gaps) - index
            time.sleep(gap)
            writes.append(post(conn, path, gap))
    finally:
        conn.close()
    return writes, 0


def load_series(port: int, path: str, count: int, *, clients: int, idle: float, seed: int) -> tuple[list[Write], int]:
    """`clients` threads share `count` writes, each pausing uniformly 0..LOAD_PAUSE x idle between its writes."""
    deadline = time.monotonic() + SERIES_TIME_LIMIT
    lock = threading.Lock()
    left = [count]
    writes: list[Write] = []

    def client(number: int) -> int:
        rng = random.Random(seed * 1000 + number)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            while True:
                with lock:
                    if left[0] == 0 or time.monotonic() > deadline:
                        return 0
                    left[0] -= 1
                pause = rng.uniform(0, LOAD_PAUSE * idle)
                time.sleep(pause)
                write = post(conn, path, pause)
                with lock:
                    writes.append(write)
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return writes, left[0]


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: str
    pattern: str
    band: str
    tally: Tally


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.write_reuse", description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=float, default=0.2, help="HOSP's idle timeout in seconds (default 0.2)")
    # The window in which HOSP closes as a write arrives is about a millisecond wide here:
    # a wider band dilutes it (a run at +-5 ms saw no failure where +-2 ms saw 14 in 100).
    p.add_argument("--band", type=float, default=2.0, help="gaps: +- milliseconds around a timeout (default 2)")
    p.add_argument("--gap-writes", type=int, default=100, help="gaps: writes per band and case (default 100)")
    p.add_argument("--load-writes", type=int, default=600, help="load: writes per case (default 600)")
    p.add_argument("--clients", type=int, default=8, help="load: concurrent clients (default 8)")
    p.add_argument("--cases", default=",".join(CASES), help=f"which of {','.join(CASES)} (default: all)")
    p.add_argument("--patterns", default=",".join(PATTERNS), help="gaps, load (default: both)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the gaps and pauses (default 2024)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs and logs)")
    args = p.parse_args(argv)
    if args.load_writes > REQUEST_LOG_SIZE or args.gap_writes > REQUEST_LOG_SIZE:
        p.error(f"at most {REQUEST_LOG_SIZE} writes per series: HOSP's request log must hold them all")
    return args


def measure(
    standin: StandInProcess, series: Callable[[], tuple[list[Write], int]], case: str, pattern: str, band: str
) -> Row:
    standin.reset()
    writes, skipped = series()
    time.sleep(0.2)  # HOSP logs a request as it arrives; let the last ones land
    received = [entry.get("x_request_id") for entry in standin.recent_requests() if entry.get("method") == "POST"]
    row = Row(case, pattern, band, tally(writes, received, skipped))
    t = row.tally
    print(
        f"  {case:6} {pattern:5} {band:14} failed {t.cell():8} never received {t.failed_unreceived:3}  "
        f"received twice {t.received_twice}  skipped {t.skipped}",
        flush=True,
    )
    return row


def run(args: argparse.Namespace, run_dir: Path) -> list[Row]:
    cases = [c for c in CASES if c in args.cases.split(",")]
    patterns = [p for p in PATTERNS if p in args.patterns.split(",")]
    rng = random.Random(args.seed)
    band = args.band / 1000
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        standin = stack.enter_context(StandInProcess(run_dir / "standin", seed=args.seed, idle_timeout=args.idle))
        pool = stack.enter_context(WritePool(standin.address, run_dir / "write-pool", args.idle))
        tuning = Tuning(keepalive_timeout=BELOW * args.idle, access_log_buffer="off")
        proxy = stack.enter_context(NginxProxy(standin.address, run_dir / "proxy", tuning=tuning))
        for case in cases:
            port, path = (proxy.port, "/notes") if case == "proxy" else (pool.port, f"/{case}/notes")
            if "gaps" in patterns:
                centres = [("at HOSP's", args.idle)]
                timeout = pool_timeout(case, args.idle)
                if timeout is not None:
                    centres.append(("at the pool's", timeout))
                for label, centre in centres:
                    gaps = gap_schedule(centre, band, args.gap_writes, rng)
                    rows.append(measure(standin, functools.partial(gaps_series, port, path, gaps), case, "gaps", label))
            if "load" in patterns:
                series = functools.partial(
                    load_series, port, path, args.load_writes, clients=args.clients, idle=args.idle, seed=args.seed
                )
                rows.append(measure(standin, series, case, "load", f"{args.clients} clients"))
    return rows


def table(rows: Sequence[Row], args: argparse.Namespace) -> Table:
    idle_ms = round(args.idle * 1000)
    title = f"Writes over pooled connections: HOSP closes idle connections after {idle_ms} ms"
    headers = ["way", "pool's idle timeout", "traffic", "idle gap", "failed/sent", "per 1000",
               "failed, never received by HOSP", "received twice", "skipped"]  # fmt: skip
    t = Table(title, headers)
    for row in rows:
        timeout = pool_timeout(row.case, args.idle)
        pool = "none" if timeout is None else f"{round(timeout * 1000)} ms"
        if row.pattern == "gaps":
            centre = args.idle if row.band == "at HOSP's" else timeout or args.idle
            gap = f"{round(centre * 1000)} ± {args.band:g} ms ({row.band})"
            traffic = "1 client, 1 write at a time"
        else:
            gap = f"0-{round(LOAD_PAUSE * args.idle * 1000)} ms pauses"
            traffic = row.band
        x = row.tally
        t.add(row.case, pool, traffic, gap, x.cell(), failure_rate(x), x.failed_unreceived, x.received_twice, x.skipped)
    t.notes += [
        "fresh/above/below: bench/write-pool.conf (one NGINX worker, HTTP/1.1, empty Connection header, "
        "proxy_next_upstream off, as the proxy's write location); proxy: the project's rendered proxy "
        "(writes over new connections, its keep-alive pool only for first attempts of idempotent requests).",
        "HOSP: the stand-in (`--idle-timeout`), POST /notes with a JSON body; each write carries its own "
        "X-Request-Id, matched in HOSP's request log.",
        "failed: any answer but 201 or a connection error; 'never received': HOSP has no log line for it "
        "(the write went into a connection HOSP had already closed, and NGINX answered 502).",
    ]
    return t


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with run_directory(args.keep, "write-reuse", "configs and logs") as run_dir:
            rows = run(args, run_dir)
    except (BenchError, ProcessError) as error:
        print(f"write_reuse: {error}", file=sys.stderr)
        return 2
    result = table(rows, args)
    print("\n" + result.plain() + "\n")
    print("---- markdown ----\n")
    print(result.markdown())
    twice = sum(r.tally.received_twice for r in rows)
    if twice:
        print(f"\nwrite_reuse: {twice} write(s) reached HOSP twice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
