"""HTTP clients of the reliability tables: a bounded number of requests, 1 or more threads.

Each thread keeps its own requests.Session (keep-alive to the proxy). A request fails,
for the client, on any non-2xx answer or a connection error. Every run is bounded in
count and in time: requests not started before the run's deadline are skipped and
reported as such.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from local.hosp_standin.store import DEMO_ACCOUNTS

# The stand-in's first demo account.
AUTH = {"Authorization": DEMO_ACCOUNTS[0].authorization}
GET_PATH = "/patients/1"
NOTE = {"title": "bench", "body": "proxy benchmark note", "patient_id": 1, "staff_id": 1}
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClientRun:
    sent: int
    failures: int  # non-2xx or connection error
    skipped: int  # not sent: the run's time limit was reached
    elapsed: float


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: connection error
    request_id: str


def send(session: requests.Session, base_url: str, method: str) -> Answer:
    """One GET of a patient, or one POST /notes."""
    body = NOTE if method == "POST" else None
    path = "/notes" if method == "POST" else GET_PATH
    try:
        answer = session.request(method, base_url + path, json=body, headers=AUTH, timeout=REQUEST_TIMEOUT)
    except requests.RequestException:
        return Answer(None, "")
    return Answer(answer.status_code, answer.headers.get("X-Request-Id", ""))


def is_failure(answer: Answer) -> bool:
    return answer.status is None or not 200 <= answer.status < 300


def run_clients(base_url: str, method: str, count: int, workers: int, time_limit: float) -> ClientRun:
    """`count` requests from `workers` threads; requests after `time_limit` seconds are skipped."""
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + time_limit

    def one(_: int) -> Answer | None:
        if time.monotonic() > stop_at:
            return None
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            with lock:
                sessions.append(session)
        return send(session, base_url, method)

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = list(pool.map(one, range(count)))
    finally:
        for session in sessions:
            session.close()
    elapsed = time.monotonic() - started
    done = [a for a in answers if a is not None]
    return ClientRun(len(done), sum(is_failure(a) for a in done), count - len(done), elapsed)


def send_once(base_url: str, method: str) -> Answer:
    with requests.Session() as session:
        return send(session, base_url, method)
