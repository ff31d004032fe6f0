"""The screen benchmark: what the front door adds to a nurse's screen, its memory with size, one note per screen.

    python -m bench.screen_bench                               # or: make bench-screen
    python -m bench.screen_bench --sections latency,memory     # NGINX and the stand-in only, about 3 minutes
    python -m bench.screen_bench --help

The front door (NGINX) proxies a screen (POST /patients/N/screen) to HOSP as it
proxies any request; its body filter (infra/nginx/njs/note_handoff.js) then posts
HOSP's answer to the note intake, after the nurse has it (docs/screen.md). Three
sections, each bounded in count and time, printed as plain text while they run and
as markdown at the end:
  1. latency: the real NGINX with the project's rendered config (local.nginx_proxy.
     NginxProxy) in front of the HOSP stand-in, with a note intake of this bench's own
     in the Chalice app's place (a process that answers every hand-off 202 at once),
     against the same screen sent straight to the stand-in's listener; alternated
     screen by screen, a new connection per screen on both paths (NGINX closes the
     nurse's connection after each screen); screens of 1 KiB and of 8 MiB;
  2. memory: a fresh NGINX of the same kind: its workers' RSS and peak RSS (VmHWM)
     before and after 100 screens of 1 KiB, then after 100 of 8 MiB, and their CPU;
     then 100 POSTs of 8 MiB that are no screen, proxied without the body filter;
  3. notes: the whole local stack (local.stack: moto, the stand-in, NGINX, chalice
     local's note intake, the note worker loop) while HOSP fails 10% of requests with
     503, resets 3% and commits then fails 15% of note writes: screens of 1 KiB, 4 MiB,
     8 MiB and 16 MiB - 1 byte, chunked and not, each with its own image, then the notes
     in HOSP per screen; and identical re-sends of one screen per size, one note each.
Loopback only. See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.client
import itertools
import json
import math
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import psutil
import requests

from bench.report import Table
from bench.servers import BenchError, binary_version
from bench.toolkit import alternated, run_directory
from chalicelib import aws, constants
from infra.nginx.render import HANDOFF_FAILED_LOG, MAX_BODY_BYTES
from local.hosp_standin.process import StandInProcess
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.nginx_proxy import NginxProxy, nginx_binary
from local.processes import ROOT, CommandServer, ProcessError, free_port, reports_ok
from local.stack import Ports, Stack

AUTH = {"Authorization": DEMO_ACCOUNTS[0].authorization}
SCREEN_HEADERS = {**AUTH, "Content-Type": "application/json"}
# A client waits this long for one screen: NGINX's deadline (30 s) and a 16 MiB upload fit in it.
SCREEN_TIMEOUT = 60.0
CONTROL_TIMEOUT = 10.0
KIB = 1024
MIB = 1024 * KIB
# A chunked screen goes in chunks of this size.
CHUNK_BYTES = MIB
# Latency: the two sizes and their targets (issue 15).
SMALL_BYTES = KIB
LARGE_BYTES = 8 * MIB
ADDED_P50_TARGET_MS = 2.0
ADDED_P99_TARGET_MS = 5.0
LARGE_RATIO_TARGET = 1.05
FRONT, DIRECT = "front door", "direct"
# The memory section's baseline: POSTs of the same bodies to a path that is no screen.
PLAIN, PLAIN_PATH = "plain POST", "/hospitals"
# A small screen slower than this has waited for something, e.g. a delayed ACK (40 ms on Linux).
SLOW_MS = 30.0
# NGINX writes a buffered access log at least once a second.
ACCESS_LOG_FLUSH_WAIT = 1.5
# HOSP's faults in the notes section, as the exactly-once check of issue 15 had them:
# 10% of every request answered 503 and 3% reset (screens included: the front door
# retries them), and 15% of note writes stored, then failed (502).
NOTES_FAULTS: dict[str, Any] = {
    "rates": {"503": 0.10, "reset": 0.03},
    "routes": {"POST /notes": {"rates": {"503": 0.10, "reset": 0.03}, "commit_then_fail": {"rate": 0.15}}},
}
NOTES_SIZES = "1KiB,4MiB,8MiB,16MiB-1"
QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
# The queue may read empty a moment before the worker counts the message it deleted.
SETTLE_SECONDS = 5.0
POLL_SECONDS = 0.25
WORKER_EVENTS = (
    "note_written",
    "note_already_present",
    "note_write_deferred",
    "note_job_dead_lettered",
    "note_queue_poll_failed",
)
INTAKE_EVENTS = ("note_job_queued", "note_job_not_queued", "note_handoff_refused", "note_intake_failed")
# The bench's own note intake (sections 1 and 2): what a hand-off holds (chalicelib/note_intake.py).
HANDOFF_FIELDS = ("patient_id", "user", "request_id", "answer")
INTAKE_ANSWER = b'{"state":"queued"}'


# --- pure parts (tests/unit/test_screen_bench.py) ---------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks.

    The same as numpy's default and statistics.quantiles(method="inclusive"): p50 of an
    even count is the mean of the two middle values; p100 is the maximum.
    """
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float
    p99: float


def latency(values_ms: Sequence[float]) -> Latency:
    return Latency(len(values_ms), percentile(values_ms, 50), percentile(values_ms, 99))


Round = Mapping[str, Latency]


def differences(rounds: Sequence[Round], attribute: str) -> list[float]:
    """Per round, the front door's `attribute` (p50 or p99) minus the direct path's: same round, same noise."""
    return [getattr(r[FRONT], attribute) - getattr(r[DIRECT], attribute) for r in rounds if FRONT in r and DIRECT in r]


def ratios(rounds: Sequence[Round], attribute: str = "p50") -> list[float]:
    """Per round, the front door's `attribute` divided by the direct path's."""
    return [getattr(r[FRONT], attribute) / getattr(r[DIRECT], attribute) for r in rounds if FRONT in r and DIRECT in r]


def paired(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(the median difference, the median ratio) of the front door's and the direct path's times step by step:
    the same screen, sent one right after the other, so that what the machine does meanwhile falls on both."""
    if not pairs:
        raise ValueError("no pairs")
    return statistics.median(f - d for f, d in pairs), statistics.median(f / d for f, d in pairs)


def median_of(rounds: Sequence[Round], name: str, attribute: str) -> float:
    return statistics.median(getattr(r[name], attribute) for r in rounds if name in r)


SIZE = re.compile(r"(?P<count>[0-9]+)(?P<unit>KiB|MiB)?(?:-(?P<less>[0-9]+))?")
UNITS = {None: 1, "KiB": KIB, "MiB": MIB}
BODY_PREFIX, BODY_SUFFIX = b'{"images":["', b'"]}'
# The smallest screen body: one image of 4 base64 characters.
MIN_BODY_BYTES = len(BODY_PREFIX) + 4 + len(BODY_SUFFIX)


def parse_size(text: str) -> int:
    """A screen's size in bytes from "1024", "1KiB", "8MiB" or "16MiB-1" (16 MiB less one byte)."""
    found = SIZE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size: bytes, KiB or MiB, less an optional number of bytes (16MiB-1)")
    size = int(found["count"]) * UNITS[found["unit"]] - int(found["less"] or 0)
    if not MIN_BODY_BYTES <= size <= MAX_BODY_BYTES:
        raise ValueError(f"{text!r} is {size} bytes: a screen here is {MIN_BODY_BYTES} to {MAX_BODY_BYTES} bytes")
    return size


def parse_sizes(text: str) -> list[int]:
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ValueError("no size given")
    return sizes


def size_label(size: int) -> str:
    """16 MiB - 1, 8 MiB, 1 KiB, or the bytes."""
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size % unit == 0:
            return f"{size // unit} {name}"
        if (size + 1) % unit == 0:
            return f"{(size + 1) // unit} {name} - 1"
    return f"{size:,} bytes"


def image_bytes(tag: str, index: int, size: int) -> bytes:
    """`size` bytes that differ for every (tag, index): a distinct X-ray per screen."""
    seed = hashlib.sha256(f"{tag}:{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def screen_body(tag: str, index: int, size: int) -> bytes:
    """A screen's JSON body of exactly `size` bytes: one image of its own (tag, index), then JSON whitespace."""
    if size < MIN_BODY_BYTES:
        raise ValueError(f"a screen body has at least {MIN_BODY_BYTES} bytes")
    room = size - len(BODY_PREFIX) - len(BODY_SUFFIX)
    body = BODY_PREFIX + base64.b64encode(image_bytes(tag, index, room // 4 * 3)) + BODY_SUFFIX
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def patient_for(index: int, patients: int) -> int:
    """Screens go round the patients 1..patients."""
    return index % patients + 1


def answer_key(body: bytes) -> str | None:
    """The result a screening answer holds: HOSP's screening_id (a hash of the patient and the images), or None."""
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    found = fields.get("screening_id") if isinstance(fields, dict) else None
    return found if isinstance(found, str) and found else None


def note_key(body: object) -> tuple[str | None, str | None]:
    """(the result's screening_id, the request id) a worker's note body carries; None for what it lacks."""
    if not isinstance(body, str):
        return None, None
    try:
        fields = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(fields, dict):
        return None, None
    results = fields.get("results")
    key = results.get("screening_id") if isinstance(results, dict) else None
    request_id = fields.get("request_id")
    return (
        key if isinstance(key, str) and key else None,
        request_id if isinstance(request_id, str) and request_id else None,
    )


@dataclass(frozen=True)
class Tally:
    """The notes in HOSP matched to the results of the screens the clients saw succeed."""

    screens: int  # distinct request ids of screens answered 200
    results: int  # distinct results among them (an identical re-send is the same result)
    notes: int  # notes read from HOSP
    per_result: dict[int, int]  # notes per successful result -> how many results have that many
    duplicates: int  # results with more than one note
    extra_notes: int  # notes beyond the first of those results
    lost: int  # successful results with no note
    stray: int  # notes of no successful result (or that name none)
    misattributed: int  # notes of a successful result whose request id is none of its screens'

    @property
    def exactly_once(self) -> int:
        return self.per_result.get(1, 0)

    @property
    def met(self) -> bool:
        """Exactly one note per successful result, no other note, each naming one of its screens."""
        return self.exactly_once == self.results and self.notes == self.results and self.misattributed == 0


def tally(successes: Iterable[tuple[str, str]], notes: Iterable[tuple[str | None, str | None]]) -> Tally:
    """successes: (result, request id) of each screen answered 200; notes: (result, request id) of each note."""
    screens: dict[str, set[str]] = defaultdict(set)
    request_ids: set[str] = set()
    for key, request_id in successes:
        screens[key].add(request_id)
        request_ids.add(request_id)
    found = list(notes)
    per_key = Counter(key for key, _ in found if key is not None)
    repeated = [count for count in per_key.values() if count > 1]
    per_result = Counter(per_key.get(key, 0) for key in screens)
    return Tally(
        screens=len(request_ids),
        results=len(screens),
        notes=len(found),
        per_result=dict(sorted(per_result.items())),
        duplicates=len(repeated),
        extra_notes=sum(count - 1 for count in repeated),
        lost=per_result.get(0, 0),
        stray=sum(1 for key, _ in found if key is None or key not in screens),
        misattributed=sum(1 for key, rid in found if key in screens and rid not in screens[key]),
    )


def handoff_states(access_lines: Iterable[str], request_ids: Iterable[str]) -> Counter[str]:
    """The access log's note_handoff of the screens (route "screen") of `request_ids`; "no line" for
    those it has no screen line of. The note worker's calls for a screen carry its request id too."""
    wanted = set(request_ids)
    states: Counter[str] = Counter()
    seen: set[str] = set()
    for line in access_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("route") != "screen" or record.get("request_id") not in wanted:
            continue
        seen.add(record["request_id"])
        states[str(record.get("note_handoff") or "-")] += 1
    if wanted - seen:
        states["no line"] += len(wanted - seen)
    return states


def failed_statuses(lines: Iterable[str]) -> Counter[str]:
    """The intake's (or NGINX's) status of each hand-off in the proxy's note-handoff-failed log."""
    found: Counter[str] = Counter()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            found["unreadable"] += 1
            continue
        if isinstance(record, dict) and record.get("event") == "note_handoff_failed":
            found[str(record.get("status") or "-")] += 1
        else:
            found["unreadable"] += 1
    return found


def is_handoff(body: bytes) -> bool:
    """Whether `body` is a hand-off as the front door posts it: a JSON object of strings
    patient_id, user, request_id and answer, the answer base64 of JSON."""
    try:
        fields = json.loads(body)
        if not isinstance(fields, dict) or not all(isinstance(fields.get(name), str) for name in HANDOFF_FIELDS):
            return False
        json.loads(base64.b64decode(fields["answer"], validate=True))
    except ValueError:  # not JSON, not base64, not UTF-8
        return False
    return True


def status_kib(status_text: str, name: str) -> int | None:
    """A kB field of /proc/PID/status ("VmHWM:	    8312 kB"), or None."""
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            number, _, unit = value.strip().partition(" ")
            if unit.strip() == "kB" and number.isdigit():
                return int(number)
    return None


@dataclass(frozen=True)
class WorkerMemory:
    pid: int
    rss_kib: int
    hwm_kib: int  # the peak RSS since the worker started (VmHWM)
    cpu_seconds: float  # user + system


@dataclass(frozen=True)
class Snapshot:
    """NGINX's workers at one moment, after `screens` screens of `size` bytes (0: none yet)."""

    screens: int
    size: int
    workers: tuple[WorkerMemory, ...]
    kind: str = "screen"  # or PLAIN: POSTs of the same bodies that are no screen

    @property
    def rss_kib(self) -> int:
        return sum(w.rss_kib for w in self.workers)

    @property
    def largest_rss_kib(self) -> int:
        return max((w.rss_kib for w in self.workers), default=0)

    @property
    def hwm_kib(self) -> int:
        return max((w.hwm_kib for w in self.workers), default=0)

    @property
    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds for w in self.workers)


def flat(before: Snapshot, after: Snapshot, size: int) -> bool:
    """Whether screens of `size` bytes left the workers' memory flat: their peak RSS grew by less than half a body.

    One copy of a body in a worker's memory (the JavaScript VM's, say) would raise its peak
    by at least the body's size.
    """
    return after.hwm_kib - before.hwm_kib < size / 2 / KIB and after.rss_kib - before.rss_kib < size / 2 / KIB


@dataclass
class DrainWatch:
    """When the note queue has drained: nothing in it (visible, in flight or delayed) and
    the worker has handled every job expected; or, if some job never comes (never queued,
    moved to the dead-letter queue by SQS itself), once the queue has stayed empty for
    `settle` seconds. `drained_at` is the first moment of that state."""

    expected: int
    settle: float = SETTLE_SECONDS
    empty_since: float | None = None
    drained_at: float | None = None
    complete: bool = False  # the worker handled every expected job

    def observe(self, now: float, in_queue: int, handled: int) -> bool:
        if in_queue > 0:
            self.empty_since = None
            return False
        if self.empty_since is None:
            self.empty_since = now
        if handled >= self.expected:
            self.complete = True
            self.drained_at = now
            return True
        if now - self.empty_since >= self.settle:
            self.drained_at = self.empty_since
            return True
        return False


def count_events(lines: Iterable[str], names: Iterable[str]) -> dict[str, int]:
    """How many JSON log lines have each "event" of `names` (other lines are skipped)."""
    wanted = list(names)
    found: Counter[str] = Counter()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") in wanted:
            found[record["event"]] += 1
    return {name: found[name] for name in wanted}


# --- sending screens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int | None  # None: no answer (connection error, timeout)
    ms: float  # from before the connection to the answer's last byte
    body: bytes
    request_id: str  # the X-Request-Id of the answer ("" straight from HOSP)


def post_screen(port: int, patient: int, body: bytes, chunked: bool = False, path: str = "") -> Reply:
    """One screen on a new connection to 127.0.0.1:port, with Nagle's algorithm off; timed from the connect on.

    Chunked: the body goes in CHUNK_BYTES chunks with Transfer-Encoding: chunked, no Content-Length.
    path: another request target than the patient's screen, for a POST that is no screen.
    """
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCREEN_TIMEOUT)
    try:
        connection.connect()
        # http.client sends the headers and the body in two writes: without this the body
        # of a small screen would wait for the delayed ACK of the headers (40 ms).
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = path or f"/patients/{patient}/screen"
        connection.request("POST", target, body=chunks(body) if chunked else body, headers=SCREEN_HEADERS)
        answer = connection.getresponse()
        data = answer.read()
        elapsed = (time.perf_counter() - started) * 1000
        return Reply(answer.status, elapsed, data, answer.getheader("X-Request-Id") or "")
    except (OSError, http.client.HTTPException):
        return Reply(None, (time.perf_counter() - started) * 1000, b"", "")
    finally:
        connection.close()


# --- the bench's note intake (sections 1 and 2) --------------------------------------------------


class IntakeServer(ThreadingHTTPServer):
    """Answers every POST 202 at once and counts the hand-offs; GET /health says how many."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.handoffs = 0
        self.malformed = 0
        super().__init__(("127.0.0.1", port), IntakeHandler)

    def count(self, body: bytes) -> None:
        ok = is_handoff(body)
        with self.lock:
            self.handoffs += 1
            self.malformed += not ok


class IntakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each answer goes in one write, and with no delay.
    disable_nagle_algorithm = True
    server: IntakeServer

    def do_POST(self) -> None:
        self.server.count(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self._answer(202, "Accepted", INTAKE_ANSWER)

    def do_GET(self) -> None:
        with self.server.lock:
            counts = {"status": "ok", "handoffs": self.server.handoffs, "malformed": self.server.malformed}
        self._answer(200, "OK", json.dumps(counts).encode())

    def _answer(self, status: int, reason: str, body: bytes) -> None:
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_intake(port: int) -> int:
    """The intake in the foreground (python -m bench.screen_bench --serve-intake PORT), until SIGTERM."""
    with IntakeServer(port) as server:
        server.serve_forever()
    return 0


def intake_counts(intake: CommandServer) -> dict[str, int]:
    answer = requests.get(f"{intake.url}/health", timeout=CONTROL_TIMEOUT)
    answer.raise_for_status()
    body = answer.json()
    return {"handoffs": int(body["handoffs"]), "malformed": int(body["malformed"])}


@dataclass
class Backends:
    """What the front door of sections 1 and 2 sits in front of: the HOSP stand-in and the bench's intake."""

    run_dir: Path
    standin: StandInProcess
    intake: CommandServer

    @contextlib.contextmanager
    def front_door(self, name: str) -> Iterator[NginxProxy]:
        """A fresh NGINX (its own workers) with the project's config, the local variant and the default tuning."""
        proxy = NginxProxy(upstream=self.standin.address, run_dir=self.run_dir / name, interceptor=self.intake.address)
        try:
            proxy.start()
            yield proxy
        finally:
            proxy.stop()


@contextlib.contextmanager
def running_backends(run_dir: Path, seed: int) -> Iterator[Backends]:
    standin = StandInProcess(run_dir / "hosp", seed=seed)
    port = free_port()
    argv = [sys.executable, "-m", "bench.screen_bench", "--serve-intake", str(port)]
    intake = CommandServer(argv, port, run_dir / "intake.log", health_path="/health", health_accepts=reports_ok)
    try:
        standin.start()
        intake.start()
        yield Backends(run_dir, standin, intake)
    finally:
        intake.stop()
        standin.stop()


def access_lines(proxy: NginxProxy) -> list[str]:
    time.sleep(ACCESS_LOG_FLUSH_WAIT)
    return proxy.access_log.read_text(errors="replace").splitlines() if proxy.access_log.exists() else []


# --- 1: latency --------------------------------------------------------------------------------


@dataclass
class SizeLatency:
    size: int
    steps: int  # screens per path per round
    rounds: list[dict[str, Latency]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    different: int = 0  # steps whose two answers' bodies differed
    slow: Counter[str] = field(default_factory=Counter)  # screens over SLOW_MS, e.g. one that waited for a delayed ACK
    pairs: list[tuple[float, float]] = field(default_factory=list)  # ms of each step's (front door, direct) screen
    skipped: int = 0  # steps not run: the time limit


@dataclass
class LatencyResult:
    sizes: list[SizeLatency]
    handoffs: Counter[str]  # the access log's note_handoff of the front door's screens
    intake: dict[str, int]
    front_screens: int


def measure_latency(backends: Backends, args: argparse.Namespace) -> LatencyResult:
    tag = uuid.uuid4().hex[:12]
    results = [SizeLatency(SMALL_BYTES, args.latency_requests), SizeLatency(LARGE_BYTES, args.large_requests)]
    names = [FRONT, DIRECT]
    front_ids: set[str] = set()
    stop_at = time.monotonic() + args.section_time_limit
    with backends.front_door("latency") as proxy:
        intake_before = intake_counts(backends.intake)
        ports = {FRONT: proxy.port, DIRECT: backends.standin.port}
        index = 0

        def step(size: int, order: Sequence[str]) -> list[tuple[str, Reply]]:
            """The same screen (its own image) on each path, in `order`."""
            nonlocal index
            body, patient = screen_body(tag, index, size), patient_for(index, args.patients)
            index += 1
            replies = [(name, post_screen(ports[name], patient, body)) for name in order]
            front_ids.update(reply.request_id for name, reply in replies if name == FRONT and reply.request_id)
            return replies

        for result in results:  # connections, workers, the stand-in's threads warm; not counted
            order = alternated(names, args.warmup)
            for start in range(0, len(order), len(names)):
                step(result.size, order[start : start + len(names)])
        for round_number in range(args.latency_rounds):
            for result in results:
                samples: dict[str, list[float]] = {name: [] for name in names}
                order = alternated(names, result.steps)
                for start in range(0, len(order), len(names)):
                    if time.monotonic() > stop_at:
                        result.skipped += 1
                        continue
                    bodies, ms = set(), {}
                    for name, reply in step(result.size, order[start : start + len(names)]):
                        if reply.status != 200:
                            result.errors[name] += 1
                            continue
                        samples[name].append(reply.ms)
                        bodies.add(reply.body)
                        ms[name] = reply.ms
                        result.slow[name] += reply.ms > SLOW_MS
                    result.different += len(bodies) > 1
                    if len(ms) == len(names):
                        result.pairs.append((ms[FRONT], ms[DIRECT]))
                summary = {name: latency(values) for name, values in samples.items() if values}
                result.rounds.append(summary)
                if FRONT in summary and DIRECT in summary:
                    f, d = summary[FRONT], summary[DIRECT]
                    print(
                        f"  round {round_number + 1}/{args.latency_rounds}, {size_label(result.size)}: "
                        f"front door p50 {f.p50:.2f} p99 {f.p99:.2f} ms, direct p50 {d.p50:.2f} p99 {d.p99:.2f} ms, "
                        f"added p50 {f.p50 - d.p50:+.2f} ms ({f.p50 / d.p50:.3f}x)",
                        flush=True,
                    )
        states = handoff_states(access_lines(proxy), front_ids)
        intake_after = intake_counts(backends.intake)
    intake = {key: intake_after[key] - intake_before[key] for key in intake_after}
    return LatencyResult(results, states, intake, len(front_ids))


def _states(states: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in states.most_common()) or "-"


def latency_tables(result: LatencyResult, args: argparse.Namespace) -> list[Table]:
    table = Table(
        f"1. Latency of one screen: the front door vs straight to HOSP's listener ({args.latency_rounds} rounds, "
        "one client, a new connection per screen on both paths, alternated)",
        ["size", "path", "screens per round", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "p50 ratio",
         "p50 by round", "errors"],
    )  # fmt: skip
    for size in result.sizes:
        rounds = [r for r in size.rounds if FRONT in r and DIRECT in r]
        if not rounds:
            continue
        for name, label in ((FRONT, "front door: NGINX -> HOSP, + hand-off"), (DIRECT, "direct: HOSP's listener")):
            p50, p99 = median_of(rounds, name, "p50"), median_of(rounds, name, "p99")
            front = name == FRONT
            table.add(
                size_label(size.size),
                label,
                size.steps,
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{statistics.median(differences(rounds, 'p50')):+.2f}" if front else "-",
                f"{statistics.median(differences(rounds, 'p99')):+.2f}" if front else "-",
                f"{statistics.median(ratios(rounds)):.3f}x" if front else "-",
                ", ".join(f"{r[name].p50:.2f}" for r in rounds),
                size.errors.get(name, 0),
            )
    for size in result.sizes:
        rounds = [r for r in size.rounds if FRONT in r and DIRECT in r]
        if rounds and size.pairs:
            step_added, step_ratio = paired(size.pairs)
            table.notes.append(
                f"{size_label(size.size)}, round by round: added p50 "
                f"{', '.join(f'{a:+.2f}' for a in differences(rounds, 'p50'))} ms; added p99 "
                f"{', '.join(f'{a:+.2f}' for a in differences(rounds, 'p99'))} ms; p50 ratio "
                f"{', '.join(f'{a:.3f}' for a in ratios(rounds))}; step by step (the same screen both ways, "
                f"{len(size.pairs)} steps): median difference {step_added:+.2f} ms, median ratio {step_ratio:.3f}; "
                f"steps whose two answers differed: {size.different}"
                + (
                    f"; screens over {SLOW_MS:g} ms: front door {size.slow[FRONT]}, direct {size.slow[DIRECT]}"
                    if size.size == SMALL_BYTES
                    else ""
                )
                + (f"; {size.skipped} steps skipped (time limit)" if size.skipped else "")
            )
    table.notes += [
        "p50/p99: medians over the rounds of each round's percentiles (linear interpolation); added and ratio: "
        "medians over the rounds of each round's difference and ratio. Each step sends the same screen (a body of "
        "the size shown, its own image, patients 1.."
        f"{args.patients} in turn) on both paths, the order rotated at every step; {args.warmup} warm-up steps per "
        "size first. Each screen opens its own connection (timed from the connect to the answer's last byte): the "
        "front door closes the nurse's connection after each screen (keepalive_timeout 0, so that the hand-off "
        "delays no next request of hers), so the direct path gets a new connection too. TCP_NODELAY on the client.",
        f"Front door: local.nginx_proxy.NginxProxy, the project's rendered config, default tuning; in the Chalice "
        f"app's place the bench's own intake (answers 202 at once). The front door's screens' note_handoff in the "
        f"access log: {_states(result.handoffs)}; the intake received {result.intake['handoffs']} hand-offs "
        f"({result.intake['malformed']} malformed) for {result.front_screens} screens (warm-up included).",
    ]
    return [table]


# --- 2: memory ---------------------------------------------------------------------------------


def nginx_workers(proxy: NginxProxy) -> list[psutil.Process]:
    if proxy.process is None:
        raise BenchError("NGINX is not running")
    return psutil.Process(proxy.process.pid).children()


def snapshot(proxy: NginxProxy, screens: int, size: int, kind: str = "screen") -> Snapshot:
    workers = []
    for worker in nginx_workers(proxy):
        status = Path(f"/proc/{worker.pid}/status").read_text()
        cpu = worker.cpu_times()
        workers.append(
            WorkerMemory(
                worker.pid, status_kib(status, "VmRSS") or 0, status_kib(status, "VmHWM") or 0, cpu.user + cpu.system
            )
        )
    return Snapshot(screens, size, tuple(sorted(workers, key=lambda w: w.pid)), kind)


@dataclass
class MemoryResult:
    snapshots: list[Snapshot]  # at the start, then after each batch
    errors: list[int]  # per batch: no answer, or a 5xx
    seconds: list[float]  # per batch: sending took
    skipped: int
    handoffs: Counter[str]


def measure_memory(backends: Backends, args: argparse.Namespace) -> MemoryResult:
    """Batches of screens of each size, then one of POSTs of the largest size that are no screen, the baseline."""
    tag = uuid.uuid4().hex[:12]
    batches = [("screen", size) for size in args.memory_sizes] + [(PLAIN, max(args.memory_sizes))]
    result = MemoryResult([], [], [], 0, Counter())
    ids: set[str] = set()
    image = 0
    stop_at = time.monotonic() + args.section_time_limit
    with backends.front_door("memory") as proxy:
        result.snapshots.append(snapshot(proxy, 0, 0))
        for kind, size in batches:
            started = time.monotonic()
            sent = errors = 0
            for index in range(args.memory_screens):
                if time.monotonic() > stop_at:
                    result.skipped += 1
                    continue
                body = screen_body(tag, image, size)
                image += 1
                path = PLAIN_PATH if kind == PLAIN else ""
                reply = post_screen(proxy.port, patient_for(index, args.patients), body, index % 2 == 1, path)
                sent += 1
                if kind == "screen":
                    ids.add(reply.request_id)
                errors += reply.status is None or reply.status >= 500
            result.seconds.append(time.monotonic() - started)
            result.errors.append(errors)
            result.snapshots.append(snapshot(proxy, sent, size, kind))
            last = result.snapshots[-1]
            print(
                f"  after {sent} {kind}s of {size_label(size)}: workers' RSS {last.rss_kib / KIB:.1f} MiB, "
                f"largest peak (VmHWM) {last.hwm_kib / KIB:.1f} MiB",
                flush=True,
            )
        result.handoffs = handoff_states(access_lines(proxy), ids - {""})
    return result


def memory_tables(result: MemoryResult, args: argparse.Namespace) -> list[Table]:
    table = Table(
        f"2. NGINX's workers' memory: a fresh front door, then {args.memory_screens} screens of each size, then "
        f"{args.memory_screens} POSTs of the largest that are no screen (one client, half of them chunked)",
        ["after", "workers' RSS MiB", "largest worker's RSS MiB", "largest peak RSS (VmHWM) MiB",
         "CPU ms per request", "sending took", "errors"],
    )  # fmt: skip
    for number, shot in enumerate(result.snapshots):
        if not number:
            table.add("start (no request yet)", f"{shot.rss_kib / KIB:.1f}", f"{shot.largest_rss_kib / KIB:.1f}",
                      f"{shot.hwm_kib / KIB:.1f}", "-", "-", "-")  # fmt: skip
            continue
        previous = result.snapshots[number - 1]
        what = "screens" if shot.kind == "screen" else f"{PLAIN}s ({PLAIN_PATH}, no body filter)"
        cpu = (shot.cpu_seconds - previous.cpu_seconds) * 1000 / shot.screens if shot.screens else 0.0
        table.add(
            f"+ {shot.screens} {what} of {size_label(shot.size)}",
            f"{shot.rss_kib / KIB:.1f}",
            f"{shot.largest_rss_kib / KIB:.1f}",
            f"{shot.hwm_kib / KIB:.1f}",
            f"{cpu:.1f}",
            f"{result.seconds[number - 1]:.1f} s",
            result.errors[number - 1],
        )
    table.notes += [
        "RSS and VmHWM from /proc/PID/status of each worker (the master's children; "
        f"{len(result.snapshots[0].workers)} workers), after each batch; VmHWM is the peak RSS since the worker "
        "started. CPU: the workers' user + system time over the batch, per request (clock ticks of 10 ms). Odd "
        "requests are chunked (1 MiB chunks), even ones carry a Content-Length; each has its own image.",
        f"The {PLAIN}s carry the same kind of body to {PLAIN_PATH} (HOSP refuses it, 422): proxied by the same "
        "NGINX without the body filter or a hand-off, what moving the bytes costs anyway. A body over "
        "client_body_buffer_size (1 MiB) is spooled to a temporary file and sent to HOSP from there; the body "
        "filter sees only HOSP's answer. The screens' note_handoff in the access log: "
        f"{_states(result.handoffs)}" + (f"; {result.skipped} requests skipped (time limit)" if result.skipped else ""),
    ]
    return [table]


def memory_flat(result: MemoryResult) -> list[tuple[int, int, int, bool]]:
    """(size, peak growth KiB, RSS growth KiB, flat) of each batch of screens after the first, against the last."""
    found = []
    batches = [shot for shot in result.snapshots[1:] if shot.kind == "screen"]
    for before, after in itertools.pairwise(batches):
        found.append((after.size, after.hwm_kib - before.hwm_kib, after.rss_kib - before.rss_kib,
                      flat(before, after, after.size)))  # fmt: skip
    return found


# --- 3: notes ----------------------------------------------------------------------------------


@dataclass
class System:
    """The running stack, and clients of the parts the bench reads."""

    stack: Stack
    sqs: Any
    note_queue: str
    dead_queue: str

    @property
    def standin(self) -> StandInProcess:
        return next(m.server for m in self.stack.members if isinstance(m.server, StandInProcess))

    def worker_counts(self) -> dict[str, int]:
        answer = requests.get(f"{self.stack.worker_url}/health", timeout=CONTROL_TIMEOUT)
        answer.raise_for_status()
        body = answer.json()
        return {name: int(body.get(name, 0)) for name in ("handled", "failed", "polls")}

    def queue_counts(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_COUNTS))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in QUEUE_COUNTS)

    def log_lines(self, path: Path) -> list[str]:
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    @property
    def chalice_log(self) -> Path:
        return self.stack.run_dir / "chalice.log"

    @property
    def worker_log(self) -> Path:
        return self.stack.run_dir / "note-worker.log"

    @property
    def handoff_failed_log(self) -> Path:
        return self.stack.proxy.access_log.with_name(HANDOFF_FAILED_LOG)


def sqs_client(endpoint: str) -> Any:
    """An SQS client of the local AWS, configured as the Lambdas' (chalicelib/aws.py)."""
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name="eu-west-2", config=aws.CLIENT_CONFIG,
        aws_access_key_id="local", aws_secret_access_key="local",  # moto takes any key; never a real one
    )  # fmt: skip


@contextlib.contextmanager
def running_system(run_dir: Path, seed: int) -> Iterator[System]:
    ports = Ports(*(free_port() for _ in range(6)))
    stack = Stack(ports, run_dir, faults=None, seed=seed)
    try:
        stack.start()
        sqs = sqs_client(stack.aws_url)
        # The local stage's queues, as the stack creates them.
        note_queue = sqs.get_queue_url(QueueName=constants.note_queue(constants.LOCAL_STAGE))["QueueUrl"]
        dead_queue = sqs.get_queue_url(QueueName=constants.dead_letter_queue(constants.LOCAL_STAGE))["QueueUrl"]
        yield System(stack, sqs, note_queue, dead_queue)
    finally:
        stack.stop()


def wait_for_drain(system: System, expected: int, handled_before: int, timeout: float) -> DrainWatch:
    watch = DrainWatch(expected)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        in_queue = system.queue_counts(system.note_queue)
        handled = system.worker_counts()["handled"] - handled_before
        if watch.observe(time.monotonic(), in_queue, handled):
            return watch
        time.sleep(POLL_SECONDS)
    return watch


def wait_for_handoffs(system: System, request_ids: set[str], timeout: float) -> Counter[str]:
    """The screens' note_handoff states, once the access log has a line for each: NGINX writes a screen's
    line when its hand-off has ended, and the intake answers a hand-off once the job is on the queue (or
    logged). Until then the queue can be empty while a job is still coming: the watch on the queue alone would
    stop early, since the worker's handled count also holds the jobs of identical re-sends (moto's FIFO queue
    drops a repeated deduplication id only while the first message is still in the queue)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = system.log_lines(system.stack.proxy.access_log)
        states = handoff_states(lines, request_ids)
        if not states.get("no line") or time.monotonic() > deadline:
            return states
        time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Planned:
    """One screen of the notes section: its body is screen_body(tag, image, size)."""

    image: int
    size: int
    chunked: bool
    resend: bool  # one of the identical re-sends of its size's screen


def notes_plan(sizes: Sequence[int], per_size: int, resends: int, seed: int) -> list[Planned]:
    """per_size screens of each size and framing, each with its own image, and `resends` sends of one more
    screen per size (the same image each time, alternately chunked); shuffled with `seed`, so sizes mix."""
    plan: list[Planned] = []
    image = 0
    for size in sizes:
        for chunked in (False, True):
            for _ in range(per_size):
                plan.append(Planned(image, size, chunked, resend=False))
                image += 1
    for size in sizes:
        plan += [Planned(image, size, chunked=n % 2 == 1, resend=True) for n in range(resends)]
        image += 1
    random.Random(seed).shuffle(plan)
    return plan


@dataclass(frozen=True)
class Screen:
    planned: Planned
    patient: int
    status: int | None
    request_id: str
    key: str | None  # the answer's result (screening_id)
    seconds: float


def send_screens(system: System, plan: Sequence[Planned], args: argparse.Namespace, tag: str) -> list[Screen | None]:
    """The plan from args.clients threads; None for a screen not sent (the time limit, or Ctrl-C)."""
    stop_at = time.monotonic() + args.section_time_limit
    stopping = threading.Event()
    lock = threading.Lock()
    done = [0]

    def one(item: Planned) -> Screen | None:
        if time.monotonic() > stop_at or stopping.is_set():
            return None
        patient = patient_for(item.image, args.patients)
        body = screen_body(tag, item.image, item.size)
        reply = post_screen(system.stack.proxy.port, patient, body, chunked=item.chunked)
        with lock:
            done[0] += 1
            if done[0] % max(len(plan) // 10, 1) == 0:
                print(f"  {done[0]}/{len(plan)} screens answered", flush=True)
        key = answer_key(reply.body) if reply.status == 200 else None
        return Screen(item, patient, reply.status, reply.request_id, key, reply.ms / 1000)

    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        try:
            return list(pool.map(one, plan))
        except KeyboardInterrupt:
            stopping.set()
            raise


def read_notes(system: System, patients: int) -> list[dict[str, Any]]:
    """Every note of patients 1..patients, read from the stand-in itself; a read that fails is tried again."""
    notes: list[dict[str, Any]] = []
    with requests.Session() as session:
        session.trust_env = False
        for patient in range(1, patients + 1):
            for _attempt in range(5):
                answer = session.get(
                    f"{system.standin.url}/notes", params={"patient_id": patient}, headers=AUTH, timeout=60
                )
                if answer.status_code == 200:
                    notes += answer.json()
                    break
                time.sleep(0.5)
            else:
                raise BenchError(f"GET /notes?patient_id={patient} on the stand-in kept failing: {answer.status_code}")
    return notes


@dataclass
class NotesResult:
    planned: int
    screens: list[Screen]
    send_seconds: float
    first: Tally  # before any logged job or hand-off is queued again
    tally: Tally  # at the end
    note_keys: list[tuple[str | None, str | None]]
    drain: DrainWatch
    drain_seconds: float | None
    handoffs: Counter[str]
    logged: dict[str, int]  # log lines requeue reads, by event
    failed_statuses: Counter[str] = field(default_factory=Counter)  # of the hand-offs the proxy logged as failed
    worker: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    standin: dict[str, Any] = field(default_factory=dict)
    worker_events: dict[str, int] = field(default_factory=dict)
    intake_events: dict[str, int] = field(default_factory=dict)
    requeue: str = ""  # what `python -m chalicelib.requeue` said
    requeue_drain: DrainWatch | None = None
    requeue_seconds: float | None = None

    def successes(self, resend: bool | None = None) -> list[tuple[str, str]]:
        """(result, request id) of the screens answered 200 (resend: only re-sends, or only the others)."""
        return [
            (s.key, s.request_id)
            for s in self.screens
            if s.status == 200 and s.key is not None and (resend is None or s.planned.resend == resend)
        ]


def requeue_logged(system: System, lines: list[str]) -> str:
    """The operator's way back for jobs and hand-offs that only reached a log (chalicelib/requeue.py):
    the log lines through `python -m chalicelib.requeue`, with the Lambdas' environment."""
    done = subprocess.run(
        [sys.executable, "-m", "chalicelib.requeue"], input="\n".join(lines) + "\n", text=True,
        capture_output=True, env=system.stack.lambda_environment(), cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    said = done.stderr.strip().splitlines()
    return f"{said[-1] if said else 'no output'} (exit status {done.returncode})"


def note_keys(system: System, args: argparse.Namespace) -> list[tuple[str | None, str | None]]:
    return [note_key(note.get("body")) for note in read_notes(system, args.patients)]


def measure_notes(system: System, args: argparse.Namespace) -> NotesResult:
    # The stack's own jobs first, so that the worker's counts and HOSP's notes are this section's only.
    if wait_for_drain(system, 0, 0, args.drain_timeout).drained_at is None:
        raise BenchError("the note queue did not drain before the notes section")
    system.standin.reset(NOTES_FAULTS)
    worker_before = system.worker_counts()
    dead_before = system.queue_counts(system.dead_queue)
    worker_log_before = len(system.log_lines(system.worker_log))
    chalice_log_before = len(system.log_lines(system.chalice_log))
    failed_log_before = len(system.log_lines(system.handoff_failed_log))
    plan = notes_plan(args.notes_sizes, args.notes_per_size, args.resends, args.seed)
    tag = uuid.uuid4().hex[:12]
    print(f"  {len(plan)} screens ({args.notes_per_size} per size and framing, {args.resends} re-sends of one per "
          f"size), patients 1..{args.patients}, {args.clients} clients; faults {NOTES_FAULTS}", flush=True)  # fmt: skip
    started = time.monotonic()
    sent = send_screens(system, plan, args, tag)
    send_seconds = time.monotonic() - started
    screens = [s for s in sent if s is not None]
    answered = sum(1 for s in screens if s.status == 200)
    results = len({s.key for s in screens if s.status == 200 and s.key is not None})
    print(f"  sent in {send_seconds:.1f} s; {answered} answered 200 ({results} distinct results); "
          "waiting for the hand-offs to end and the queue to drain", flush=True)  # fmt: skip
    ids = {s.request_id for s in screens if s.request_id}
    handoffs = wait_for_handoffs(system, ids, args.drain_timeout)
    drain = wait_for_drain(system, results, worker_before["handled"], args.drain_timeout)
    drained_after = None if drain.drained_at is None else max(drain.drained_at - started - send_seconds, 0.0)
    system.standin.set_faults({"rates": {"503": 0.0, "reset": 0.0}, "routes": {"POST /notes": None}})
    keys = note_keys(system, args)
    result = NotesResult(
        planned=len(plan),
        screens=screens,
        send_seconds=send_seconds,
        first=tally([], []),
        tally=tally([], []),
        note_keys=keys,
        drain=drain,
        drain_seconds=drained_after,
        handoffs=handoffs,
        logged={},
    )
    result.first = result.tally = tally(result.successes(), keys)
    not_queued = [
        line for line in system.log_lines(system.chalice_log)[chalice_log_before:] if '"note_job_not_queued"' in line
    ]
    failed = system.log_lines(system.handoff_failed_log)[failed_log_before:]
    result.logged = {"note_job_not_queued": len(not_queued), "note_handoff_failed": len(failed)}
    result.failed_statuses = failed_statuses(failed)
    if result.first.lost and (not_queued or failed):
        print(f"  {result.first.lost} lost; {len(not_queued) + len(failed)} job(s) or hand-off(s) only logged: "
              "requeuing them", flush=True)  # fmt: skip
        requeued_at = time.monotonic()
        result.requeue = requeue_logged(system, not_queued + failed)
        result.requeue_drain = wait_for_drain(system, results, worker_before["handled"], args.drain_timeout)
        if result.requeue_drain.drained_at is not None:
            result.requeue_seconds = max(result.requeue_drain.drained_at - requeued_at, 0.0)
        result.note_keys = note_keys(system, args)
        result.tally = tally(result.successes(), result.note_keys)
    worker_after = system.worker_counts()
    result.worker = {k: worker_after[k] - worker_before[k] for k in worker_after}
    result.standin = system.standin.stats()
    result.dead_letters = system.queue_counts(system.dead_queue) - dead_before
    result.worker_events = count_events(system.log_lines(system.worker_log)[worker_log_before:], WORKER_EVENTS)
    result.intake_events = count_events(system.log_lines(system.chalice_log)[chalice_log_before:], INTAKE_EVENTS)
    return result


def _drained(watch: DrainWatch | None, seconds: float | None, timeout: float) -> str:
    if watch is None:
        return "-"
    if seconds is None:
        return f"NOT drained within {timeout:.0f} s"
    return f"{seconds:.1f} s" + ("" if watch.complete else " (queue empty, jobs missing)")


def _notes_rows(table: Table, t: Tally, when: str) -> None:
    per_result = ", ".join(f"{n} note(s): {count}" for n, count in t.per_result.items())
    table.add(f"notes per successful result{when}", per_result or "-")
    table.add(f"notes in HOSP{when}", t.notes)
    table.add(f"duplicates (results with > 1 note){when}", f"{t.duplicates} ({t.extra_notes} extra notes)")
    table.add(f"lost (successful results with 0 notes){when}", t.lost)
    table.add(f"stray notes (no successful screen's result){when}", t.stray)
    table.add(f"notes naming none of their screens' request ids{when}", t.misattributed)


def notes_cells(result: NotesResult) -> Table:
    """Screens and notes by size and framing, and the re-sends."""
    table = Table(
        "3a. Notes by size and framing",
        ["size", "screens", "sent", "answered 200", "other answers", "notes per result", "p50 s", "max s"],
    )
    per_key = Counter(key for key, _ in result.note_keys if key is not None)
    cells: dict[tuple[int, str], list[Screen]] = defaultdict(list)
    for s in result.screens:
        framing = "re-sent, same image" if s.planned.resend else "chunked" if s.planned.chunked else "Content-Length"
        cells[(s.planned.size, framing)].append(s)
    for (size, framing), screens in sorted(cells.items()):
        ok = [s for s in screens if s.status == 200]
        others = Counter("no answer" if s.status is None else str(s.status) for s in screens if s.status != 200)
        keys = {s.key for s in ok if s.key is not None}
        notes = Counter(per_key.get(key, 0) for key in keys)
        seconds = [s.seconds for s in screens]
        table.add(
            size_label(size),
            framing,
            len(screens),
            f"{len(ok)} ({len(keys)} result{'s' if len(keys) != 1 else ''})",
            ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "-",
            ", ".join(f"{n} note(s): {c}" for n, c in sorted(notes.items())) or "-",
            f"{statistics.median(seconds):.2f}",
            f"{max(seconds):.2f}",
        )
    table.notes.append(
        "notes per result: of the results the screens answered 200 got, how many have 0, 1, 2... notes in HOSP "
        "at the end. A re-sent screen's sends share one image, so one result: exactly one note for all of them."
    )
    return table


def notes_table(result: NotesResult, args: argparse.Namespace) -> Table:
    statuses = Counter("no answer" if s.status is None else str(s.status) for s in result.screens)
    others = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k != "200") or "none"
    table = Table(
        f"3. Notes: {result.planned} screens of {', '.join(size_label(s) for s in args.notes_sizes)} through the "
        f"whole stack, {args.clients} clients, HOSP failing 10% (503) and resetting 3% of requests and committing "
        "then failing 15% of note writes",
        ["measure", "value"],
    )
    sent = len(result.screens)
    skipped = result.planned - sent
    table.add("screens sent", f"{sent}" + (f" ({skipped} skipped: time limit)" if skipped else ""))
    table.add("screens the nurse saw succeed (200)", f"{statuses.get('200', 0)}; other answers: {others}")
    unreadable = sum(1 for s in result.screens if s.status == 200 and s.key is None)
    table.add("distinct results among them", f"{result.tally.results} ({unreadable} answers without a screening_id)")
    table.add("sending took", f"{result.send_seconds:.1f} s")
    table.add("the front door's note_handoff for these screens (access log)", _states(result.handoffs))
    requeued = result.requeue_drain is not None
    _notes_rows(table, result.first, " (before any requeue)" if requeued else "")
    table.add(
        "logged for requeue: jobs the intake could not queue / hand-offs the proxy could not deliver",
        f"{result.logged.get('note_job_not_queued', 0)} / {result.logged.get('note_handoff_failed', 0)}"
        + (f" (the intake's status: {_states(result.failed_statuses)})" if result.failed_statuses else ""),
    )
    if requeued:
        table.add("  requeued from the logs (python -m chalicelib.requeue)", result.requeue)
        _notes_rows(table, result.tally, " (after the requeue)")
        table.add("time to drain after the requeue",
                  _drained(result.requeue_drain, result.requeue_seconds, args.drain_timeout))  # fmt: skip
    table.add("notes in the dead-letter queue", result.dead_letters)
    table.add("time to drain after the last screen", _drained(result.drain, result.drain_seconds, args.drain_timeout))
    worker = result.worker
    table.add("worker invocations: handled / failed (redelivered)", f"{worker['handled']} / {worker['failed']}")
    table.add(
        "worker log: written / already present / deferred / dead-lettered / queue calls failed",
        " / ".join(str(result.worker_events[name]) for name in WORKER_EVENTS),
    )
    table.add(
        "intake log: jobs queued / not queued / hand-offs refused / failed",
        " / ".join(str(result.intake_events[name]) for name in INTAKE_EVENTS),
    )
    routes = result.standin.get("by_route", {})
    outcomes = result.standin.get("by_outcome", {})
    table.add(
        "HOSP received: screens / POST /notes / GET /notes",
        " / ".join(str(routes.get(name, 0)) for name in ("POST /patients/{id}/screen", "POST /notes", "GET /notes")),
    )
    faults = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "ok") or "none"
    table.add("faults HOSP injected (all routes)", faults)
    table.notes += [
        "A note belongs to a result by the screening_id in its body (the stand-in's hash of the patient and the "
        "images: one per distinct screen), and names the request id of one of that result's screens, which is "
        "the X-Request-Id the nurse's answer carried. Every screen but the re-sent ones has its own image, so "
        "one result per screen.",
        "Faults: every route 503 10%, reset 3% (the front door retries a failed screen like an idempotent "
        "request); POST /notes also commit-then-fail 15% (the note is stored, the answer fails with 502). The "
        "worker reads before every write, tries 3 times per invocation, then leaves the message for redelivery.",
        f"Drained: the note queue empty (visible + in flight + delayed) and the worker's handled count up by the "
        f"number of distinct successful results; polled every {POLL_SECONDS} s. Faults are turned off before "
        "HOSP's notes are read.",
    ]
    return table


# --- main --------------------------------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> Table:
    table = Table("Environment", ["item", "value"])
    table.add("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("nproc", os.cpu_count())
    table.add("load average (1, 5, 15 min)", ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    table.add("nginx", binary_version([nginx_binary(), "-v"]))
    table.add("python", platform.python_version())
    table.add("chalice / moto / boto3", " / ".join(version_of(p) for p in ("chalice", "moto", "boto3")))
    return table


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def targets_table(lat: LatencyResult | None, memory: MemoryResult | None, notes: NotesResult | None) -> Table:
    table = Table("Targets", ["target", "measured", "met"])
    for measured in lat.sizes if lat is not None else []:
        rounds = [r for r in measured.rounds if FRONT in r and DIRECT in r]
        if not rounds:
            continue
        label = size_label(measured.size)
        if measured.size == SMALL_BYTES:
            p50, p99 = statistics.median(differences(rounds, "p50")), statistics.median(differences(rounds, "p99"))
            table.add(f"{label}: added p50 within +{ADDED_P50_TARGET_MS:g} ms", f"{p50:+.2f} ms",
                      _yes(p50 <= ADDED_P50_TARGET_MS))  # fmt: skip
            table.add(f"{label}: added p99 within +{ADDED_P99_TARGET_MS:g} ms", f"{p99:+.2f} ms",
                      _yes(p99 <= ADDED_P99_TARGET_MS))  # fmt: skip
        else:
            ratio = statistics.median(ratios(rounds))
            table.add(f"{label}: p50 within {LARGE_RATIO_TARGET - 1:.0%} of direct",
                      f"{ratio:.3f}x ({ratio - 1:+.1%})", _yes(ratio <= LARGE_RATIO_TARGET))  # fmt: skip
    for size, hwm, rss, is_flat in memory_flat(memory) if memory is not None else []:
        table.add(
            f"workers' memory flat after screens of {size_label(size)} (peak and RSS grow < half a body)",
            f"peak {hwm / KIB:+.1f} MiB, RSS {rss / KIB:+.1f} MiB",
            _yes(is_flat),
        )
    if notes is not None:
        for t, when in notes_tallies(notes):
            table.add(f"exactly one note per successful result{when}", f"{t.exactly_once} of {t.results}", _yes(t.met))
            table.add(f"0 duplicates{when}", t.duplicates, _yes(t.duplicates == 0))
            table.add(f"0 lost{when}", t.lost, _yes(t.lost == 0))
        resent = tally(notes.successes(resend=True), notes.note_keys)
        table.add(
            "identical re-sends: one note per re-sent screen",
            f"{resent.exactly_once} of {resent.results}",
            _yes(resent.exactly_once == resent.results and resent.misattributed == 0),
        )
        drained = (notes.requeue_drain or notes.drain).complete
        table.add("queue drained", _yes(drained), _yes(drained))
    return table


def notes_tallies(notes: NotesResult) -> list[tuple[Tally, str]]:
    if notes.requeue_drain is None:
        return [(notes.tally, "")]
    return [(notes.first, ", without the requeue"), (notes.tally, ", after the requeue")]


def notes_met(notes: NotesResult) -> bool:
    return all(t.met for t, _ in notes_tallies(notes)) and (notes.requeue_drain or notes.drain).complete


SECTIONS = ("latency", "memory", "notes")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.screen_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help="any of latency, memory, notes (default all)")
    p.add_argument("--latency-rounds", type=int, default=5, help="latency rounds; medians are printed (default 5)")
    p.add_argument("--latency-requests", type=int, default=400,
                   help=f"{size_label(SMALL_BYTES)} screens per path per round (default 400)")  # fmt: skip
    p.add_argument("--large-requests", type=int, default=24,
                   help=f"{size_label(LARGE_BYTES)} screens per path per round (default 24)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=10, help="warm-up screens per path and size, not counted (default 10)")
    p.add_argument("--memory-screens", type=int, default=100, help="requests per memory batch (default 100)")
    p.add_argument("--memory-sizes", default="1KiB,8MiB", help="memory batches' sizes, in order (default 1KiB,8MiB)")
    p.add_argument("--notes-sizes", default=NOTES_SIZES, help=f"the notes section's sizes (default {NOTES_SIZES})")
    p.add_argument("--notes-per-size", type=int, default=10,
                   help="screens per size and framing (chunked or not), each its own image (default 10)")  # fmt: skip
    p.add_argument("--resends", type=int, default=3, help="identical sends of one more screen per size (default 3)")
    p.add_argument("--patients", type=int, default=20, help="patients 1..N screened in turn (default 20, at most 20)")
    p.add_argument("--clients", type=int, default=2, help="concurrent clients of the notes section (default 2)")
    p.add_argument("--section-time-limit", type=float, default=300,
                   help="s; the screens a section has not sent by then are skipped (default 300)")  # fmt: skip
    p.add_argument("--drain-timeout", type=float, default=300, help="s to wait for the note queue (default 300)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the stand-in's faults and the notes' order")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, rendered configs)")
    p.add_argument("--serve-intake", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the bench's own intake
    args = p.parse_args(argv)
    if args.serve_intake is not None:
        return args
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not args.sections or set(args.sections) - set(SECTIONS):
        p.error(f"--sections takes {', '.join(SECTIONS)}, comma-separated")
    if not 1 <= args.patients <= 20:
        p.error("--patients must be in 1..20 (the stand-in has 20 patients)")
    for name in ("latency_rounds", "latency_requests", "large_requests", "memory_screens", "clients"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "notes_per_size", "resends"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    try:
        args.memory_sizes = parse_sizes(args.memory_sizes)
        args.notes_sizes = parse_sizes(args.notes_sizes)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_intake is not None:
        return serve_intake(args.serve_intake)
    tables: list[Table] = []

    def show(table: Table) -> None:
        tables.append(table)
        print("\n" + table.plain() + "\n", flush=True)

    lat: LatencyResult | None = None
    memory: MemoryResult | None = None
    notes: NotesResult | None = None
    try:
        show(environment())
        with run_directory(args.keep, "screen-bench", "logs and configs") as run_dir:
            if "latency" in args.sections or "memory" in args.sections:
                with running_backends(run_dir / "front-door", args.seed) as backends:
                    if "latency" in args.sections:
                        print("1. latency", flush=True)
                        lat = measure_latency(backends, args)
                        for table in latency_tables(lat, args):
                            show(table)
                    if "memory" in args.sections:
                        print("2. memory", flush=True)
                        memory = measure_memory(backends, args)
                        for table in memory_tables(memory, args):
                            show(table)
            if "notes" in args.sections:
                print("3. notes", flush=True)
                with running_system(run_dir / "stack", args.seed) as system:
                    notes = measure_notes(system, args)
                show(notes_table(notes, args))
                show(notes_cells(notes))
        show(targets_table(lat, memory, notes))
    except (BenchError, ProcessError) as error:
        print(f"screen_bench: {error}", file=sys.stderr)
        return 2
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(table.markdown() for table in tables))
    if notes is not None and not notes_met(notes):
        print("\nscreen_bench: one note per screen NOT met (see table 3)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
