"""Helpers shared by the tests: the HOSP stand-in as a process, demo credentials, the whole stack,
recording servers and a proxy in front of them, the proxy's access log."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest

from infra.nginx.render import Tuning
from local.hosp_standin.process import StandInProcess
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.nginx_proxy import NginxProxy
from local.processes import ROOT, free_port, moto_server
from local.stack import Ports, Stack

# The demo account the tests act as: a nurse (docs/hosp-api.yaml).
DEMO_USER, DEMO_PASSWORD = DEMO_ACCOUNTS[0].username, DEMO_ACCOUNTS[0].password
DEMO_AUTH = {"Authorization": DEMO_ACCOUNTS[0].authorization}
# HOSP's idle keep-alive timeout in the tests; the proxy's must stay below it.
HOSP_IDLE_TIMEOUT = 2.0
# The proxy's tuning in the tests that run it in front of the stand-in or a
# RecordingServer: timeouts well inside the tests' own, a retry budget no test
# runs out of, keep-alive below HOSP's idle timeout, and each access-log line
# written at once (the tests read the log right after each answer).
PROXY_TEST_TUNING = Tuning(
    tries=3,
    connect_timeout=0.5,
    try_timeout=2.0,
    deadline=4.0,
    write_timeout=4.0,
    client_timeout=2.0,
    keepalive_timeout=HOSP_IDLE_TIMEOUT / 2,
    interceptor_timeout=4.0,
    # Generous: these tests are about other things; the budget has tests of its own.
    retry_budget_ratio=10,
    retry_budget_floor=1000,
    access_log_buffer="off",
)
# How long a test waits for a request's access-log line.
ACCESS_LOG_TIMEOUT = 5.0


class Hosp(StandInProcess):
    """The stand-in with the shorthands the tests read best with."""

    def faults(self, **update: object) -> None:
        self.set_faults(update)

    def script(self, *outcomes: str) -> None:
        """HOSP's outcomes for its next requests, in arrival order."""
        self.set_faults({"script": list(outcomes)})

    def received(self) -> int:
        """API requests HOSP received since the last reset."""
        return int(self.stats()["total"])


@contextlib.contextmanager
def whole_stack(run_dir: Path) -> Iterator[Stack]:
    """The local stack as `make run` starts it, on free ports, with each access-log line written at once."""
    # Stack.stop ignores SIGINT and SIGTERM from then on, as the program it serves does:
    # give them back to pytest afterwards.
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    running = Stack(Ports(*(free_port() for _ in range(6))), run_dir, faults=None, seed=1)
    # The tests read the access log right after each answer.
    running.proxy.tuning = dataclasses.replace(running.proxy.tuning, access_log_buffer="off")
    try:
        running.start()
        yield running
    finally:
        running.stop()
        for signum, handler in saved.items():
            signal.signal(signum, handler)


MISSING_MOTO = "moto's server is not installed: `make test` installs it from requirements/dev.txt (moto[server])"


@contextlib.contextmanager
def local_aws(run_dir: Path) -> Iterator[str]:
    """A moto server on a free loopback port, its log in run_dir; yields its URL."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.fail(MISSING_MOTO, pytrace=False)
    with moto_server(free_port(), run_dir / "moto.log") as server:
        yield server.url


# --- raw HTTP: the path exactly as written, a body chunked when given as an iterable ---------

RAW_CLIENT_TIMEOUT = 30.0
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def request_id(self) -> str:
        """The answer's X-Request-Id; there must be exactly one."""
        values = self.headers.get_all("X-Request-Id") or []
        assert len(values) == 1, f"X-Request-Id headers: {values}"
        assert REQUEST_ID.fullmatch(values[0]), values[0]
        return values[0]

    def json(self) -> Any:
        return json.loads(self.body)


def send_raw(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> RawAnswer:
    """One request to 127.0.0.1:port with http.client, which sends the path exactly as written
    (requests would resolve "..", "." and "%31" first); an iterable body goes chunked."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=RAW_CLIENT_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return RawAnswer(response.status, response.headers, response.read())
    finally:
        connection.close()


class LoopbackHTTPServer:
    """An HTTP server on 127.0.0.1 in threads of this process, answering with `handler`;
    a context manager that shuts it down."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass
class Received:
    method: str
    path: str  # the request target as it arrived, query included
    headers: dict[str, str]
    body: bytes


class RecordingServer(LoopbackHTTPServer):
    """A loopback HTTP server standing in for the Chalice app (or HOSP): it keeps what it
    received and answers 200 with a small JSON body, or the next of `statuses`, or
    closes the connection without answering when `drop` is set."""

    ANSWER = b'{"from":"recorder"}'

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.drop = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                if recorder.drop:
                    self.close_connection = True
                    return
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                answer = RecordingServer.ANSWER
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def reset(self) -> None:
        self.received.clear()
        self.statuses.clear()
        self.drop = False

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """What it received, once that is `count` requests or `timeout` has passed: a screen's
        hand-off to the note intake follows the nurse's answer, and may arrive after it."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.received)


def proxy_in_front(
    upstream: str,
    app: RecordingServer,
    run_dir: Path,
    *,
    origin_secrets: tuple[str, ...] = (),
    public_names: tuple[str, ...] = (),
) -> NginxProxy:
    """The proxy, not yet started, in front of `upstream` (HOSP's place) with PROXY_TEST_TUNING and screens
    and /audit sent to `app`. Without origin secrets or public names, as `make run` renders it; with both,
    as production does."""
    return NginxProxy(
        upstream,
        run_dir,
        tuning=PROXY_TEST_TUNING,
        interceptor=app.address,
        origin_secrets=origin_secrets,
        public_names=public_names,
    )


# The request ids' salt in a rendered nginx.conf (server-common.conf's set_md5).
REQUEST_ID_SALT = re.compile(r'set_md5 \$hosp_new_request_id "([0-9a-f]{32}):')


def rendered_salt(config: str) -> str:
    """The salt of the request ids a rendered nginx.conf holds: each render draws its own."""
    found = REQUEST_ID_SALT.search(config)
    assert found is not None, "no set_md5 of the request id in the rendered nginx.conf"
    return found[1]


def access_log_raw_lines(proxy: NginxProxy) -> list[str]:
    """The whole lines of the proxy's access log, as NGINX wrote them, each decoded as strict UTF-8.

    A line NGINX is writing at that moment (a buffer of lines is one write) can be
    read in part: lines end with their newline, and a last one without it is left
    for the next read."""
    data = proxy.access_log.read_bytes()
    return [line.decode("utf-8") for line in data[: data.rfind(b"\n") + 1].splitlines()]


def access_log_lines(proxy: NginxProxy) -> list[dict[str, Any]]:
    """Every whole line of the proxy's access log (access_log_raw_lines), each decoded as JSON."""
    return [json.loads(line) for line in access_log_raw_lines(proxy)]


def access_log_entry(proxy: NginxProxy, request_id: str) -> dict[str, Any]:
    """The one access-log line of a request. NGINX writes it just after the answer's last byte,
    so the client may read first: wait up to ACCESS_LOG_TIMEOUT."""
    deadline = time.monotonic() + ACCESS_LOG_TIMEOUT
    while True:
        found = [entry for entry in access_log_lines(proxy) if entry["request_id"] == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line for request {request_id}")
        time.sleep(0.01)


# --- the whole stack as `make run` starts it ---------------------------------------------------

STACK_TIMEOUT = 180  # a bound for a stack that hangs on a loaded machine; passing runs take seconds
# The environment without a FAULTS the developer may have exported for `make run`.
STACK_ENV = {key: value for key, value in os.environ.items() if key != "FAULTS"}


def stack_argv(run_dir: Path, *extra: str) -> list[str]:
    """`python -m local.stack` on free ports, serving from run_dir."""
    return [sys.executable, "-m", "local.stack", "--free-ports", "--run-dir", str(run_dir), *extra]


@contextlib.contextmanager
def running_stack(run_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m local.stack` serving from run_dir: (its process, what it printed up to "Ctrl-C stops")."""
    with subprocess.Popen(
        stack_argv(run_dir), cwd=ROOT, env=STACK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as stack:
        watchdog = threading.Timer(STACK_TIMEOUT, stack.kill)  # a stack that never comes up fails, not hangs
        watchdog.start()
        try:
            assert stack.stdout is not None
            printed = ""
            for line in stack.stdout:
                printed += line
                if "Ctrl-C stops everything" in line:
                    break
            assert "is up" in printed, printed
            yield stack, printed
        finally:
            watchdog.cancel()
            if stack.poll() is None:
                stack.send_signal(signal.SIGINT)
                try:
                    stack.wait(timeout=STACK_TIMEOUT)
                except subprocess.TimeoutExpired:
                    stack.kill()
