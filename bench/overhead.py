"""Table 3: wrk against a static upstream directly and through each proxy, runs interleaved.

run_wrk and parse_wrk serve bench.edge_bench too, with a request of its own (WrkRequest).
A request with another method or a body (table 3's writes) is sent by a wrk script."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psutil

from bench.clients import AUTH, NOTE
from bench.servers import BenchError, HAProxy, require_binary

WRK_PATH = "/patients/1"
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKET_ERRORS = re.compile(r"Socket errors:\s+(.*)")


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str  # "" when wrk reported neither non-2xx answers nor socket errors


@dataclass(frozen=True)
class WrkSettings:
    threads: int = 1
    connections: int = 16
    duration: int = 5
    cpus: frozenset[int] = frozenset()  # the CPUs wrk may run on; empty: any


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Keep process `pid`, each of its threads and each of its children (an NGINX master's
    workers, say) on `cpus`."""
    process = psutil.Process(pid)
    for each in (process, *process.children(recursive=True)):
        try:
            threads = each.threads()
        except psutil.NoSuchProcess:
            continue
        for thread in threads:
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                os.sched_setaffinity(thread.id, cpus)


@dataclass(frozen=True)
class WrkRequest:
    """What wrk sends besides the credentials: the path and any other headers (a Host replaces wrk's own);
    a method other than GET, or a body, goes in a wrk script (wrk_script)."""

    path: str = WRK_PATH
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    body: str = ""

    @property
    def scripted(self) -> bool:
        return self.method != "GET" or bool(self.body)


DEFAULT_REQUEST = WrkRequest()
# Table 3's write: a note as HOSP's clients post it, a JSON body of about 80 bytes.
WRITE_PATH = "/notes"
WRITE_REQUEST = WrkRequest(WRITE_PATH, (("Content-Type", "application/json"),), "POST", json.dumps(NOTE))


def lua_string(text: str) -> str:
    """A Lua string literal holding `text` exactly (a long bracket that the text cannot close)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]" if text else '""'


def wrk_script(request: WrkRequest) -> str:
    """The wrk script that sets the method and the body of every request."""
    return f"wrk.method = {lua_string(request.method)}\nwrk.body = {lua_string(request.body)}\n"


def percentile_ms(output: str, percent: int) -> float:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        raise BenchError(f"no {percent}% latency line in wrk's output:\n{output}")
    return float(match.group(1)) * UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = RPS.search(output)
    if not rps:
        raise BenchError(f"no Requests/sec line in wrk's output:\n{output}")
    errors = [m.group(0) for m in (NON_2XX.search(output), SOCKET_ERRORS.search(output)) if m]
    return WrkResult(float(rps.group(1)), percentile_ms(output, 50), percentile_ms(output, 99), "; ".join(errors))


def wrk_args(
    wrk: str, url: str, settings: WrkSettings, request: WrkRequest = DEFAULT_REQUEST, script: str | None = None
) -> list[str]:
    """wrk's command line; `script`: the path of wrk_script(request), for a scripted request."""
    args = [
        wrk, f"-t{settings.threads}", f"-c{settings.connections}", f"-d{settings.duration}s", "--latency",
        # As every HOSP client does: without credentials a request is not retried,
        # and the proxy sends it over a new connection (docs/proxy.md).
        "-H", f"Authorization: {AUTH['Authorization']}",
    ]  # fmt: skip
    for name, value in request.headers:
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", script]
    return [*args, url + request.path]


def wrk_command(
    url: str, settings: WrkSettings, request: WrkRequest = DEFAULT_REQUEST, script: str | None = None
) -> list[str]:
    """wrk's command line on the machine, kept to settings.cpus (by util-linux's taskset, on every
    Debian system) when any are given; `script` as for wrk_args."""
    args = wrk_args(require_binary("wrk"), url, settings, request, script)
    if settings.cpus:
        args = [require_binary("taskset"), "--cpu-list", ",".join(map(str, sorted(settings.cpus))), *args]
    return args


def run_wrk(
    url: str, settings: WrkSettings, request: WrkRequest = DEFAULT_REQUEST, during: Callable[[], None] | None = None
) -> WrkResult:
    """One wrk run; `during`, if given, is called once a second into the run (half the run if shorter),
    while every connection is open."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="wrk-") as script:
        if request.scripted:
            script.write(wrk_script(request))
            script.flush()
        args = wrk_command(url, settings, request, script.name if request.scripted else None)
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as wrk:
            try:
                if during is not None:
                    time.sleep(min(1.0, settings.duration / 2))
                    during()
                stdout, stderr = wrk.communicate(timeout=settings.duration + 60)
            finally:
                wrk.kill()
    if wrk.returncode != 0:
        raise BenchError(f"wrk failed on {url}: {stderr.strip()}")
    return parse_wrk(stdout)


@dataclass(frozen=True)
class Summary:
    """Medians over the runs of one target."""

    rps: float
    p50_ms: float
    p99_ms: float
    runs: int
    errors: list[str]


def summarize(results: Sequence[WrkResult]) -> Summary:
    return Summary(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        runs=len(results),
        errors=[r.errors for r in results if r.errors],
    )


@dataclass
class Interleaved:
    """wrk's results by target, in run order; with counters, their change over each run too;
    with probes, what each target's probe read during each run."""

    results: dict[str, list[WrkResult]]
    counted: dict[str, list[dict[str, float]]]
    probed: dict[str, list[str]] = field(default_factory=dict)


def interleaved(
    targets: dict[str, str],
    runs: int,
    settings: WrkSettings,
    requests: Mapping[str, WrkRequest] | None = None,
    *,
    counters: Callable[[], dict[str, float]] | None = None,
    probes: Mapping[str, Callable[[], str]] | None = None,
) -> Interleaved:
    """A 1 s warm-up of each target, then `runs` rounds; each round runs wrk once against every target, in order.

    requests: what wrk sends to each target (by default DEFAULT_REQUEST). counters:
    read before and after each run (CPU seconds, say); the differences are kept per run.
    probes: by target, read once during each of its runs, with every connection open
    (how a proxy's workers share wrk's connections, say); kept and shown per run.
    """
    request = {name: (requests or {}).get(name, DEFAULT_REQUEST) for name in targets}
    warmup = WrkSettings(settings.threads, settings.connections, duration=1, cpus=settings.cpus)
    for name, url in targets.items():
        run_wrk(url, warmup, request[name])  # connections, caches and pools warm; not counted
    probes = probes or {}
    done = Interleaved({name: [] for name in targets}, {name: [] for name in targets}, {name: [] for name in probes})
    for round_number in range(runs):
        for name, url in targets.items():
            probe = probes.get(name)
            during = (lambda probe=probe, name=name: done.probed[name].append(probe())) if probe else None
            before = counters() if counters else {}
            result = run_wrk(url, settings, request[name], during)
            after = counters() if counters else {}
            done.results[name].append(result)
            line = (f"  round {round_number + 1}/{runs} {name:8} {result.rps:9.0f} req/s  "
                    f"p50 {result.p50_ms:.3f} ms  p99 {result.p99_ms:.3f} ms")  # fmt: skip
            if counters:
                done.counted[name].append({key: after[key] - before[key] for key in after})
                line += f"  CPU {sum(done.counted[name][-1].values()):.2f} s"
            if probe:
                line += f"  {done.probed[name][-1]}"
            print(line, flush=True)
    return done


# What HAProxy does with writes by default (bench/haproxy.cfg, `http-reuse safe`): a client
# connection's first request goes over a new server connection, and its later requests,
# POSTs included, over the server connection it kept. This variant sends every POST, PATCH
# and DELETE over a new server connection, as the project's NGINX does, for a like-for-like row.
FRESH_WRITES_ROUTE = (
    "    # Writes over a new server connection each (bench/overhead.py, HAProxyFreshWrites).\n"
    "    use_backend hosp_writes if METH_POST || METH_DELETE || { method PATCH }\n"
)
FRESH_WRITES_BACKEND = """
backend hosp_writes
    # One attempt (no L7 retry), and the server connection closed after each answer.
    option http-server-close
    option http-buffer-request
    server hosp {upstream}
"""


def fresh_writes_config(text: str, upstream: str) -> str:
    """bench/haproxy.cfg as rendered, with writes sent to a backend that opens a new connection for each."""
    marker = "    default_backend hosp\n"
    if marker not in text:
        raise BenchError("bench/haproxy.cfg has no `default_backend hosp` line to route writes before")
    return text.replace(marker, FRESH_WRITES_ROUTE + marker) + FRESH_WRITES_BACKEND.format(upstream=upstream)


@dataclass
class HAProxyFreshWrites(HAProxy):
    """HAProxy as bench/haproxy.cfg configures it, except that every write opens a new server connection."""

    def render(self) -> None:
        super().render()
        self.config_path.write_text(fresh_writes_config(self.config_path.read_text(), self.upstream))
