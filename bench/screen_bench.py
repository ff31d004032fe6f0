"""The screen benchmark: what the X-ray interceptor adds to a screen, and one note per screen.

    python -m bench.screen_bench                       # or: make bench-screen
    python -m bench.screen_bench --screens 400         # a quick check
    python -m bench.screen_bench --help

One run starts the local stack (local/stack.py: moto, the HOSP stand-in, NGINX with
its public and internal listeners, chalice local, the note worker loop) on free
loopback ports and prints, as plain text while it goes and as markdown at the end:
  1. latency: POST /patients/N/screen through the public listener (intercepted: chalice
     local, the internal listener, HOSP, the note job on the queue) next to the same POST
     on the internal listener (straight to HOSP through the same NGINX), alternated
     request by request, with what each part costs;
  2. exactly once: screens from concurrent clients while HOSP fails note writes and
     reads; once the queue has drained, every patient's notes are matched to the
     screens the clients saw succeed, by request id.
Every phase is bounded in count and time. See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import requests

from bench.report import Table
from bench.servers import BenchError, binary_version
from bench.toolkit import alternated, run_directory
from chalicelib import aws, constants, note_jobs
from local.hosp_standin.api import screen_images
from local.hosp_standin.process import StandInProcess
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.nginx_proxy import nginx_binary
from local.processes import ROOT, ProcessError, free_port
from local.stack import Ports, Stack

AUTH = {"Authorization": DEMO_ACCOUNTS[0].authorization}
SCREEN_HEADERS = {**AUTH, "Content-Type": "application/json"}
# The interceptor gives up on HOSP after 20 s (chalicelib/screen.py); a client waits longer.
SCREEN_TIMEOUT = 30.0
CONTROL_TIMEOUT = 10.0
IMAGE_BYTES = 1024
ADDED_P50_TARGET_MS = 10.0
# The stand-in's faults for the exactly-once phase: 20% of note writes fail, half of
# them after the note is stored; 5% of note reads fail; screens never fail.
ONCE_FAULTS: dict[str, Any] = {
    "routes": {
        "POST /notes": {"rates": {"502": 0.05, "reset": 0.05}, "commit_then_fail": {"rate": 0.1}},
        "GET /notes": {"rates": {"503": 0.05}},
        "POST /patients/{id}/screen": {},
    }
}
NO_ROUTE_FAULTS: dict[str, Any] = {"routes": dict.fromkeys(ONCE_FAULTS["routes"])}
QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
# The queue may read empty a moment before the worker counts the message it deleted.
SETTLE_SECONDS = 5.0
POLL_SECONDS = 0.25
SLOW_PART_MS = 30.0
# moto's SQS does each call in time linear in the queue's length; unpaced, 10,000 screens
# grow a backlog under which its calls time out and the interceptor logs the jobs instead.
DEFAULT_PACE = 10.0
WORKER_EVENTS = (
    "note_written",
    "note_already_present",
    "note_write_deferred",
    "note_job_dead_lettered",
    "note_queue_poll_failed",
)
CHALICE_EVENTS = ("note_job_queued", "note_job_not_queued", "screen_retry", "screen_failed", "screen_not_noted")


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


def image_for(tag: str, index: int, size: int = IMAGE_BYTES) -> str:
    """Base64 of `size` bytes that differ for every (tag, index): a distinct X-ray per screen."""
    seed = hashlib.sha256(f"{tag}:{index}".encode()).digest()
    raw = (seed * (size // len(seed) + 1))[:size]
    return base64.b64encode(raw).decode()


def patient_for(index: int, patients: int) -> int:
    """Screens go round the patients 1..patients."""
    return index % patients + 1


def note_request_id(body: object) -> str | None:
    """The request id a worker's note body carries ({"request_id": ...} in JSON), or None."""
    if not isinstance(body, str):
        return None
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    found = fields.get("request_id") if isinstance(fields, dict) else None
    return found if isinstance(found, str) and found else None


@dataclass(frozen=True)
class Tally:
    """The notes in HOSP matched to the screens the clients saw succeed."""

    successful: int  # distinct request ids of screens answered 200
    notes: int  # notes read from HOSP
    per_screen: dict[int, int]  # notes per successful screen -> how many screens have that many
    duplicates: int  # request ids with more than one note
    extra_notes: int  # notes beyond the first of those request ids
    lost: int  # successful screens with no note
    stray: int  # notes whose request id is no successful screen's (or that carry none)

    @property
    def exactly_once(self) -> int:
        return self.per_screen.get(1, 0)

    @property
    def met(self) -> bool:
        """Exactly one note per successful screen, and no other note."""
        return self.exactly_once == self.successful and self.notes == self.successful


def tally(succeeded: Iterable[str], note_ids: Iterable[str | None]) -> Tally:
    successes = set(succeeded)
    notes = list(note_ids)
    per_id = Counter(note_id for note_id in notes if note_id is not None)
    per_screen = Counter(per_id.get(request_id, 0) for request_id in successes)
    repeated = [count for count in per_id.values() if count > 1]
    return Tally(
        successful=len(successes),
        notes=len(notes),
        per_screen=dict(sorted(per_screen.items())),
        duplicates=len(repeated),
        extra_notes=sum(count - 1 for count in repeated),
        lost=per_screen.get(0, 0),
        stray=sum(1 for note_id in notes if note_id not in successes),
    )


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
    wanted = set(names)
    found: Counter[str] = Counter()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") in wanted:
            found[record["event"]] += 1
    return {name: found[name] for name in names}


def log_time_ms(text: str) -> float:
    """A log time ("2026-11-28T09:36:47.247+00:00", or with Z) in ms since the epoch."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


# The parts of an intercepted screen, in order; each from one stamp to the next.
TIMELINE = (
    ("intake", "public listener -> the interceptor starts (NGINX, chalice local's intake)"),
    ("to_call", "interceptor start -> its screen call reaches the internal listener"),
    ("call", "the screen call: internal listener + HOSP (request_time)"),
    ("queue", "HOSP's answer -> job queued (JSON, SQS SendMessage to moto)"),
    ("answer", "job queued -> the answer is back at the public listener (chalice local sends it)"),
    ("total", "total at the public listener (request_time)"),
    ("direct", "direct screens, for comparison: internal listener + HOSP (request_time)"),
)


def screen_spans(access_lines: Iterable[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """The POST .../screen lines of NGINX's access log: listener -> request id -> (start, end) in ms."""
    spans: dict[str, dict[str, tuple[float, float]]] = {"public": {}, "internal": {}}
    for line in access_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("method") != "POST":
            continue
        if not str(record.get("path", "")).endswith("/screen") or record.get("listener") not in spans:
            continue
        end = log_time_ms(str(record["time"]))
        spans[str(record["listener"])][str(record.get("request_id", ""))] = (
            end - float(record["request_time"]) * 1000,
            end,
        )
    return spans


def interceptor_stamps(chalice_lines: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Request id -> (the interceptor's start, the job queued) in ms, from chalice local's log.

    The ScreensIntercepted and NoteJobsQueued metric lines carry a time but no request
    id; the note_job_queued line after them names it. So this holds only while one
    screen runs at a time (the latency phase's single client).
    """
    stamps: dict[str, tuple[float, float]] = {}
    started: float | None = None
    queued: float | None = None
    for line in chalice_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "ScreensIntercepted" in record:
            started, queued = float(record["_aws"]["Timestamp"]), None
        elif "NoteJobsQueued" in record:
            queued = float(record["_aws"]["Timestamp"])
        elif record.get("event") == "note_job_queued" and started is not None and queued is not None:
            stamps[str(record.get("request_id", ""))] = (started, queued)
            started = queued = None
    return stamps


def timeline(
    access_lines: Iterable[str], chalice_lines: Iterable[str], intercepted: set[str], direct: set[str]
) -> dict[str, list[float]]:
    """Per-request ms of each TIMELINE part, for the request ids found in both logs."""
    spans = screen_spans(access_lines)
    public, internal = spans["public"], spans["internal"]
    parts: dict[str, list[float]] = {key: [] for key, _ in TIMELINE}
    for request_id, (started, queued) in interceptor_stamps(chalice_lines).items():
        if request_id not in intercepted or request_id not in public or request_id not in internal:
            continue
        (outer_start, outer_end), (call_start, call_end) = public[request_id], internal[request_id]
        parts["intake"].append(started - outer_start)
        parts["to_call"].append(call_start - started)
        parts["call"].append(call_end - call_start)
        parts["queue"].append(queued - call_end)
        parts["answer"].append(outer_end - queued)
        parts["total"].append(outer_end - outer_start)
    parts["direct"] = [end - start for r, (start, end) in internal.items() if r in direct]
    return parts


# --- the stack ---------------------------------------------------------------------------------


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

    @property
    def public_url(self) -> str:
        return self.stack.proxy.url

    @property
    def internal_url(self) -> str:
        return self.stack.proxy.internal_url

    @property
    def chalice_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.chalice}"

    def worker_counts(self) -> dict[str, int]:
        answer = requests.get(f"{self.stack.worker_url}/health", timeout=CONTROL_TIMEOUT)
        answer.raise_for_status()
        body = answer.json()
        return {name: int(body.get(name, 0)) for name in ("handled", "failed", "polls")}

    def queue_counts(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_COUNTS))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in QUEUE_COUNTS)

    def log_lines(self, name: str) -> list[str]:
        path = self.stack.run_dir / name
        return path.read_text(errors="replace").splitlines() if path.exists() else []


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


def screen_body(tag: str, index: int) -> bytes:
    return json.dumps({"images": [image_for(tag, index)]}).encode()


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


# --- 1: latency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    ms: float
    ok: bool
    request_id: str = ""


Probe = Callable[[int], Sample]


def timed_post(session: requests.Session, url: str, body: bytes) -> Sample:
    started = time.perf_counter()
    try:
        answer = session.post(url, data=body, headers=SCREEN_HEADERS, timeout=SCREEN_TIMEOUT)
    except requests.RequestException:
        return Sample((time.perf_counter() - started) * 1000, False)
    elapsed = (time.perf_counter() - started) * 1000
    return Sample(elapsed, answer.status_code == 200, answer.headers.get("X-Request-Id", ""))


@dataclass
class LatencyTargets:
    """The things timed request by request; each its own keep-alive session."""

    system: System
    tag: str
    patients: int
    probe_queue: str
    job_body: str
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    def probes(self) -> dict[str, Probe]:
        return {
            "intercepted": lambda i: self.screen("intercepted", self.system.public_url, i),
            "direct": lambda i: self.screen("direct", self.system.internal_url, i),
            "hosp": lambda i: self.screen("hosp", self.system.standin.url, i),
            "chalice /health": self.chalice_health,
            "sqs send": self.sqs_send,
        }

    def session(self, name: str) -> requests.Session:
        if name not in self.sessions:
            self.sessions[name] = requests.Session()
            self.sessions[name].trust_env = False
        return self.sessions[name]

    def screen(self, name: str, base_url: str, index: int) -> Sample:
        url = f"{base_url}/patients/{patient_for(index, self.patients)}/screen"
        return timed_post(self.session(name), url, screen_body(f"{self.tag}:{name}", index))

    def chalice_health(self, index: int) -> Sample:
        started = time.perf_counter()
        answer = self.session("chalice").get(f"{self.system.chalice_url}/health", timeout=CONTROL_TIMEOUT)
        return Sample((time.perf_counter() - started) * 1000, answer.status_code == 200)

    def sqs_send(self, index: int) -> Sample:
        started = time.perf_counter()
        self.system.sqs.send_message(
            QueueUrl=self.probe_queue, MessageBody=self.job_body,
            MessageGroupId=str(patient_for(index, self.patients)), MessageDeduplicationId=uuid.uuid4().hex,
        )  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        # Not timed: taken off again, so that the probe queue stays as short as the note
        # queue the worker drains (moto's SendMessage slows down as a queue grows).
        taken = self.system.sqs.receive_message(QueueUrl=self.probe_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in taken.get("Messages", []):
            self.system.sqs.delete_message(QueueUrl=self.probe_queue, ReceiptHandle=message["ReceiptHandle"])
        return Sample(elapsed, True)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


def job_sized_body() -> str:
    """A note job as the interceptor queues it, for one screen of one image."""
    results = screen_images(1, [base64.b64decode(image_for("probe", 0))])
    answer = json.dumps(results).encode()
    return note_jobs.new_job(1, results, DEMO_ACCOUNTS[0].username, uuid.uuid4().hex, answer).to_json()


@dataclass
class LatencyResult:
    rounds: list[dict[str, Latency]]
    errors: Counter[str]
    ids: dict[str, set[str]]
    timeline: dict[str, list[float]] = field(default_factory=dict)


def measure_latency(system: System, args: argparse.Namespace) -> LatencyResult:
    probe_queue = system.sqs.create_queue(
        QueueName="screen-bench-probe.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    )["QueueUrl"]
    targets = LatencyTargets(system, uuid.uuid4().hex[:12], args.patients, probe_queue, job_sized_body())
    probes = targets.probes()
    names = list(probes)
    result = LatencyResult([], Counter(), {"intercepted": set(), "direct": set()})
    index = 0
    try:
        for name in alternated(names, args.warmup):  # connections, pools, imports warm; not counted
            probes[name](index)
            index += 1
        for round_number in range(args.latency_rounds):
            samples: dict[str, list[float]] = {name: [] for name in names}
            for name in alternated(names, args.latency_requests):
                sample = probes[name](index)
                index += 1
                if not sample.ok:
                    result.errors[name] += 1
                    continue
                samples[name].append(sample.ms)
                if name in result.ids and sample.request_id:
                    result.ids[name].add(sample.request_id)
            summary = {name: latency(values) for name, values in samples.items() if values}
            result.rounds.append(summary)
            i, d = summary["intercepted"], summary["direct"]
            print(
                f"  round {round_number + 1}/{args.latency_rounds}: intercepted p50 {i.p50:.2f} p99 {i.p99:.2f} ms, "
                f"direct p50 {d.p50:.2f} p99 {d.p99:.2f} ms, added p50 {i.p50 - d.p50:+.2f} ms",
                flush=True,
            )
    finally:
        targets.close()
        system.sqs.delete_queue(QueueUrl=probe_queue)
    time.sleep(2.5)  # NGINX writes its buffered access log at least every second
    access = system.stack.proxy.access_log.read_text(errors="replace").splitlines()
    result.timeline = timeline(access, system.log_lines("chalice.log"), result.ids["intercepted"], result.ids["direct"])
    return result


def median_of(rounds: list[dict[str, Latency]], name: str, attribute: str) -> float:
    return statistics.median(getattr(r[name], attribute) for r in rounds if name in r)


def latency_tables(result: LatencyResult, args: argparse.Namespace) -> list[Table]:
    rounds = result.rounds
    per_round = [f"{args.latency_requests}", f"{args.latency_rounds} rounds"]
    table = Table(
        f"1. Latency of one screen, intercepted vs direct ({per_round[0]} requests each per round, "
        f"{per_round[1]}, one client, alternated)",
        ["path", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "p50 by round", "errors"],
    )
    direct_p50, direct_p99 = median_of(rounds, "direct", "p50"), median_of(rounds, "direct", "p99")
    labels = {
        "intercepted": "intercepted: public listener -> chalice local -> internal -> HOSP, + SQS send",
        "direct": "direct: internal listener -> HOSP (same NGINX)",
        "hosp": "HOSP stand-in alone (no NGINX)",
        "chalice /health": "chalice local GET /health (no NGINX, no HOSP)",
        "sqs send": "SQS SendMessage of a note job to moto (boto3)",
    }
    for name, label in labels.items():
        if not any(name in r for r in rounds):
            continue
        p50, p99 = median_of(rounds, name, "p50"), median_of(rounds, name, "p99")
        screens = name in ("intercepted", "hosp")
        added50 = f"{p50 - direct_p50:+.2f}" if screens else "-"
        added99 = f"{p99 - direct_p99:+.2f}" if screens else "-"
        by_round = ", ".join(f"{r[name].p50:.2f}" for r in rounds if name in r)
        table.add(label, f"{p50:.2f}", f"{p99:.2f}", added50, added99, by_round, result.errors.get(name, 0))
    added = [r["intercepted"].p50 - r["direct"].p50 for r in rounds]
    table.notes += [
        f"added p50 round by round (same round, same noise): {', '.join(f'{a:+.2f}' for a in added)} ms.",
        "p50/p99: medians over the rounds of each round's percentiles (linear interpolation). Each step sends one "
        "request to every target, in an order rotated by one at every step; "
        f"{args.warmup} warm-up steps first. Every screen carries its own {IMAGE_BYTES}-byte image, patients "
        f"1..{args.patients} in turn; no faults. The note worker drains the intercepted screens' jobs meanwhile, "
        "on the same 2 cores.",
        "'hosp' added: the stand-in alone minus direct, i.e. minus what the internal listener costs.",
    ]
    tables = [table]
    if result.timeline:
        tables.append(timeline_table(result.timeline))
    return tables


def timeline_table(parts: dict[str, list[float]]) -> Table:
    table = Table(
        "1b. Where an intercepted screen's time goes (NGINX's access log and the interceptor's log)",
        ["part", "p50 ms", "p99 ms", "mean ms", f"over {SLOW_PART_MS:g} ms", "requests"],
    )
    for key, label in TIMELINE:
        values = parts.get(key, [])
        if values:
            summary = latency(values)
            slow = sum(1 for v in values if v > SLOW_PART_MS)
            mean = statistics.mean(values)
            table.add(label, f"{summary.p50:.1f}", f"{summary.p99:.1f}", f"{mean:.1f}", slow, len(values))
    table.notes.append(
        "From stamps in whole milliseconds, joined on X-Request-Id, pooled over the rounds: NGINX's end time "
        "and request_time of each listener's line, and the interceptor's ScreensIntercepted and NoteJobsQueued "
        "metric times. The parts add up to the total; each is +-1 ms. "
        f"'over {SLOW_PART_MS:g} ms': requests whose part took longer, e.g. a send that waited for a delayed ACK."
    )
    return table


# --- 2: exactly once ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    index: int
    patient: int
    status: int | None  # None: no answer (connection error, timeout)
    request_id: str
    answered_at: float
    seconds: float  # from sending the screen to its answer


def send_screens(system: System, args: argparse.Namespace, tag: str) -> tuple[list[Screen], int]:
    """args.screens screens from args.clients threads; returns them and how many were skipped (time limit)."""
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + args.send_time_limit
    done = [0]
    stopping = threading.Event()  # Ctrl-C: the screens not yet sent are skipped

    def one(index: int) -> Screen | None:
        if args.pace > 0:  # screen i leaves no earlier than i / pace seconds after the first
            stopping.wait(max(0.0, started + index / args.pace - time.monotonic()))
        if time.monotonic() > stop_at or stopping.is_set():
            return None
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
            with lock:
                sessions.append(session)
        patient = patient_for(index, args.patients)
        url = f"{system.public_url}/patients/{patient}/screen"
        sent_at = time.monotonic()
        try:
            answer = session.post(url, data=screen_body(tag, index), headers=SCREEN_HEADERS, timeout=SCREEN_TIMEOUT)
            status, request_id = answer.status_code, answer.headers.get("X-Request-Id", "")
        except requests.RequestException:
            status, request_id = None, ""
        with lock:
            done[0] += 1
            if done[0] % max(args.screens // 10, 1) == 0:
                print(f"  {done[0]}/{args.screens} screens answered", flush=True)
        answered_at = time.monotonic()
        return Screen(index, patient, status, request_id, answered_at, answered_at - sent_at)

    try:
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            try:
                answers = list(pool.map(one, range(args.screens)))
            except KeyboardInterrupt:
                stopping.set()
                raise
    finally:
        for session in sessions:
            session.close()
    screens = [s for s in answers if s is not None]
    return screens, args.screens - len(screens)


def read_notes(system: System, patients: int) -> list[dict[str, Any]]:
    """Every note of patients 1..patients, read from the stand-in itself; a read its faults refuse is tried again."""
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
class OnceResult:
    screens: list[Screen]
    skipped: int
    send_seconds: float
    first: Tally  # before any job logged as not queued is queued again
    tally: Tally  # at the end
    drain: DrainWatch
    drain_seconds: float | None
    handled_at_last_screen: int
    worker: dict[str, int]
    dead_letters: int
    standin: dict[str, Any]
    worker_events: dict[str, int]
    chalice_events: dict[str, int]
    not_queued: list[note_jobs.NoteJob] = field(default_factory=list)
    not_queued_reasons: Counter[str] = field(default_factory=Counter)
    lost_not_queued: int = 0  # of the first tally's lost screens, those whose job the interceptor logged
    requeue: str = ""  # what `python -m chalicelib.requeue` said
    requeue_drain: DrainWatch | None = None
    requeue_seconds: float | None = None


def requeue_logged(system: System, lines: list[str]) -> str:
    """The operator's way back for jobs the interceptor could only log (chalicelib/requeue.py):
    the log lines through `python -m chalicelib.requeue`, with the Lambdas' environment."""
    done = subprocess.run(
        [sys.executable, "-m", "chalicelib.requeue"], input="\n".join(lines) + "\n", text=True,
        capture_output=True, env=system.stack.lambda_environment(), cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    said = done.stderr.strip().splitlines()
    return f"{said[-1] if said else 'no output'} (exit status {done.returncode})"


def note_ids(system: System, args: argparse.Namespace) -> list[str | None]:
    """The request id of every note of patients 1..args.patients in HOSP (None: the note names none)."""
    return [note_request_id(note.get("body")) for note in read_notes(system, args.patients)]


def measure_once(system: System, args: argparse.Namespace) -> OnceResult:
    # Jobs of the latency phase first, so that the worker's counts and HOSP's notes are this phase's only.
    before = wait_for_drain(system, 0, 0, args.drain_timeout)
    if before.drained_at is None:
        raise BenchError("the note queue did not drain after the latency phase")
    system.standin.reset(ONCE_FAULTS)
    worker_before = system.worker_counts()
    dead_before = system.queue_counts(system.dead_queue)
    worker_log_before = len(system.log_lines("note-worker.log"))
    chalice_log_before = len(system.log_lines("chalice.log"))
    tag = uuid.uuid4().hex[:12]
    pace = f"{args.pace:g} screens/s" if args.pace > 0 else "unpaced"
    print(f"  {args.screens} screens, patients 1..{args.patients}, {args.clients} clients, {pace}; "
          f"faults {ONCE_FAULTS}", flush=True)  # fmt: skip
    started = time.monotonic()
    screens, skipped = send_screens(system, args, tag)
    last = max((s.answered_at for s in screens), default=time.monotonic())
    handled_at_last = system.worker_counts()["handled"] - worker_before["handled"]
    succeeded = [s.request_id for s in screens if s.status == 200]
    print(f"  sent in {last - started:.1f} s; {len(succeeded)} answered 200; worker handled {handled_at_last} "
          "so far; waiting for the queue to drain", flush=True)  # fmt: skip
    drain = wait_for_drain(system, len(succeeded), worker_before["handled"], args.drain_timeout)
    drain_seconds = None if drain.drained_at is None else max(drain.drained_at - last, 0.0)
    noted = note_ids(system, args)
    first = tally(succeeded, noted)
    chalice_lines = system.log_lines("chalice.log")[chalice_log_before:]
    logged = [line for line in chalice_lines if '"note_job_not_queued"' in line]
    not_queued, _unreadable = note_jobs.jobs_in_log(logged)
    reasons = Counter(_reason(line) for line in logged)
    lost_ids = set(succeeded) - set(noted)
    result = OnceResult(
        screens=screens,
        skipped=skipped,
        send_seconds=last - started,
        first=first,
        tally=first,
        drain=drain,
        drain_seconds=drain_seconds,
        handled_at_last_screen=handled_at_last,
        worker={},
        dead_letters=0,
        standin={},
        worker_events={},
        chalice_events={},
        not_queued=not_queued,
        not_queued_reasons=reasons,
        lost_not_queued=len(lost_ids & {job.request_id for job in not_queued}),
    )
    if not_queued:
        print(f"  {first.lost} lost; the interceptor logged {len(not_queued)} job(s) as not queued: "
              "requeuing them from its log", flush=True)  # fmt: skip
        requeued_at = time.monotonic()
        result.requeue = requeue_logged(system, logged)
        result.requeue_drain = wait_for_drain(system, len(succeeded), worker_before["handled"], args.drain_timeout)
        if result.requeue_drain.drained_at is not None:
            result.requeue_seconds = max(result.requeue_drain.drained_at - requeued_at, 0.0)
        result.tally = tally(succeeded, note_ids(system, args))
    worker_after = system.worker_counts()
    result.worker = {k: worker_after[k] - worker_before[k] for k in worker_after}
    result.standin = system.standin.stats()
    system.standin.set_faults(NO_ROUTE_FAULTS)
    result.dead_letters = system.queue_counts(system.dead_queue) - dead_before
    result.worker_events = count_events(system.log_lines("note-worker.log")[worker_log_before:], WORKER_EVENTS)
    result.chalice_events = count_events(system.log_lines("chalice.log")[chalice_log_before:], CHALICE_EVENTS)
    return result


def _reason(line: str) -> str:
    """The gist of a note_job_not_queued line's reason ("ReadTimeoutError", ...)."""
    try:
        reason = str(json.loads(line).get("reason", ""))
    except (ValueError, AttributeError):
        return "unreadable line"
    return reason.split(":", maxsplit=1)[0] or "no reason"


def _drained(watch: DrainWatch | None, seconds: float | None, timeout: float) -> str:
    if watch is None:
        return "-"
    if seconds is None:
        return f"NOT drained within {timeout:.0f} s"
    return f"{seconds:.1f} s" + ("" if watch.complete else " (queue empty, jobs missing)")


def _notes_rows(table: Table, t: Tally, when: str) -> None:
    per_screen = ", ".join(f"{n} note(s): {count}" for n, count in t.per_screen.items())
    table.add(f"notes present per successful screen{when}", per_screen or "-")
    table.add(f"notes in HOSP{when}", t.notes)
    table.add(f"duplicates (request ids with > 1 note){when}", f"{t.duplicates} ({t.extra_notes} extra notes)")
    table.add(f"lost (successful screens with 0 notes){when}", t.lost)
    table.add(f"stray notes (no successful screen's request id){when}", t.stray)


def once_table(result: OnceResult, args: argparse.Namespace) -> Table:
    statuses = Counter("no answer" if s.status is None else str(s.status) for s in result.screens)
    others = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k != "200") or "none"
    pace = f", paced at {args.pace:g} screens/s" if args.pace > 0 else ""
    table = Table(
        f"2. Exactly once: {args.screens} screens, {args.patients} patients, {args.clients} clients{pace}, "
        "20% of note writes and 5% of note reads failing",
        ["measure", "value"],
    )
    sent = len(result.screens)
    table.add("screens sent", f"{sent}" + (f" ({result.skipped} skipped: time limit)" if result.skipped else ""))
    table.add("screens the nurse saw succeed (200)", f"{statuses.get('200', 0)}; other answers: {others}")
    table.add("sending took", f"{result.send_seconds:.1f} s ({sent / max(result.send_seconds, 1e-9):.0f} screens/s)")
    if result.screens:
        seen = latency([s.seconds * 1000 for s in result.screens])
        table.add("a screen's answer took (client side)", f"p50 {seen.p50:.0f} ms, p99 {seen.p99:.0f} ms")
    requeued = result.requeue_drain is not None
    _notes_rows(table, result.first, " (before any requeue)" if requeued else "")
    reasons = ", ".join(f"{k} {v}" for k, v in result.not_queued_reasons.most_common()) or "-"
    table.add("jobs the interceptor could not queue (logged)", f"{len(result.not_queued)} ({reasons})")
    if requeued:
        table.add(
            "  of the lost screens, jobs logged as not queued", f"{result.lost_not_queued} of {result.first.lost}"
        )
        table.add("  requeued from the log (python -m chalicelib.requeue)", result.requeue)
        _notes_rows(table, result.tally, " (after the requeue)")
    table.add("notes in the dead-letter queue", result.dead_letters)
    table.add("time to drain after the last screen", _drained(result.drain, result.drain_seconds, args.drain_timeout))
    if requeued:
        table.add(
            "time to drain after the requeue",
            _drained(result.requeue_drain, result.requeue_seconds, args.drain_timeout),
        )
    table.add("jobs handled by the last screen's answer", result.handled_at_last_screen)
    worker = result.worker
    table.add("worker invocations: handled / failed (redelivered)", f"{worker['handled']} / {worker['failed']}")
    events = result.worker_events
    table.add(
        "worker log: written / already present / deferred / dead-lettered / queue calls failed",
        " / ".join(str(events[name]) for name in WORKER_EVENTS),
    )
    chalice = result.chalice_events
    table.add(
        "interceptor log: jobs queued / not queued / screen retries",
        f"{chalice['note_job_queued']} / {chalice['note_job_not_queued']} / {chalice['screen_retry']}",
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
        "A note belongs to a screen by the request id in its body, which is the X-Request-Id the nurse's answer "
        "carried. Faults: POST /notes 502 5%, reset 5%, commit-then-fail 10% (the note is stored, the answer "
        "fails); GET /notes 503 5%; screens none. The worker reads before every write, tries 3 times per "
        "invocation, then leaves the message for redelivery after 15 s, doubling (chalicelib/note_worker.py).",
        f"Drained: the note queue empty (visible + in flight + delayed) and the worker's handled count up by the "
        f"number of successful screens; polled every {POLL_SECONDS} s.",
        "A job the interceptor cannot queue (SendMessage failed after botocore's attempts) is logged in full "
        "(note_job_not_queued) and the nurse still gets the answer; the bench then does what an operator "
        "would (chalicelib/requeue.py) and counts the notes before and after.",
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
    table.add("nginx", binary_version([nginx_binary(), "-v"]))
    table.add("python", platform.python_version())
    table.add("chalice / moto / boto3", " / ".join(version_of(p) for p in ("chalice", "moto", "boto3")))
    return table


def targets_table(latency_result: LatencyResult | None, once: OnceResult | None) -> Table:
    table = Table("Targets", ["target", "measured", "met"])
    if latency_result is not None and latency_result.rounds:
        rounds = latency_result.rounds
        added = median_of(rounds, "intercepted", "p50") - median_of(rounds, "direct", "p50")
        table.add(
            f"added p50 of an intercepted screen < {ADDED_P50_TARGET_MS:g} ms",
            f"{added:+.2f} ms",
            "yes" if added < ADDED_P50_TARGET_MS else "no",
        )
    if once is not None:
        for t, when in once_tallies(once):
            table.add(
                f"exactly one note per successful screen{when}", f"{t.exactly_once} of {t.successful}", _yes(t.met)
            )
            table.add(f"0 duplicates{when}", t.duplicates, _yes(t.duplicates == 0))
            table.add(f"0 lost{when}", t.lost, _yes(t.lost == 0))
        drained = (once.requeue_drain or once.drain).complete
        table.add("queue drained", _yes(drained), _yes(drained))
    return table


def once_tallies(once: OnceResult) -> list[tuple[Tally, str]]:
    if once.requeue_drain is None:
        return [(once.tally, "")]
    return [(once.first, ", without the requeue"), (once.tally, ", after the requeue")]


def once_met(once: OnceResult) -> bool:
    return all(t.met for t, _ in once_tallies(once)) and (once.requeue_drain or once.drain).complete


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.screen_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default="latency,once", help="latency, once or both (default both)")
    p.add_argument("--latency-requests", type=int, default=300, help="requests per target per round (default 300)")
    p.add_argument("--latency-rounds", type=int, default=3, help="latency rounds; medians are printed (default 3)")
    p.add_argument("--warmup", type=int, default=30, help="warm-up requests per target, not counted (default 30)")
    p.add_argument("--screens", type=int, default=10_000, help="screens in the exactly-once phase (default 10000)")
    p.add_argument("--patients", type=int, default=20, help="patients 1..N screened in turn (default 20, at most 20)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the exactly-once phase (default 8)")
    p.add_argument(
        "--pace",
        type=float,
        default=DEFAULT_PACE,
        help=f"screens per second, all clients together; 0: as fast as they go (default {DEFAULT_PACE:g}, "
        "what moto's SQS keeps up with here; see bench/README.md)",
    )
    p.add_argument("--send-time-limit", type=float, default=1800, help="s; screens not sent by then are skipped")
    p.add_argument("--drain-timeout", type=float, default=1800, help="s to wait for the note queue (default 1800)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the stand-in's faults (default 2024)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, rendered configs)")
    args = p.parse_args(argv)
    if not 1 <= args.patients <= 20:
        p.error("--patients must be in 1..20 (the stand-in has 20 patients)")
    for name in ("latency_requests", "latency_rounds", "screens", "clients"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = set(args.sections.split(","))
    tables: list[Table] = []

    def show(table: Table) -> None:
        tables.append(table)
        print("\n" + table.plain() + "\n", flush=True)

    latency_result: LatencyResult | None = None
    once: OnceResult | None = None
    try:
        show(environment())
        with (
            run_directory(args.keep, "screen-bench", "logs and configs") as run_dir,
            running_system(run_dir, args.seed) as system,
        ):
            if "latency" in sections:
                print("1. latency", flush=True)
                latency_result = measure_latency(system, args)
                for table in latency_tables(latency_result, args):
                    show(table)
            if "once" in sections:
                print("2. exactly once", flush=True)
                once = measure_once(system, args)
                show(once_table(once, args))
        show(targets_table(latency_result, once))
    except (BenchError, ProcessError) as error:
        print(f"screen_bench: {error}", file=sys.stderr)
        return 2
    print("\n---- markdown (for docs/benchmarks.md) ----\n")
    print("\n\n".join(table.markdown() for table in tables))
    if once is not None and not once_met(once):
        print("\nscreen_bench: exactly once NOT met (see table 2)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
