"""CPU time per GET and where it goes: the rendered NGINX proxy against HAProxy, each alone on one core.

    python -m bench.cpu_profile                 # about 3 minutes, as root
    python -m bench.cpu_profile --rounds 5 --seconds 10

The layout of table 3b (`bench.proxy_bench --pin`): the static upstream and wrk on CPU 0,
the proxy on CPU 1 with one NGINX worker or one HAProxy thread, both logging every
request. Beside them, not targets, the same NGINX with one part taken out (VARIANTS):
its access log, the retry budget's log phase (no deposits: a budget that only has its
floor), or its request id drawn by NGINX ($request_id, OpenSSL) instead of Lua. In each
round, each proxy in turn gets a 1 s warm-up, then wrk -t1 -c16 sends
authenticated `GET /patients/1` for --seconds while `perf record` samples the proxy's
process (NGINX's one worker). The process's CPU time over the run (user and system,
from /proc) divided by the GETs wrk counted is its CPU time per GET; perf's samples
split that time by the code it ran in: the kernel, the proxy's own binary and modules,
Lua (LuaJIT and the lua modules), njs, libc, and the rest (PCRE, ...). Medians over the
rounds. Unlike bench.instructions, this sees the kernel's share and the cost of every
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import overhead
from bench.proxy_bench import COMMON_NGINX, PINNED
from bench.report import Table
from bench.servers import BenchError, HAProxy, StaticUpstream, require_binary
from local.nginx_proxy import NginxProxy
from local.processes import LoopbackServer

GROUPS = ("kernel", "proxy", "Lua", "njs", "libc", "other")
REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
# A line of `perf report --sort dso`: "    60.96%  [kernel.kallsyms]".
DSO_SHARE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s*$")
SAMPLES_PER_SECOND = 999
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")


# The same rendered proxy with one part taken out: regular expressions on the rendered
# nginx.conf and what replaces their matches.
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "nginx": (),
    "nginx, access log off": ((r"access_log [^;]*hosp_json[^;]*;", "access_log off;"),),
    "nginx, no budget log phase": ((r"log_by_lua_block \{[^}]*\}", ""),),
    "nginx, $request_id": (
        (r"set_by_lua_block \$hosp_new_request_id \{[^}]*\}", "set $hosp_new_request_id $request_id;"),
    ),
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
    """Which of GROUPS the code of `dso` (perf's short name) belongs to, for a proxy whose binary is `binary`."""
    if dso.startswith("[kernel"):
        return "kernel"
    if "luajit" in dso or dso.startswith("[JIT]") or dso in ("ngx_http_lua_module.so", "ndk_http_module.so"):
        return "Lua"  # the NDK module is how set_by_lua hooks into NGINX's `set`
    if dso == "ngx_http_js_module.so":
        return "njs"
    if dso.startswith("libc.so"):
        return "libc"
    if dso == binary or dso.startswith("ngx_"):
        return "proxy"
    return "other"


def shares(report: str, binary: str) -> dict[str, float]:
    """The share of the samples (0 to 1) in each of GROUPS, from `perf report --no-children --sort dso`."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for line in report.splitlines():
        if line.startswith("#") or not (match := DSO_SHARE.match(line)):
            continue
        totals[group(match.group(2), binary)] += float(match.group(1)) / 100
    if not any(totals.values()):
        raise BenchError(f"perf report gave no samples:\n{report}")
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

    def us(self, name: str) -> float:
        return self.cpu_us * self.shares[name]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def profile(url: str, pid: int, binary: str, seconds: int, out: Path) -> Profile:
    """wrk against `url` for `seconds` while perf samples process `pid`."""
    settings = overhead.WrkSettings(duration=seconds, cpus=PINNED.load_cpus)
    overhead.run_wrk(url, dataclasses.replace(settings, duration=1))  # warm-up
    cpus = ",".join(map(str, sorted(PINNED.load_cpus)))
    wrk = [require_binary("taskset"), "--cpu-list", cpus, *overhead.wrk_args(require_binary("wrk"), url, settings)]
    perf = subprocess.Popen(
        [require_binary("perf"), "record", "-q", "-F", str(SAMPLES_PER_SECOND), "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = cpu_seconds(pid)
        done = subprocess.run(wrk, capture_output=True, text=True, check=False, timeout=seconds + 60)
        after = cpu_seconds(pid)
    finally:
        perf.send_signal(signal.SIGINT)
        _, perf_errors = perf.communicate(timeout=60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed on {url}: {done.stderr.strip()}")
    result = overhead.parse_wrk(done.stdout)
    if result.errors:
        raise BenchError(f"wrk got errors from {url}: {result.errors}")
    report = subprocess.run(
        [require_binary("perf"), "report", "-q", "-i", str(out), "--no-children", "--sort", "dso", "--stdio"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if report.returncode != 0:
        raise BenchError(f"perf report failed: {report.stderr.strip() or perf_errors.strip()}")
    count = requests_sent(done.stdout)
    return Profile(result.rps, (after - before) / count * 1e6, shares(report.stdout, binary))


def check_perf() -> None:
    """perf must see the kernel's share and the workers of another user: root, or a permissive kernel."""
    require_binary("perf")
    if os.geteuid() != 0 and int(PARANOID.read_text()) > 1:
        raise BenchError("perf would not see the kernel's share: run as root, or `sysctl kernel.perf_event_paranoid=1`")
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("this bench needs CPUs 0 and 1: one for wrk and the upstream, one for the proxy")


def table(runs: dict[str, list[Profile]], seconds: int) -> Table:
    """Medians per target, with req/s and CPU per GET paired round by round against haproxy's, and what each
    part a variant takes out costs nginx (nginx's CPU per GET minus the variant's, paired)."""
    headers = ["target", "req/s", "req/s vs haproxy", "CPU us per GET", "CPU vs haproxy"]
    headers += [*(f"{g} us" for g in GROUPS), "runs"]
    out = Table(f"CPU time per GET: wrk -t1 -c16 -d{seconds}s, pinned, sampled by perf", headers)
    haproxy = runs["haproxy"]
    cells: dict[str, dict[str, float]] = {}
    for name, profiles in runs.items():
        cells[name] = {g: statistics.median(p.us(g) for p in profiles) for g in GROUPS}
        cpu = statistics.median(p.cpu_us for p in profiles)
        rps = statistics.median(p.rps for p in profiles)
        rps_paired = statistics.median(p.rps / h.rps for p, h in zip(profiles, haproxy, strict=True))
        cpu_paired = statistics.median(p.cpu_us / h.cpu_us for p, h in zip(profiles, haproxy, strict=True))
        row = [f"{rps:.0f}", f"{rps_paired:.2f}x", f"{cpu:.2f}", f"{cpu_paired:.2f}x"]
        out.add(name, *row, *(f"{cells[name][g]:.2f}" for g in GROUPS), len(profiles))
    user = {name: statistics.median(p.cpu_us - p.us("kernel") for p in runs[name]) for name in ("nginx", "haproxy")}
    kernel = cells["nginx"]["kernel"], cells["haproxy"]["kernel"]
    paired = [f"{n.cpu_us / h.cpu_us:.2f}" for n, h in zip(runs["nginx"], haproxy, strict=True)]
    out.notes = [
        f"nginx's CPU per GET against haproxy's round by round: {', '.join(paired)}.",
        f"outside the kernel: nginx {user['nginx']:.2f} us, haproxy {user['haproxy']:.2f} us a GET "
        f"({user['nginx'] - user['haproxy']:+.2f}); in the kernel: {kernel[0]:.2f} against {kernel[1]:.2f} "
        f"({kernel[0] - kernel[1]:+.2f}).",
    ]
    parts = []
    for name, profiles in runs.items():
        if name.startswith("nginx, "):
            cost = statistics.median(n.cpu_us - v.cpu_us for n, v in zip(runs["nginx"], profiles, strict=True))
            parts.append(f"{name.removeprefix('nginx, ')} {cost:+.2f} us")
    if parts:
        out.notes.append(
            "nginx's CPU per GET minus each variant's (what the part taken out costs; paired, median): "
            + "; ".join(parts)
            + "."
        )
    out.notes += [
        "CPU us per GET: the proxy process's user and system time over the run divided by the GETs wrk counted; "
        f"each group's us: that times its share of perf's samples ({SAMPLES_PER_SECOND} a second). Medians of "
        "the runs, each column on its own (they need not add up); vs haproxy: the median of the rounds' ratios.",
        "proxy: nginx with its modules other than Lua and njs, or haproxy; Lua: LuaJIT, its JIT-compiled code and "
        "the lua and NDK modules; other: PCRE, OpenSSL and the rest. "
        "nginx: the rendered nginx.conf, worker_processes 1, JSON access log to a file; haproxy: bench/haproxy.cfg, "
        "nbthread 1, httplog to stdout redirected to a file. Variants (nginx, ...): the same with one part taken "
        "out, not targets: the access log; the retry budget's log phase (no deposits); the request id drawn by "
        "NGINX's $request_id instead of Lua.",
    ]
    return out


def _pid(server: LoopbackServer) -> int:
    if server.process is None:
        raise BenchError(f"{server} has no process")
    return server.process.pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each proxy, alternated (default 3)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each run (default 8)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 2:
        parser.error("--rounds must be at least 1 and --seconds at least 2")
    tuning = dataclasses.replace(COMMON_NGINX, worker_processes=PINNED.workers)
    runs: dict[str, list[Profile]] = {}
    try:
        check_perf()
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, PINNED.load_cpus)  # this process stays off the proxy's core
        with tempfile.TemporaryDirectory(prefix="cpu-profile-") as tmp, contextlib.ExitStack() as stack:
            static = stack.enter_context(StaticUpstream(Path(tmp) / "static"))
            overhead.pin(_pid(static), PINNED.load_cpus)
            targets: dict[str, tuple[str, int, str]] = {}
            for index, (name, edits) in enumerate(VARIANTS.items()):
                nginx = stack.enter_context(
                    EditedProxy(static.address, Path(tmp) / f"nginx-{index}", tuning=tuning, edits=edits)
                )
                overhead.pin(_pid(nginx), PINNED.proxy_cpus)
                (worker,) = nginx.worker_pids()
                targets[name] = (nginx.url, worker, "nginx")
            haproxy = stack.enter_context(HAProxy(static.address, Path(tmp) / "haproxy", threads=PINNED.threads))
            overhead.pin(_pid(haproxy), PINNED.proxy_cpus)
            targets["haproxy"] = (haproxy.url, _pid(haproxy), "haproxy")
            runs = {name: [] for name in targets}
            for round_number in range(1, args.rounds + 1):
                for name, (url, pid, binary) in targets.items():
                    print(f"round {round_number}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                    out = Path(tmp) / f"{len(runs[name])}-{binary}-{list(targets).index(name)}.perf"
                    runs[name].append(profile(url, pid, binary, args.seconds, out))
        os.sched_setaffinity(0, affinity)
    except BenchError as exc:
        print(f"bench.cpu_profile: {exc}", file=sys.stderr)
        return 1
    print(table(runs, args.seconds).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
