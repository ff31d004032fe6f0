"""The edge benchmark: what the production proxy's checks and the local HTTPS edge cost, side by side.

    python -m bench.edge_bench            # or: make bench-edge
    python -m bench.edge_bench --help

Three targets on 127.0.0.1 in front of one upstream (by default the static NGINX of
bench.proxy_bench's table 3), the same authenticated GET /hospitals, wrk runs alternated
A B C A B C ...:
  A. the proxy as `make run` renders it: no public names, no origin secret; plain HTTP;
  B. the proxy as production renders it: public name hosp.localhost and an origin secret;
     plain HTTP, each request with Host hosp.localhost and X-Origin-Verify;
  C. the local HTTPS edge (local/edge: TLS 1.3, keep-alive) in front of proxy B.
It prints a pre-flight (each target answers 200, B refuses what production refuses, C
speaks TLS 1.3), the medians of each target's runs and the ratios B/A and C/B, as plain
text while it goes and as markdown at the end. See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import platform
import re
import resource
import shutil
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from bench import overhead
from bench.clients import AUTH
from bench.overhead import Summary, WrkRequest, WrkResult, WrkSettings
from bench.report import Table
from bench.servers import BenchError, StaticUpstream, binary_version, require_binary
from bench.toolkit import Check, checks_table, run_directory
from local.edge.server import NEW_NAME, LocalEdge, new_origin_secret
from local.hosp_standin.process import StandInProcess
from local.nginx_proxy import NginxProxy, nginx_binary
from local.processes import LoopbackServer, ProcessError, group_members

PATH = "/hospitals"
PUBLIC_NAME = NEW_NAME  # hosp.localhost: the edge's new name, the one production's proxy answers
OTHER_NAME = "elsewhere.example"
TLS_PROTOCOL = "TLSv1.3"
CLIENT_CLOSED = "499"  # NGINX's status for a request whose client closed the connection first
REQUEST_TIMEOUT = 10.0
TARGETS = {
    "A": "proxy as `make run` renders it (no public names, no origin secret), HTTP",
    "B": "proxy as production renders it (public name, origin secret), HTTP, Host + X-Origin-Verify",
    "C": "local HTTPS edge (TLS 1.3, keep-alive) in front of B",
}
RATIOS = (("B", "A"), ("C", "B"), ("C", "A"))
UPSTREAMS = ("static", "standin")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.edge_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="wrk runs per target, alternated A B C (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections (default 16)")
    p.add_argument("--threads", type=int, default=1, help="wrk's threads (default 1)")
    p.add_argument(
        "--upstream",
        choices=UPSTREAMS,
        default="static",
        help="static: one NGINX worker answering 200 (default, table 3's); standin: the HOSP stand-in, no faults",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs and logs)")
    return p.parse_args(argv)


# --- pure parts: ratios, the edge's access log, the tables ----------------------------------------


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator of two targets' medians; `added_*`: the differences in ms."""

    rps: float
    p50: float
    p99: float
    added_p50_ms: float
    added_p99_ms: float
    paired_rps: float  # median over the rounds of each round's req/s ratio


def paired_rps(numerator: Sequence[WrkResult], denominator: Sequence[WrkResult]) -> list[float]:
    """Round by round: the runs of a round are back to back, so they share the machine's noise."""
    return [n.rps / d.rps for n, d in zip(numerator, denominator, strict=True)]


def ratio(numerator: Sequence[WrkResult], denominator: Sequence[WrkResult]) -> Ratio:
    top, bottom = overhead.summarize(numerator), overhead.summarize(denominator)
    return Ratio(
        rps=top.rps / bottom.rps,
        p50=top.p50_ms / bottom.p50_ms,
        p99=top.p99_ms / bottom.p99_ms,
        added_p50_ms=top.p50_ms - bottom.p50_ms,
        added_p99_ms=top.p99_ms - bottom.p99_ms,
        paired_rps=statistics.median(paired_rps(numerator, denominator)),
    )


# local/edge/templates/logging.conf: time, request id, address:port, TLS protocol, "host", "request",
# status, upstream status, request time (escape=json: a quote inside a field is \").
EDGE_LOG_LINE = re.compile(
    r'^\S+ \S+ (?P<client>\S+) (?P<protocol>\S*) "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" (?P<status>\d{3}) '
)


@dataclass(frozen=True)
class EdgeLog:
    """What the edge's access log says of C's traffic."""

    requests: int
    protocols: dict[str, int]
    statuses: dict[str, int]
    connections: int  # distinct client address:port pairs: TLS connections (a reused port counts once)
    unreadable: int

    @property
    def requests_per_connection(self) -> float:
        return self.requests / self.connections if self.connections else 0.0

    def problems(self, closed_allowed: int) -> list[str]:
        """What makes C's figures untrustworthy. `closed_allowed`: the 499s (the client closed before the
        answer) that wrk's runs explain: it stops each run with its connections' last requests unanswered."""
        found = []
        if not self.requests:
            found.append("the edge logged no request")
        other_protocols = {p: n for p, n in self.protocols.items() if p != TLS_PROTOCOL}
        if other_protocols:
            found.append(f"the edge served requests over other than {TLS_PROTOCOL}: {other_protocols}")
        other_statuses = {s: n for s, n in self.statuses.items() if s not in ("200", CLIENT_CLOSED)}
        if other_statuses:
            found.append(f"the edge answered other than 200: {other_statuses}")
        closed = self.statuses.get(CLIENT_CLOSED, 0)
        if closed > closed_allowed:
            found.append(
                f"{closed} requests closed by the client (499), more than wrk's stops explain ({closed_allowed})"
            )
        if self.unreadable:
            found.append(f"{self.unreadable} line(s) of the edge's log could not be read")
        return found


def read_edge_log(text: str) -> EdgeLog:
    protocols: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    clients: set[str] = set()
    unreadable = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        match = EDGE_LOG_LINE.match(line)
        if not match:
            unreadable += 1
            continue
        protocols[match["protocol"] or "-"] += 1
        statuses[match["status"]] += 1
        clients.add(match["client"])
    return EdgeLog(sum(statuses.values()), dict(protocols), dict(statuses), len(clients), unreadable)


def wrk_errors(results: dict[str, list[WrkResult]]) -> list[str]:
    """Any non-2xx answer or socket error makes a target's figures untrustworthy (a 403 is fast)."""
    return [f"{name} run {i + 1}: {r.errors}" for name, runs in results.items() for i, r in enumerate(runs) if r.errors]


def results_table(results: dict[str, list[WrkResult]], settings: WrkSettings, upstream: str) -> Table:
    summaries: dict[str, Summary] = {name: overhead.summarize(runs) for name, runs in results.items()}
    title = (
        f"Edge overhead: wrk -t{settings.threads} -c{settings.connections} -d{settings.duration}s "
        f"GET {PATH}, {upstream} upstream"
    )
    table = Table(title, ["target", "what", "req/s (median)", "p50 ms", "p99 ms", "runs", "wrk errors"])
    for name, s in summaries.items():
        table.add(name, TARGETS[name], f"{s.rps:.0f}", f"{s.p50_ms:.3f}", f"{s.p99_ms:.3f}", s.runs,
                  "; ".join(s.errors) or "none")  # fmt: skip
    return table


def ratios_table(results: dict[str, list[WrkResult]]) -> Table:
    headers = ["ratio", "req/s", "req/s, paired by round", "p50", "p99", "added p50 ms", "added p99 ms"]
    table = Table("Edge overhead: ratios", headers)
    for top, bottom in RATIOS:
        r = ratio(results[top], results[bottom])
        table.add(f"{top}/{bottom}", f"{r.rps:.2f}x", f"{r.paired_rps:.2f}x", f"{r.p50:.2f}x", f"{r.p99:.2f}x",
                  f"{r.added_p50_ms:+.3f}", f"{r.added_p99_ms:+.3f}")  # fmt: skip
    rounds = {f"{t}/{b}": paired_rps(results[t], results[b]) for t, b in RATIOS}
    listed = "; ".join(f"{name} " + ", ".join(f"{v:.2f}" for v in values) for name, values in rounds.items())
    table.notes += [
        "req/s, p50, p99: ratios of the medians over the runs (below 1.00x for req/s, above for latency: "
        "the numerator costs more); paired by round: the median of each round's req/s ratio.",
        f"req/s ratios round by round: {listed}.",
    ]
    return table


# What each server spends per request: the CPU time of its processes, read around every wrk run.
CPU_COLUMNS = ("upstream", "proxy A", "proxy B", "edge", "wrk")


def cpu_per_request_us(cpu: Sequence[dict[str, float]], runs: Sequence[WrkResult], duration: int) -> dict[str, float]:
    """Medians over the runs of each column's CPU microseconds per request, and of their total.

    A run's requests: its req/s times its duration (wrk's own count, rounded)."""
    per_run = []
    for seconds, result in zip(cpu, runs, strict=True):
        requests_done = result.rps * duration
        row = {name: seconds.get(name, 0.0) * 1e6 / requests_done for name in CPU_COLUMNS}
        row["total"] = sum(row.values())
        per_run.append(row)
    return {name: statistics.median(row[name] for row in per_run) for name in (*CPU_COLUMNS, "total")}


def cpu_table(cpu: dict[str, list[dict[str, float]]], results: dict[str, list[WrkResult]], duration: int) -> Table:
    table = Table("Edge overhead: CPU microseconds per request (median of the runs)", ["target", *CPU_COLUMNS, "total"])
    per_target = {name: cpu_per_request_us(cpu[name], results[name], duration) for name in results}
    for name, row in per_target.items():
        table.add(name, *(f"{row[column]:.1f}" for column in (*CPU_COLUMNS, "total")))
    if {"B", "C"} <= per_target.keys():
        b, c = per_target["B"], per_target["C"]
        table.notes.append(
            f"C - B, total: {c['total'] - b['total']:+.1f} us per request, of which the edge {c['edge']:.1f} us."
        )
    table.notes.append(
        "user + system time of each server's processes (NGINX's master and workers) and of wrk "
        "(getrusage of the children), read before and after each run; divided by the run's requests."
    )
    return table


# --- the processes -----------------------------------------------------------------------------------


@dataclass
class Stand:
    """The three targets and what wrk sends to each."""

    urls: dict[str, str]
    requests: dict[str, WrkRequest]
    edge: LocalEdge
    servers: dict[str, LoopbackServer]  # by CPU column
    secret: str = field(repr=False)


@contextlib.contextmanager
def stand(run_dir: Path, upstream_kind: str) -> Iterator[Stand]:
    secret = new_origin_secret()
    with contextlib.ExitStack() as stack:
        upstream: LoopbackServer
        if upstream_kind == "static":
            upstream = StaticUpstream(run_dir / "static")
        else:
            upstream = StandInProcess(run_dir / "standin")
        stack.enter_context(upstream)
        # Both with the defaults `make run` renders (local/stack.py); B only adds production's checks.
        proxy_a = stack.enter_context(NginxProxy(upstream.address, run_dir / "proxy-a"))
        proxy_b = stack.enter_context(
            NginxProxy(upstream.address, run_dir / "proxy-b", origin_secrets=(secret,), public_names=(PUBLIC_NAME,))
        )
        edge = stack.enter_context(LocalEdge(origin=proxy_b.address, run_dir=run_dir / "edge", origin_secret=secret))
        urls = {"A": proxy_a.url, "B": proxy_b.url, "C": f"https://127.0.0.1:{edge.port}"}
        requests_ = {
            "A": WrkRequest(PATH),
            "B": WrkRequest(PATH, (("Host", PUBLIC_NAME), ("X-Origin-Verify", secret))),
            # The edge adds the secret itself, as CloudFront does; the Host is the viewer's, port included.
            "C": WrkRequest(PATH, (("Host", edge.host()),)),
        }
        servers: dict[str, LoopbackServer] = {
            "upstream": upstream,
            "proxy A": proxy_a,
            "proxy B": proxy_b,
            "edge": edge,
        }
        yield Stand(urls, requests_, edge, servers, secret)


def server_cpu_seconds(server: LoopbackServer) -> float:
    """CPU seconds so far of a server's process group (it is started in a session of its own)."""
    if server.process is None:
        return 0.0
    total = 0.0
    for pid in group_members(server.process.pid):
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def wrk_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_now(servers: dict[str, LoopbackServer]) -> dict[str, float]:
    return {**{name: server_cpu_seconds(server) for name, server in servers.items()}, "wrk": wrk_cpu_seconds()}


# --- pre-flight ---------------------------------------------------------------------------------------


def _seen(call: Callable[[], object]) -> str:
    try:
        return str(call())
    except (OSError, requests.RequestException) as error:
        return f"error: {type(error).__name__}"


def preflight(s: Stand) -> list[Check]:
    def get(url: str, headers: dict[str, str]) -> int:
        return requests.get(url + PATH, headers={**AUTH, **headers}, timeout=REQUEST_TIMEOUT).status_code

    def tls_version() -> str | None:
        with s.edge.tls_connection(PUBLIC_NAME) as tls:
            return tls.version()

    verify = {"X-Origin-Verify": s.secret}
    return [
        Check("A", f"GET {PATH}", "200", _seen(lambda: get(s.urls["A"], {}))),
        Check("B", f"GET {PATH}, Host {PUBLIC_NAME}, secret", "200",
              _seen(lambda: get(s.urls["B"], {"Host": PUBLIC_NAME, **verify}))),
        Check("B", f"GET {PATH}, Host {PUBLIC_NAME}, no secret", "403",
              _seen(lambda: get(s.urls["B"], {"Host": PUBLIC_NAME}))),
        Check("B", f"GET {PATH}, Host {OTHER_NAME}, secret", "421",
              _seen(lambda: get(s.urls["B"], {"Host": OTHER_NAME, **verify}))),
        Check("C", f"TLS handshake for {PUBLIC_NAME}", TLS_PROTOCOL, _seen(tls_version)),
        Check("C", f"GET {PATH} over HTTPS (the local CA verified)", "200",
              _seen(lambda: s.edge.request("GET", PATH, headers=AUTH)[0])),
    ]  # fmt: skip


# --- main ----------------------------------------------------------------------------------------------


def environment(upstream: str) -> Table:
    table = Table("Environment", ["item", "value"])
    table.add("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("nproc", os.cpu_count())
    table.add("load average (1, 5, 15 min)", ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    table.add("nginx", binary_version([nginx_binary(), "-v"]))
    table.add("wrk", binary_version([require_binary("wrk"), "--version"]))
    openssl = shutil.which("openssl")
    table.add("openssl", binary_version([openssl, "version"]) if openssl else "unknown")
    table.add("python", platform.python_version())
    table.add("upstream", upstream)
    return table


def show(tables: list[Table], table: Table) -> None:
    tables.append(table)
    print("\n" + table.plain() + "\n", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = WrkSettings(threads=args.threads, connections=args.connections, duration=args.duration)
    tables: list[Table] = []
    problems: list[str] = []
    try:
        require_binary("wrk")
        show(tables, environment(args.upstream))
        with run_directory(args.keep, "edge-bench", "configs and logs") as run_dir:
            with stand(run_dir, args.upstream) as s:
                checks = preflight(s)
                show(tables, checks_table("Edge pre-flight: one request each", "target", checks))
                problems += [f"pre-flight {c.target} {c.case}: {c.seen}" for c in checks if not c.passed]
                results: dict[str, list[WrkResult]] = {}
                cpu: dict[str, list[dict[str, float]]] = {}
                if not problems:
                    counters = functools.partial(cpu_now, s.servers)
                    runs = overhead.interleaved(s.urls, args.runs, settings, s.requests, counters=counters)
                    results, cpu = runs.results, runs.counted
                edge_log = read_edge_log(s.edge.access_log.read_text(errors="replace"))
            if results:
                table = results_table(results, settings, args.upstream)
                table.notes.append(
                    f"C, from the edge's access log: {edge_log.requests} requests (warm-up and pre-flight included), "
                    f"protocols {edge_log.protocols}, statuses {edge_log.statuses}, {edge_log.connections} client "
                    f"connections ({edge_log.requests_per_connection:.0f} requests per connection; the edge closes a "
                    "connection after 1000 requests, NGINX's default keepalive_requests, and wrk opens new ones). "
                    "499: requests wrk left unanswered when it stopped a run."
                )
                show(tables, table)
                show(tables, ratios_table(results))
                show(tables, cpu_table(cpu, results, args.duration))
                wrk_runs = args.runs + 1  # the warm-up's too
                problems += wrk_errors(results) + edge_log.problems(closed_allowed=args.connections * wrk_runs)
    except (BenchError, ProcessError) as error:
        print(f"edge_bench: {error}", file=sys.stderr)
        return 2
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(table.markdown() for table in tables))
    if problems:
        print("\nedge_bench: do not trust the tables:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
