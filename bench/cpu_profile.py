"""CPU time per GET and where it goes: the rendered NGINX proxy against HAProxy, each alone on one core.

    python -m bench.cpu_profile                 # a few minutes, as root
    python -m bench.cpu_profile --rounds 5 --seconds 10
    python -m bench.cpu_profile --no-perf --rounds 15 --seconds 3 --variants "empty budget log phase"

The layout of table 3b (`bench.proxy_bench --pin`): the static upstream and wrk on CPU 0,
the proxy on CPU 1 with one NGINX worker or one HAProxy thread, both logging every
request. Beside them, not targets, the same NGINX with one part taken out or replaced
(VARIANTS): its access log; the retry budget's log phase (no deposits: a budget that
only has its floor); the log phase's work (an empty `log_by_lua_block`: the Lua call
alone); its request id drawn by NGINX ($request_id, OpenSSL) instead of an MD5; the
rewrite phase's `if`s; or the request id itself (a constant, not answered). Then NGINX
as a bare proxy with no access log (bench/bare-proxy.conf), what NGINX itself costs,
and HAProxy with no log, what its log line costs it. In each
round, each proxy in turn gets a 1 s warm-up, then wrk -t1 -c16 sends
authenticated `GET /patients/1` for --seconds while `perf record` samples the proxy's
process (NGINX's one worker). The process's CPU time over the run (user and system,
from /proc) divided by the GETs wrk counted is its CPU time per GET; perf's samples
split that time by the code it ran in: the kernel, the proxy's own binary and modules,
Lua (LuaJIT and the lua modules), code compiled at run time, njs, libc, and the rest.
The order of the targets is turned around every other round. Medians over the rounds.
--no-perf leaves perf out (no split by code; nothing but the CPU time and req/s, and no
sampling's own cost), for more, shorter rounds; --variants keeps some of the variants.
Unlike bench.instructions, this sees the kernel's share and the cost of every
instruction (cache misses, mispredicted branches), at the price of the machine's noise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import overhead
from bench.proxy_bench import COMMON_NGINX, PINNED, pin_servers
from bench.report import Table
from bench.servers import BareProxy, BenchError, HAProxy, StaticUpstream
from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from local.processes import ProcessError, system_binary

GROUPS = ("kernel", "proxy", "Lua", "JIT", "njs", "libc", "other")
REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
# A line of `perf report --sort dso`: "    60.96%  [kernel.kallsyms]".
DSO_SHARE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s*$")
SAMPLES_PER_SECOND = 999
PERF_START = 0.3  # seconds for perf to attach before the measured run
WORKER_TIMEOUT = 10.0
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")


# The same rendered proxy with one part taken out: regular expressions on the rendered
# nginx.conf and what replaces their matches.
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "nginx": (),
    "nginx, access log off": ((r"access_log [^;]*hosp_json[^;]*;", "access_log off;"),),
    "nginx, no budget log phase": ((r"log_by_lua_block \{[^}]*\}", ""),),
    "nginx, empty budget log phase": ((r"log_by_lua_block \{[^}]*\}", "log_by_lua_block { }"),),
    "nginx, $request_id": ((r"set_md5 \$hosp_new_request_id [^;]*;", "set $hosp_new_request_id $request_id;"),),
    # The rewrite phase's checks (origin, Host, method) and the route's choices (screen,
    # retryable): a bench GET takes the same way without them.
    "nginx, no rewrite ifs": (
        (r"if \(\$hosp_(?:origin_refused|host_refused|method_known|route|retryable) [^)]*\) \{[^}]*\}", ""),
    ),
    "nginx, no request id": (
        (r"set_md5 \$hosp_new_request_id [^;]*;", "set $hosp_new_request_id 0123456789abcdef0123456789abcdef;"),
        (r"add_header X-Request-Id \$hosp_request_id always;", ""),
    ),
}
# Two more targets, not edits of the rendered file: NGINX as a minimal proxy with no access
# log (bench/bare-proxy.conf), and HAProxy without its log line.
BARE = "nginx, bare proxy"
QUIET_HAPROXY = "haproxy, no log"
# --variants' names: a variant's without "nginx, ", and none with a comma (the option splits on them).
CHOICES = {name.removeprefix("nginx, "): name for name in [*VARIANTS, BARE] if name != "nginx"}
CHOICES["haproxy no log"] = QUIET_HAPROXY
# What each variant of nginx takes out, for the table's notes.
TAKEN_OUT = {
    "nginx, access log off": "the access log",
    "nginx, no budget log phase": "the retry budget's log phase (no deposits)",
    "nginx, empty budget log phase": "the log phase's work (an empty log_by_lua_block: the Lua call alone)",
    "nginx, $request_id": "the request id drawn by NGINX's $request_id (OpenSSL) instead of set_md5",
    "nginx, no rewrite ifs": "the rewrite phase's `if`s (the origin, Host and method checks, the route's choices)",
    "nginx, no request id": "the request id (a constant instead of set_md5, no X-Request-Id in the answer)",
    BARE: "all of the project's configuration, the access log included (bench/bare-proxy.conf: keep-alive both sides)",
}


def edit(config: str, edits: tuple[tuple[str, str], ...]) -> str:
    """`config` with each of `edits` made; a pattern that no longer matches the rendered file is an error."""
    for pattern, replacement in edits:
        config, count = re.subn(pattern, replacement.replace("\\", "\\\\"), config)
        if count == 0:
            raise BenchError(f"no {pattern!r} in the rendered nginx.conf: update bench/cpu_profile.py's VARIANTS")
    return config


@dataclass
class EditedProxy(NginxProxy):
    """The rendered proxy with `edits` made to its nginx.conf."""

    edits: tuple[tuple[str, str], ...] = ()

    def render(self) -> None:
        super().render()
        self.config_path.write_text(edit(self.config_path.read_text(), self.edits))


def group(dso: str, binary: str) -> str:
    """Which of GROUPS the code of `dso` (perf's short name) belongs to, for a proxy whose binary is `binary`.

    "[JIT] tid N" is code a process compiled at run time: LuaJIT's traces or PCRE's compiled
    expressions (`pcre_jit on`), which perf cannot tell apart. Other names in brackets are the
    kernel's ([kernel.kallsyms] and its modules), but for the vDSO and what perf could not name.
    """
    rules = (
        ("JIT", dso.startswith("[JIT]")),
        ("kernel", dso.startswith("[") and dso not in ("[vdso]", "[vsyscall]", "[unknown]")),
        # The NDK module is how set_by_lua hooks into NGINX's `set`.
        ("Lua", "luajit" in dso or dso in ("ngx_http_lua_module.so", "ndk_http_module.so")),
        ("njs", dso == "ngx_http_js_module.so"),
        ("libc", dso.startswith("libc.so")),
        ("proxy", dso == binary or dso.startswith("ngx_")),
    )
    return next((name for name, matches in rules if matches), "other")


def shares(report: str, binary: str) -> dict[str, float]:
    """The share of the samples (0 to 1) in each of GROUPS, from `perf report --no-children --sort dso`."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for line in report.splitlines():
        if line.startswith("#") or not (match := DSO_SHARE.match(line)):
            continue
        totals[group(match.group(2), binary)] += float(match.group(1)) / 100
    if not any(totals.values()):
        raise BenchError(f"perf report gave no samples:\n{report}")
    if not 0.9 <= (total := sum(totals.values())) <= 1.1:
        raise BenchError(f"perf report's shares add up to {total:.0%}, not 100% (more than one event?):\n{report}")
    return totals


def requests_sent(wrk_output: str) -> int:
    match = REQUESTS.search(wrk_output)
    if match is None:
        raise BenchError(f"no 'N requests in' line in wrk's output:\n{wrk_output}")
    return int(match.group(1))


@dataclass(frozen=True)
class Profile:
    """One run of one proxy."""

    rps: float
    cpu_us: float  # the proxy's CPU time per GET, in microseconds
    shares: dict[str, float]  # of that time, by group
    event: str = ""  # what perf sampled on (cpu-clock without a hardware counter)

    @property
    def busy(self) -> float:
        """The share of its core the proxy used over the run."""
        return self.cpu_us * self.rps / 1e6

    def us(self, name: str) -> float:
        return self.cpu_us * self.shares[name]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def perf_binary() -> str:
    try:
        return system_binary("perf", "install with `apt-get install linux-perf` (`make bench-packages` does as root)")
    except ProcessError as exc:
        raise BenchError(str(exc)) from exc


def wrk_result(url: str, done: subprocess.CompletedProcess[str]) -> overhead.WrkResult:
    """wrk's figures, or an error if it failed or got errors."""
    if done.returncode != 0:
        raise BenchError(f"wrk failed on {url}: {done.stderr.strip()}")
    result = overhead.parse_wrk(done.stdout)
    if result.errors:
        raise BenchError(f"wrk got errors from {url}: {result.errors}")
    return result


def timed(wrk: list[str], pid: int, seconds: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """The wrk run of `wrk`, and the CPU seconds process `pid` used while it ran."""
    before = cpu_seconds(pid)
    done = subprocess.run(wrk, capture_output=True, text=True, check=False, timeout=seconds + 60)
    return done, cpu_seconds(pid) - before


def profile(url: str, pid: int, binary: str, seconds: int, out: Path | None) -> Profile:
    """wrk against `url` for `seconds` while perf samples process `pid` into `out`; None: no perf."""
    settings = overhead.WrkSettings(duration=seconds, cpus=PINNED.load_cpus)
    overhead.run_wrk(url, dataclasses.replace(settings, duration=1))  # warm-up
    wrk = overhead.wrk_command(url, settings)
    if out is None:
        done, cpu = timed(wrk, pid, seconds)
        return Profile(wrk_result(url, done).rps, cpu / requests_sent(done.stdout) * 1e6, {})
    perf = perf_binary()
    # -N: no copies of the binaries in ~/.debug.
    record = [perf, "record", "-q", "-N", "-F", str(SAMPLES_PER_SECOND), "-o", str(out), "-p", str(pid)]
    with subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as sampler:
        try:
            time.sleep(PERF_START)
            if sampler.poll() is not None:
                raise BenchError(f"perf record stopped at once: {sampler.communicate()[1].strip()}")
            done, cpu = timed(wrk, pid, seconds)
        finally:
            sampler.send_signal(signal.SIGINT)
            try:
                perf_errors = sampler.communicate(timeout=60)[1] or ""
            except subprocess.TimeoutExpired:
                sampler.kill()
                raise BenchError("perf record did not stop within 60 s of SIGINT") from None
    result = wrk_result(url, done)
    report = subprocess.run(
        [perf, "report", "-q", "-i", str(out), "--no-children", "--sort", "dso", "--stdio"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if report.returncode != 0:
        said = "\n".join(text for text in (perf_errors.strip(), report.stderr.strip()) if text)
        raise BenchError(f"perf report failed: {said}")
    events = subprocess.run([perf, "evlist", "-i", str(out)], capture_output=True, text=True, check=False, timeout=60)
    count = requests_sent(done.stdout)
    split = shares(report.stdout, binary)
    return Profile(result.rps, cpu / count * 1e6, split, events.stdout.strip().replace("\n", ", "))


def one_worker(workers: Callable[[], set[int]], where: Path) -> int:
    """The pid of an NGINX's one worker (`workers()` lists them), once its master has forked it."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    while True:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            if len(pids := workers()) == 1:
                return pids.pop()
        if time.monotonic() > deadline:
            raise BenchError(f"the NGINX in {where} has not one worker after {WORKER_TIMEOUT:g} s")
        time.sleep(0.05)


def check_perf() -> None:
    """perf must see the kernel's share and the workers of another user: root, or a permissive kernel."""
    perf_binary()
    if os.geteuid() != 0 and int(PARANOID.read_text()) > 1:
        raise BenchError("perf would not see the kernel's share: run as root, or `sysctl kernel.perf_event_paranoid=1`")
    check_cpus()


def check_cpus() -> None:
    """One CPU for wrk and the upstream, another for the proxy."""
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("this bench needs CPUs 0 and 1: one for wrk and the upstream, one for the proxy")


def table(runs: dict[str, list[Profile]], seconds: int, started: datetime) -> Table:
    """Medians per target, with req/s and CPU per GET paired round by round against haproxy's, and what each
    part a variant takes out costs nginx (nginx's CPU per GET minus the variant's, paired), by group when
    perf sampled the runs."""
    sampled = all(p.shares for profiles in runs.values() for p in profiles)
    groups = GROUPS if sampled else ()
    headers = ["target", "req/s", "req/s vs haproxy", "CPU us per GET", "CPU vs haproxy", "core busy"]
    headers += [*(f"{g} us" for g in groups), "runs"]
    how = "sampled by perf" if sampled else "not sampled (--no-perf)"
    out = Table(f"CPU time per GET: wrk -t1 -c16 -d{seconds}s, pinned, {how}", headers)
    haproxy = runs["haproxy"]
    for name, profiles in runs.items():
        cpu = statistics.median(p.cpu_us for p in profiles)
        rps = statistics.median(p.rps for p in profiles)
        rps_paired = statistics.median(p.rps / h.rps for p, h in zip(profiles, haproxy, strict=True))
        cpu_paired = statistics.median(p.cpu_us / h.cpu_us for p, h in zip(profiles, haproxy, strict=True))
        busy = statistics.median(p.busy for p in profiles)
        row = [f"{rps:.0f}", f"{rps_paired:.2f}x", f"{cpu:.2f}", f"{cpu_paired:.2f}x", f"{busy:.0%}"]
        out.add(name, *row, *(f"{statistics.median(p.us(g) for p in profiles):.2f}" for g in groups), len(profiles))
    out.notes = [*gap_notes(runs, sampled), *method_notes(runs, sampled, started)]
    return out


def gap_notes(runs: dict[str, list[Profile]], sampled: bool) -> list[str]:
    """nginx against haproxy, and what each variant's part costs nginx, round by round."""
    nginx, haproxy = runs["nginx"], runs["haproxy"]

    def part(profile: Profile, group: str) -> float:
        """Its CPU time per GET in `group`; "all": the whole, "outside": all but the kernel's."""
        if group == "all":
            return profile.cpu_us
        if group == "outside":
            return profile.cpu_us - profile.us("kernel")
        return profile.us(group)

    def gap(group: str, other: list[Profile]) -> str:
        """nginx minus `other` round by round in `group` (see part), as "+a, +b; median +m"."""
        return signed([part(n, group) - part(o, group) for n, o in zip(nginx, other, strict=True)])

    paired = [f"{n.cpu_us / h.cpu_us:.2f}" for n, h in zip(nginx, haproxy, strict=True)]
    against = f"nginx minus haproxy, us a GET round by round: all {gap('all', haproxy)}"
    if sampled:
        against += f"; in the kernel {gap('kernel', haproxy)}; outside it {gap('outside', haproxy)}"
    notes = [f"nginx's CPU per GET against haproxy's round by round: {', '.join(paired)}.", against + "."]
    for name, profiles in runs.items():
        if name.startswith("nginx, ") and name != BARE:
            note = f"what {name.removeprefix('nginx, ')} costs (nginx minus the variant, paired, us a GET): "
            note += gap("all", profiles)
            if sampled:
                note += "; medians by group: " + ", ".join(
                    f"{g} {statistics.median(n.us(g) - v.us(g) for n, v in zip(nginx, profiles, strict=True)):+.2f}"
                    for g in ("kernel", "proxy", "Lua", "JIT", "libc", "other")
                )
            notes.append(note + ".")
    return notes + log_notes(runs)


def signed(values: list[float]) -> str:
    """Round-by-round differences as "+x, +y; median +m"."""
    return f"{', '.join(f'{v:+.2f}' for v in values)}; median {statistics.median(values):+.2f}"


def differences(a: list[Profile], b: list[Profile]) -> str:
    """a's CPU per GET minus b's, round by round, as "+x, +y; median +m"."""
    return signed([x.cpu_us - y.cpu_us for x, y in zip(a, b, strict=True)])


def ratios(a: list[Profile], b: list[Profile]) -> str:
    """a's CPU per GET over b's, round by round, as "x, y; median mx"."""
    values = [x.cpu_us / y.cpu_us for x, y in zip(a, b, strict=True)]
    return f"{', '.join(f'{v:.2f}' for v in values)}; median {statistics.median(values):.2f}x"


def log_notes(runs: dict[str, list[Profile]]) -> list[str]:
    """With the logs taken out: what each proxy's log costs it, the proxies against each other without their
    logs, and what the project's configuration costs over a bare NGINX proxy."""
    notes = []
    if quiet := runs.get(QUIET_HAPROXY):
        notes.append(
            f"what its log costs haproxy (haproxy minus haproxy, no log, paired, us a GET): "
            f"{differences(runs['haproxy'], quiet)}."
        )
        for name in ("nginx, access log off", BARE):
            if name in runs:
                notes.append(
                    f"{name} against haproxy, no log, CPU per GET round by round: {ratios(runs[name], quiet)}."
                )
    if bare := runs.get(BARE):
        notes.append(
            "what the project's configuration costs over a bare proxy, its access log included (nginx minus "
            f"nginx, bare proxy, paired, us a GET): {differences(runs['nginx'], bare)}."
        )
        if quiet_nginx := runs.get("nginx, access log off"):
            notes.append(
                "the same without the access log (nginx, access log off minus nginx, bare proxy, paired, us a GET): "
                f"{differences(quiet_nginx, bare)}."
            )
    return notes


def method_notes(runs: dict[str, list[Profile]], sampled: bool, started: datetime) -> list[str]:
    """How the figures were taken, and what the targets that ran are."""
    per_get = "CPU us per GET: the proxy process's user and system time over the run divided by the GETs wrk counted"
    if sampled:
        events = sorted({p.event for profiles in runs.values() for p in profiles if p.event})
        per_get += (
            f"; each group's us: that times its share of perf's samples ({SAMPLES_PER_SECOND} a second, event "
            f"{', '.join(events) or 'unknown'}). Medians of the runs, each column on its own (they need not add up)"
        )
    else:
        per_get += ". Medians of the runs"
    notes = [per_get + "; vs haproxy: the median of the rounds' ratios; core busy: CPU time per GET times req/s."]
    if sampled:
        notes.append(
            "proxy: nginx with its modules other than Lua and njs, or haproxy; Lua: LuaJIT and the lua and NDK "
            "modules; JIT: code compiled at run time, LuaJIT's traces or PCRE's expressions (perf cannot tell them "
            "apart); other: PCRE, OpenSSL and the rest."
        )
    taken_out = "; ".join(TAKEN_OUT[name] for name in runs if name in TAKEN_OUT)
    variants = (
        f" Variants (nginx, ...): the same with one part taken out, not targets: {taken_out}." if taken_out else ""
    )
    quiet = " haproxy, no log: the same HAProxy with `no log`." if QUIET_HAPROXY in runs else ""
    notes.append(
        "nginx: the rendered nginx.conf, worker_processes 1, JSON access log to a file; haproxy: bench/haproxy.cfg, "
        f"nbthread 1, httplog to stdout redirected to a file.{variants}{quiet} Targets in turn, the order reversed "
        f"every other round; run started {started:%Y-%m-%d %H:%M} UTC."
    )
    return notes


def start_targets(
    stack: contextlib.ExitStack, tmp: Path, upstream: str, tuning: Tuning, variants: list[str]
) -> dict[str, tuple[str, int, str]]:
    """nginx, `variants` (names in CHOICES' values) and haproxy started on the proxy's CPU, in the table's
    order: each one's URL, the pid to measure (NGINX's one worker, HAProxy's process) and its binary."""
    targets: dict[str, tuple[str, int, str]] = {}
    for index, name in enumerate(["nginx", *(v for v in variants if v in VARIANTS or v == BARE)]):
        run_dir = tmp / f"nginx-{index}"
        if name == BARE:
            bare = stack.enter_context(BareProxy(upstream, run_dir))
            pin_servers([(bare, PINNED.proxy_cpus)])
            targets[name] = (bare.url, one_worker(bare.worker_pids, run_dir), "nginx")
        else:
            nginx = stack.enter_context(EditedProxy(upstream, run_dir, tuning=tuning, edits=VARIANTS[name]))
            pin_servers([(nginx, PINNED.proxy_cpus)])
            targets[name] = (nginx.url, one_worker(nginx.worker_pids, run_dir), "nginx")
    for name, log in (("haproxy", True), (QUIET_HAPROXY, False)):
        if name == "haproxy" or name in variants:
            run_dir = tmp / name.replace(", ", "-").replace(" ", "-")
            haproxy = stack.enter_context(HAProxy(upstream, run_dir, threads=PINNED.threads, log=log))
            pin_servers([(haproxy, PINNED.proxy_cpus)])
            assert haproxy.process is not None  # pin_servers has checked
            targets[name] = (haproxy.url, haproxy.process.pid, "haproxy")
    return targets


def measure(tuning: Tuning, rounds: int, seconds: int, variants: list[str], sample: bool) -> dict[str, list[Profile]]:
    """Each target's runs (start_targets), all pinned; the order turned around every other round; sampled by
    perf if `sample`."""
    with tempfile.TemporaryDirectory(prefix="cpu-profile-") as tmp, contextlib.ExitStack() as stack:
        static = stack.enter_context(StaticUpstream(Path(tmp) / "static"))
        pin_servers([(static, PINNED.load_cpus)])
        targets = start_targets(stack, Path(tmp), static.address, tuning, variants)
        # This process too stays off the proxy's core while it measures.
        stack.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
        os.sched_setaffinity(0, PINNED.load_cpus)
        runs: dict[str, list[Profile]] = {name: [] for name in targets}
        for round_number in range(1, rounds + 1):
            order = list(targets) if round_number % 2 else list(reversed(targets))
            for name in order:
                url, pid, binary = targets[name]
                print(f"round {round_number}/{rounds}: {name} ...", file=sys.stderr, flush=True)
                out = Path(tmp) / f"{round_number}-{list(targets).index(name)}.perf" if sample else None
                runs[name].append(profile(url, pid, binary, seconds, out))
        return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each proxy, alternated (default 3)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each run (default 8)")
    parser.add_argument("--no-perf", action="store_true", help="CPU time and req/s only, no split by code")
    parser.add_argument(
        "--variants",
        default=",".join(CHOICES),
        help=f"the variants beside nginx and haproxy, comma-separated (default all: {', '.join(CHOICES)})",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 2:
        parser.error("--rounds must be at least 1 and --seconds at least 2")
    named = [name.strip() for name in args.variants.split(",") if name.strip()]
    if unknown := [name for name in named if name not in CHOICES]:
        parser.error(f"no variant {', '.join(map(repr, unknown))}; there are: {', '.join(CHOICES)}")
    variants = [CHOICES[name] for name in dict.fromkeys(named)]
    tuning = dataclasses.replace(COMMON_NGINX, worker_processes=PINNED.workers)
    started = datetime.now(UTC)
    try:
        if args.no_perf:
            check_cpus()
        else:
            check_perf()
        runs = measure(tuning, args.rounds, args.seconds, variants, sample=not args.no_perf)
    except (BenchError, ProcessError) as exc:
        print(f"bench.cpu_profile: {exc}", file=sys.stderr)
        return 1
    print(table(runs, args.seconds, started).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
