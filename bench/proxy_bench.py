"""The proxy benchmark: the project's NGINX retry proxy side by side with HAProxy.

    python -m bench.proxy_bench            # or: make bench
    python -m bench.proxy_bench --help

One run prints, as plain text while it goes and as markdown at the end:
  0. pre-flight checks: scripted faults prove 3 attempts per GET, 1 per POST, on both;
  1. reliability under seeded faults: client-visible failures next to the realized
     floor (what a perfect 3-try proxy fails on the same fault sequence);
  2. a retry storm under a full outage: upstream requests per client request;
  the retry budget's three tables (bench/budget_bench.py): a long outage, 20% faults at
     30 and 300 GETs/s, and a flood of failing GETs beside a second user;
  3. overhead: wrk against a static upstream, directly and through each proxy.
Traffic goes to 127.0.0.1 only; every series is bounded in count and time.
See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import budget_bench, overhead, reliability
from bench.floor import fault_config
from bench.reliability import GetCell, PostCell, Series, StormResult, Target
from bench.report import Table, ratio
from bench.servers import BenchError, HAProxy, StaticUpstream, binary_version, require_binary
from bench.toolkit import checks_table, run_directory
from infra.nginx.render import Tuning
from local.hosp_standin.process import StandInProcess as StandIn
from local.nginx_proxy import NginxProxy, nginx_binary
from local.processes import LoopbackServer, ProcessError, connections_held

TRIES = 3
TRY_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
# A budget that never binds: the renderer's largest ratio and floor.
UNBOUND_RATIO, UNBOUND_FLOOR = 10.0, 100_000.0
SERIES_TIME_LIMIT = 120.0  # seconds; requests not started by then are skipped and reported
COMMON_NGINX = Tuning(tries=TRIES, try_timeout=TRY_TIMEOUT, connect_timeout=CONNECT_TIMEOUT)
SECTIONS = ("reliability", "storm", "budget", "overhead")


@dataclass
class Report:
    tables: list[Table] = field(default_factory=list)
    failed_checks: int = 0
    targets: Table = field(default_factory=lambda: Table("Targets", ["target", "measured", "met"]))

    def show(self, table: Table) -> None:
        self.tables.append(table)
        print("\n" + table.plain() + "\n", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.proxy_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=2024, help="seed of the stand-in's faults (default 2024)")
    p.add_argument("--rates", default="0,10,20,30", help="upstream fault rates in %% (default 0,10,20,30)")
    p.add_argument(
        "--gets",
        type=int,
        default=600,
        help="GETs per series (default 600: the stand-in's 1000-request log still attributes 600 at 30%% faults)",
    )
    p.add_argument("--posts", type=int, default=200, help="POSTs per series (default 200)")
    p.add_argument("--repeats", type=int, default=5, help="seeded series per cell, seeds SEED.. (default 5)")
    p.add_argument("--workers", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--storm", type=int, default=300, help="client GETs in the outage table (default 300)")
    p.add_argument("--wrk-runs", type=int, default=5, help="wrk runs per overhead target (default 5)")
    p.add_argument("--wrk-duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument(
        "--pin",
        action="store_true",
        help="table 3: wrk and the upstream on CPU 0, each proxy on CPU 1, as a proxy alone on its instance "
        "(default: any CPU for all)",
    )
    p.add_argument("--sections", default=",".join(SECTIONS), help="which tables (default: all)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs and logs)")
    return p.parse_args(argv)


def environment() -> Table:
    table = Table("Environment", ["item", "value"])
    table.add("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("nproc", os.cpu_count())
    table.add("nginx", binary_version([nginx_binary(), "-v"]))
    table.add("haproxy", binary_version([require_binary("haproxy"), "-v"]))
    table.add("wrk", binary_version([require_binary("wrk"), "--version"]))
    table.add("python", platform.python_version())
    return table


# --- 0 and 1: checks and reliability -------------------------------------------------------

PREFLIGHT_TITLE = "Pre-flight: scripted faults (stand-in script), one request each"


def reliability_row(table: Table, label: list[str], get: GetCell, post: PostCell) -> None:
    sent = max(get.sent, 1)
    attributed = get.attributed
    table.add(
        *label,
        get.failures,
        get.floor,
        ratio(get.failures, get.floor),
        get.attributed_floor if attributed else "n/a",
        ratio(get.failures, get.attributed_floor) if attributed else "n/a",
        f"{get.upstream / sent:.3f}",
        f"{get.floor_upstream / sent:.3f}",
        f"{get.short}/{get.extra}" if attributed else "n/a",
        f"{post.upstream / max(post.sent, 1):.2f}",
        f"{post.failures}/{post.sent}",
    )


def measure_cell(
    standin: StandIn, target: Target, rate: int, workers: int, args: argparse.Namespace
) -> tuple[GetCell, PostCell]:
    """All seeded series of one cell, summed."""
    series = Series(args.gets, args.posts, time_limit=SERIES_TIME_LIMIT, tries=TRIES)
    get, post = GetCell(), PostCell()
    for seed in range(args.seed, args.seed + args.repeats):
        faults = fault_config(rate / 100, seed)
        get += reliability.measure_gets(standin, target, faults, workers, series)
        post += reliability.measure_posts(standin, target, faults, workers, series)
    return get, post


@dataclass(frozen=True)
class Cell:
    rate: int
    workers: int
    proxy: str
    get: GetCell
    post: PostCell


def reliability_table(standin: StandIn, targets: list[Target], args: argparse.Namespace) -> tuple[Table, list[Cell]]:
    headers = ["faults", "clients", "proxy", "GET fails", "floor", "fails/floor", "attr. floor", "fails/attr.",
               "upstream/GET", "floor upstream/GET", "short/extra", "POST upstream/sent", "POST fails"]  # fmt: skip
    per_cell = f"{args.repeats} x {args.gets} GETs and {args.repeats} x {args.posts} POSTs per cell"
    table = Table(f"1. Reliability under seeded faults ({per_cell})", headers)
    cells = []
    for rate in (int(r) for r in args.rates.split(",")):
        for workers in (1, args.workers):
            for target in targets:
                get, post = measure_cell(standin, target, rate, workers, args)
                cells.append(Cell(rate, workers, target.name, get, post))
                reliability_row(table, [f"{rate}%", str(workers), target.name], get, post)
                skipped = get.skipped + post.skipped
                print(f"  {rate}% x{workers} {target.name}: {get.failures} GET fails (floor {get.floor}, "
                      f"attributed {get.attributed_floor}), GETs took {get.seconds:.1f} s"
                      + (f", {skipped} SKIPPED (time limit)" if skipped else ""), flush=True)  # fmt: skip
    table.notes += reliability_notes(args)
    return table, cells


def reliability_targets(report: Report, cells: list[Cell]) -> None:
    """(a) nginx's GET failures against the floor, (b) POSTs upstream per POST sent."""
    for workers in sorted({c.workers for c in cells}):
        mine = [c.get for c in cells if c.proxy == "nginx" and c.workers == workers]
        fails = sum(g.failures for g in mine)
        floor = sum(g.floor if workers == 1 else g.attributed_floor for g in mine)
        kind = "replay floor (exact)" if workers == 1 else "attributed floor"
        report.targets.add(
            f"(a) nginx GET fails = 1.00x floor, {workers} client(s)",
            f"{fails} vs {floor} ({kind}): {ratio(fails, floor)}",
            "yes" if fails == floor else "no",
        )
    for proxy in sorted({c.proxy for c in cells}, reverse=True):
        posts = [c.post for c in cells if c.proxy == proxy]
        worst = max(p.upstream / max(p.sent, 1) for p in posts)
        met = all(p.upstream == p.sent for p in posts)
        report.targets.add(
            f"(b) {proxy} POSTs upstream per POST sent = 1.00", f"max {worst:.2f}", "yes" if met else "no"
        )


def reliability_notes(args: argparse.Namespace) -> list[str]:
    seeds = f"{args.seed}..{args.seed + args.repeats - 1}"
    return [
        "faults: the rate is split evenly among 500, 502, 503, 504 and connection reset (each rate/5); "
        f"one series per seed {seeds}; the stand-in is reset (k = 0) before every series, so both proxies "
        "face the same fault sequence.",
        "floor: a perfect 3-try proxy replayed on the seeded outcome sequence (outcome_for) in arrival order, "
        "each request taking outcomes until one is ok or 3 failed, over the same number of client requests. "
        f"Exact for 1 client. With {args.workers} clients the attempts of concurrent requests interleave, so "
        "which request draws which outcome depends on timing: the replay floor is then the floor of the same "
        "sequence served one request at a time (same expectation, not the same realization).",
        "attr. floor: the floor of the interleaving that really happened, from the stand-in's request log "
        "grouped by X-Request-Id (requests whose first 3 attempts all failed); exact for any concurrency.",
        "short/extra: failed requests tried fewer than 3 times / requests tried more than 3 times (0 for a "
        "proxy that always makes its 3 tries; 'short' counts the budget's refusals for nginx+budget).",
        f"nginx: rendered with tries {TRIES}, try timeout {TRY_TIMEOUT:g} s, connect {CONNECT_TIMEOUT:g} s and "
        f"a retry budget of ratio {UNBOUND_RATIO:g} and floor {UNBOUND_FLOOR:g}/s, so the budget never binds. "
        f"nginx+budget: the same with the default budget (ratio {COMMON_NGINX.retry_budget_ratio:g}, floor "
        f"{COMMON_NGINX.retry_budget_floor:g}/s, window {COMMON_NGINX.retry_budget_window:g} s): it lets through "
        "every retry of a 20% fault rate (0.24 attempts per request) and binds at 30% (0.39) once the floor is "
        "spent: what the default refuses, at a few hundred requests per second from one user. "
        f"haproxy: retries {TRIES - 1} (3 attempts), timeout connect/server {CONNECT_TIMEOUT:g}/{TRY_TIMEOUT:g} s.",
    ]


# --- 2: the retry storm -------------------------------------------------------------------------


def storm_row(table: Table, name: str, result: StormResult, bound: float | None, rejected: str) -> None:
    sent = max(result.run.sent, 1)
    bound_text = f"{bound / sent:.3f} ({bound:.0f})" if bound is not None else f"{TRIES:.3f} (no budget)"
    within = "yes" if bound is None or result.upstream <= bound else "NO"
    table.add(name, result.run.sent, f"{result.run.elapsed:.2f}", result.upstream,
              f"{result.upstream / sent:.3f}", bound_text, within, rejected)  # fmt: skip


def storm_table(standin: StandIn, haproxy: HAProxy, run_dir: Path, args: argparse.Namespace) -> Table:
    headers = [
        "proxy",
        "client GETs",
        "seconds",
        "upstream",
        "upstream/GET",
        "bound/GET (total)",
        "within",
        "budget 503s",
    ]
    table = Table(f"2. Retry storm: full outage, {args.storm} GETs from {args.workers} clients", headers)
    with NginxProxy(standin.address, run_dir / "nginx-storm", tuning=COMMON_NGINX) as nginx:
        result = reliability.measure_storm(standin, Target("nginx", nginx.url), args.seed, args.storm, args.workers)
        rejected = nginx.access_log.read_text().count('"retry_budget":"REJECTED"')
    seconds = result.run.elapsed
    t = COMMON_NGINX
    bound = reliability.budget_bound(
        result.run.sent,
        TRIES,
        ratio=t.retry_budget_ratio,
        floor=t.retry_budget_floor,
        window=t.retry_budget_window,
        seconds=seconds,
    )
    storm_row(table, "nginx", result, bound, str(rejected))
    result = reliability.measure_storm(standin, Target("haproxy", haproxy.url), args.seed, args.storm, args.workers)
    storm_row(table, "haproxy", result, None, "n/a")
    table.notes += [
        f"nginx with its DEFAULT budget (ratio {t.retry_budget_ratio:g}, floor {t.retry_budget_floor:g}/s, window "
        f"{t.retry_budget_window:g} s); bound from docs/proxy.md: R x (1 + ratio) + floor x (W + T) + tries - 2, "
        "T = the seconds column. A storm this short is mostly the floor's reserve; "
        "`make bench-budget` measures a long outage.",
        "haproxy 2.6 has no retry budget: every failed GET is tried 3 times.",
    ]
    return table


def reliability_and_storm(run_dir: Path, args: argparse.Namespace, sections: set[str], report: Report) -> None:
    with contextlib.ExitStack() as stack:
        standin = stack.enter_context(StandIn(run_dir, args.seed))
        unbound = dataclasses.replace(COMMON_NGINX, retry_budget_ratio=UNBOUND_RATIO, retry_budget_floor=UNBOUND_FLOOR)
        nginx = stack.enter_context(NginxProxy(standin.address, run_dir / "nginx-reliability", tuning=unbound))
        budgeted = stack.enter_context(NginxProxy(standin.address, run_dir / "nginx-budget", tuning=COMMON_NGINX))
        haproxy = stack.enter_context(HAProxy(standin.address, run_dir / "haproxy-reliability"))
        targets = [Target("nginx", nginx.url), Target("nginx+budget", budgeted.url), Target("haproxy", haproxy.url)]
        checks = reliability.run_checks(standin, targets, args.seed)
        report.failed_checks = sum(not c.passed for c in checks)
        report.show(checks_table(PREFLIGHT_TITLE, "proxy", checks))
        if "reliability" in sections:
            table, cells = reliability_table(standin, targets, args)
            report.show(table)
            reliability_targets(report, cells)
        if "storm" in sections:
            report.show(storm_table(standin, haproxy, run_dir, args))


# --- the retry budget: outage, traffic scaling, fairness (bench/budget_bench.py) ------------------


def budget_tables(run_dir: Path, report: Report) -> None:
    """bench.budget_bench's three tables with its defaults, and their targets in this run's."""
    run_dir.mkdir()
    budget_args = budget_bench.parse_args([])
    _, targets = budget_bench.run(run_dir, budget_args, set(budget_bench.SECTIONS), show=report.show)
    for target, measured, met in targets:
        report.targets.add(target, measured, "yes" if met else "NO")


# --- 3: overhead ----------------------------------------------------------------------------------


# Table 3's targets: GETs (the rows since the first run), then writes, each against its own direct row.
# "haproxy POST, new conn": HAProxy sending each write over a new server connection, as ours does.
GET_TARGETS = ("direct", "nginx", "haproxy")
WRITE_TARGETS = ("direct POST", "nginx POST", "haproxy POST", "haproxy POST, new conn")


@dataclass(frozen=True)
class Layout:
    """How many cores each proxy has, and its processes or threads (docs/benchmarks.md, "(c)").

    Each proxy is sized to the cores it may use, as NGINX's `worker_processes auto` and
    HAProxy's default do; `other` is the same NGINX with the other worker count, not a target.
    """

    load_cpus: frozenset[int]  # wrk and the upstream; empty: any
    proxy_cpus: frozenset[int]  # each proxy; empty: any
    workers: str  # NGINX's worker_processes
    threads: int  # HAProxy's nbthread
    other_workers: str

    @property
    def other(self) -> str:
        return f"nginx, {self.other_workers} worker{'s' if self.other_workers != '1' else ''}"

    def describe(self, workers_here: int) -> str:
        if not self.proxy_cpus:
            return f"all on any CPU; nginx worker_processes auto ({workers_here} here), haproxy nbthread {self.threads}"
        return (
            "pinned: wrk and the upstream on CPU 0, each proxy on CPU 1, sized for one core: "
            "nginx worker_processes 1, haproxy nbthread 1"
        )


SHARED = Layout(frozenset(), frozenset(), workers="auto", threads=2, other_workers="1")
PINNED = Layout(frozenset({0}), frozenset({1}), workers="1", threads=1, other_workers="2")


def overhead_table(run_dir: Path, args: argparse.Namespace) -> tuple[Table, dict[str, overhead.Summary]]:
    layout = PINNED if args.pin else SHARED
    settings = overhead.WrkSettings(duration=args.wrk_duration, cpus=layout.load_cpus)
    tuning = dataclasses.replace(COMMON_NGINX, worker_processes=layout.workers)
    other_tuning = dataclasses.replace(COMMON_NGINX, worker_processes=layout.other_workers)
    with contextlib.ExitStack() as stack:
        static = stack.enter_context(StaticUpstream(run_dir / "static"))
        nginx = stack.enter_context(NginxProxy(static.address, run_dir / "nginx-overhead", tuning=tuning))
        haproxy = stack.enter_context(HAProxy(static.address, run_dir / "haproxy-overhead", threads=layout.threads))
        fresh = stack.enter_context(
            overhead.HAProxyFreshWrites(static.address, run_dir / "haproxy-fresh-writes", threads=layout.threads)
        )
        other = stack.enter_context(NginxProxy(static.address, run_dir / "nginx-other", tuning=other_tuning))
        if layout.proxy_cpus:
            proxies = (nginx, haproxy, fresh, other)
            pin_servers([(static, layout.load_cpus), *((proxy, layout.proxy_cpus) for proxy in proxies)])
            # This process too: its probes must not take the proxies' core.
            affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, layout.load_cpus)
            stack.callback(os.sched_setaffinity, 0, affinity)
        workers_here = len(nginx.worker_pids())
        urls = [static.url, nginx.url, haproxy.url]
        targets = {
            **dict(zip(GET_TARGETS, urls, strict=True)),
            layout.other: other.url,
            **dict(zip(WRITE_TARGETS, [*urls, fresh.url], strict=True)),
        }
        requests = dict.fromkeys(WRITE_TARGETS, overhead.WRITE_REQUEST)
        # Every target is probed alike (the same reading of the kernel's socket tables), so
        # that the probe costs each the same.
        by_target = {"direct": static, "nginx": nginx, "haproxy": haproxy, layout.other: other}
        by_target |= dict(zip(WRITE_TARGETS, (static, nginx, haproxy, fresh), strict=True))
        probes = {name: functools.partial(connection_split, server) for name, server in by_target.items()}
        runs = overhead.interleaved(targets, args.wrk_runs, settings, requests, probes=probes)
        results = runs.results
        log_lines = {"nginx": _lines(nginx.access_log), "haproxy": _lines(haproxy.access_log)}
    summaries = {name: overhead.summarize(runs) for name, runs in results.items()}
    table = _overhead_rows(summaries, log_lines, settings, layout, workers_here)
    paired = _paired(results, "nginx", "haproxy")
    paired_other = _paired(results, layout.other, "haproxy")
    paired_writes = _paired(results, "nginx POST", "haproxy POST")
    paired_fresh = _paired(results, "nginx POST", "haproxy POST, new conn")
    two_workers = "nginx" if layout.workers != "1" else layout.other
    table.notes[1:1] = [
        f"nginx/haproxy req/s round by round (paired, same noise): {_ratios(paired)}.",
        f"{two_workers} GET p99 by round, with how its workers shared wrk's {settings.connections} "
        f"connections, most even first: {p99_by_split(results[two_workers], runs.probed[two_workers])}; "
        f"haproxy's p99 round by round: {', '.join(f'{r.p99_ms:.2f}' for r in results['haproxy'])} ms.",
        f"{layout.other}: the same proxy with `worker_processes {layout.other_workers}`; not a target. "
        f"req/s against haproxy round by round: {_ratios(paired_other)}; p99 round by round: "
        f"{', '.join(f'{r.p99_ms:.2f}' for r in results[layout.other])} ms.",
        f"writes, nginx POST/haproxy POST round by round: {_ratios(paired_writes)}; "
        f"nginx POST/haproxy POST, new conn: {_ratios(paired_fresh)}.",
    ]
    return table, summaries


def pin_servers(servers: list[tuple[LoopbackServer, frozenset[int]]]) -> None:
    """Each server's processes and threads on its CPUs (--pin)."""
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("pinning needs CPUs 0 and 1: one for wrk and the upstream, one for the proxy")
    for server, cpus in servers:
        if server.process is None:
            raise BenchError(f"{server} has no process to pin")
        overhead.pin(server.process.pid, cpus)


def connection_split(server: LoopbackServer) -> str:
    """The client connections each process of the server holds during a run: "connections 9+7" for
    two NGINX workers, "connections 16" for one process (HAProxy's threads share theirs); the
    processes are the server's and its children. The static upstream's one worker also holds the
    proxies' idle keep-alive connections to it, so its count can be over wrk's."""
    if server.process is None:
        return "connections 0"
    try:
        children = [child.pid for child in psutil.Process(server.process.pid).children()]
    except psutil.Error:  # ended: it holds nothing
        children = []
    held = connections_held((server.process.pid, *children), server.port)
    return "connections " + ("+".join(map(str, held)) or "0")


def p99_by_split(results: list[overhead.WrkResult], splits: list[str]) -> str:
    """ "9+7: 2.05 ms, ..., 16: 1.85 ms", sorted by the largest share of one process (16: all on one)."""

    def largest(split: str) -> int:
        return max(map(int, split.split()[1].split("+")))

    rounds = sorted(zip(splits, results, strict=True), key=lambda pair: largest(pair[0]))
    return ", ".join(f"{split.split()[1]}: {result.p99_ms:.2f} ms" for split, result in rounds)


def _paired(results: dict[str, list[overhead.WrkResult]], top: str, bottom: str) -> list[float]:
    return [a.rps / b.rps for a, b in zip(results[top], results[bottom], strict=True)]


def _ratios(values: list[float]) -> str:
    listed = ", ".join(f"{v:.2f}" for v in values)
    return f"{listed}; median {statistics.median(values):.2f}x"


def _added(summaries: dict[str, overhead.Summary], name: str) -> tuple[float, float]:
    """A target's p50 and p99 minus those of its direct row (GETs: direct; writes: direct POST)."""
    direct = summaries["direct POST" if name in WRITE_TARGETS else "direct"]
    s = summaries[name]
    return s.p50_ms - direct.p50_ms, s.p99_ms - direct.p99_ms


def overhead_targets(report: Report, summaries: dict[str, overhead.Summary]) -> None:
    """(c) nginx's throughput at least haproxy's, its added p50 and p99 at most haproxy's; (d) the same for writes."""
    for label, ours, theirs in (("(c)", "nginx", "haproxy"), ("(d) writes:", "nginx POST", "haproxy POST")):
        nginx, haproxy = summaries[ours], summaries[theirs]
        report.targets.add(
            f"{label} {ours} req/s >= {theirs} req/s",
            f"{nginx.rps / haproxy.rps:.2f}x",
            "yes" if nginx.rps >= haproxy.rps else "no",
        )
        (p50_nginx, p99_nginx), (p50_haproxy, p99_haproxy) = _added(summaries, ours), _added(summaries, theirs)
        report.targets.add(
            f"{label} {ours} added p50 <= {theirs} added p50",
            f"{p50_nginx:+.3f} ms vs {p50_haproxy:+.3f} ms",
            "yes" if p50_nginx <= p50_haproxy else "no",
        )
        report.targets.add(
            f"{label} {ours} added p99 <= {theirs} added p99",
            f"{p99_nginx:+.3f} ms vs {p99_haproxy:+.3f} ms",
            "yes" if p99_nginx <= p99_haproxy else "no",
        )


def _overhead_rows(
    summaries: dict[str, overhead.Summary],
    log_lines: dict[str, int],
    settings: overhead.WrkSettings,
    layout: Layout,
    workers_here: int,
) -> Table:
    headers = ["target", "req/s (median)", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "runs", "wrk errors"]
    title = f"3. Overhead: wrk -t{settings.threads} -c{settings.connections} -d{settings.duration}s, static upstream"
    if layout.proxy_cpus:
        title += ", pinned (wrk and the upstream on CPU 0, each proxy on CPU 1)"
    table = Table(title, headers)
    for name, s in summaries.items():
        if name in ("direct", "direct POST"):
            added = ("-", "-")
        else:
            added = tuple(f"{value:+.3f}" for value in _added(summaries, name))  # type: ignore[assignment]
        table.add(
            name, f"{s.rps:.0f}", f"{s.p50_ms:.3f}", f"{s.p99_ms:.3f}", *added, s.runs, "; ".join(s.errors) or "none"
        )
    direct, nginx, haproxy = summaries["direct"], summaries["nginx"], summaries["haproxy"]
    notes = [
        f"throughput nginx/haproxy (ratio of the medians): {nginx.rps / haproxy.rps:.2f}x; "
        f"nginx/direct {nginx.rps / direct.rps:.2f}x, "
        f"haproxy/direct {haproxy.rps / direct.rps:.2f}x.",
    ]
    if all(name in summaries for name in WRITE_TARGETS):
        d, n, h, f = (summaries[name] for name in WRITE_TARGETS)
        notes.append(
            f"writes (ratio of the medians): nginx POST/haproxy POST {n.rps / h.rps:.2f}x, "
            f"nginx POST/haproxy POST, new conn {n.rps / f.rps:.2f}x; nginx POST/direct POST {n.rps / d.rps:.2f}x."
        )
    table.notes += notes
    table.notes += [
        "upstream: NGINX, 1 worker, `return 200 '{\"ok\":true}'`; proxies: our rendered nginx.conf "
        "(JSON access log to a file) vs bench/haproxy.cfg (httplog to stdout, redirected to a file); keep-alive "
        f"on both sides. CPUs: {layout.describe(workers_here)}. Runs interleaved (direct, nginx, haproxy, ...) "
        "after a 1 s warm-up of each; medians of the runs.",
        "GET rows: authenticated `GET /patients/1`. POST rows: authenticated `POST /notes` with a JSON body "
        f"({len(overhead.WRITE_REQUEST.body)} bytes), sent by a wrk script; added p50/p99 against direct POST. "
        "nginx sends each write over a new connection to the upstream (docs/proxy.md); haproxy POST is "
        "bench/haproxy.cfg (`http-reuse safe`: a client connection's later writes reuse its server connection); "
        "haproxy POST, new conn: the same with writes routed to a backend with `option http-server-close`.",
        f"access log lines written: nginx {log_lines['nginx']}, haproxy {log_lines['haproxy']}.",
    ]
    return table


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


# --- main -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = set(args.sections.split(","))
    report = Report()
    try:
        for tool in ("haproxy", "wrk"):
            require_binary(tool)
        report.show(environment())
        with run_directory(args.keep, "proxy-bench", "configs and logs") as run_dir:
            reliability_and_storm(run_dir, args, sections, report)
            if "budget" in sections:
                budget_tables(run_dir / "budget", report)
            if "overhead" in sections:
                table, summaries = overhead_table(run_dir, args)
                report.show(table)
                overhead_targets(report, summaries)
        if report.targets.rows:
            report.show(report.targets)
    except (BenchError, ProcessError) as error:
        print(f"proxy_bench: {error}", file=sys.stderr)
        return 2
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(table.markdown() for table in report.tables))
    if report.failed_checks:
        print(
            f"\nproxy_bench: {report.failed_checks} pre-flight check(s) FAILED: do not trust the tables",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
