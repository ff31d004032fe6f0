"""The whole system on one machine: `make run` (python -m local.stack).

Starts, each as a real server on loopback:
  HOSP stand-in   http://127.0.0.1:9000   (local/hosp_standin, faults off unless --faults)
  NGINX proxy     http://127.0.0.1:8080   (infra/nginx, rendered for loopback)
  NGINX internal  http://127.0.0.1:8081   (the Lambdas' way to HOSP; never a hand-off)
  chalice local   http://127.0.0.1:8000   (app.py, stage "local": the note intake, the audit trail's API)
  note worker     http://127.0.0.1:8001   (local/note_worker_loop.py: the Lambda's handler, draining the queue)
  local AWS       http://127.0.0.1:5000   (moto in server mode; AWS_ENDPOINT_URL; the note queues)
  NGINX edge      https://hosp.localhost:8443 (local/edge: CloudFront played in front of 8080;
                  http://127.0.0.1:8088 answers 301 to HTTPS; clients trust .local/edge/ca.pem)
Ctrl-C stops everything. `--smoke` starts the stack, checks one request through
each server and stops again (the integration tests use it).

Before starting anything it checks the faults (with the stand-in's own parser),
takes its run directory for itself (one stack per run directory: a second one
is refused before it touches any file there) and checks that every port is free.
The stack is "up" once each server we started still runs, listens on its ports
and answers its own health check, not merely once something answers on its port.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import http.client
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import requests

from chalicelib import constants
from local import audit_buckets, cognito, note_queue
from local.edge.server import HTTP_PORT as EDGE_HTTP_PORT
from local.edge.server import HTTPS_PORT as EDGE_PORT
from local.edge.server import LocalEdge, new_origin_secret
from local.hosp_standin.faults import DEFAULT_CONFIG, FaultConfigError, apply_update, parse_fault_flag
from local.hosp_standin.process import StandInProcess
from local.hosp_standin.store import DEMO_ACCOUNTS, NOTES_SERVICE_ACCOUNT
from local.nginx_proxy import NginxProxy
from local.processes import (
    ROOT,
    CommandServer,
    LoopbackServer,
    ProcessError,
    free_port,
    http_check,
    log_tail,
    moto_server,
    port_in_use,
    port_user,
    reports_ok,
)

# `make run FAULTS=...` passes its value here through the environment, never through
# shell text, so that no value (a quote, say) can break the command line.
FAULTS_VARIABLE = "FAULTS"
DEMO_ACCOUNT = DEMO_ACCOUNTS[0]
USAGE_ERROR = 2
SMOKE_IMAGE = "aGVsbG8gd29ybGQ="  # any base64 is an image to the stand-in
SMOKE_NOTE_TIMEOUT = 15.0
ACCESS_LOG_FLUSH = 1.0  # seconds: the access log's flush interval when buffered
AUDIT_WORK_DIR = "audit"  # in the run directory: the local audit exports' CSVs before their upload
LOCK_FILE = "stack.lock"  # in the run directory; holds the pid of the stack that runs there
LOCK_ATTEMPTS = 5
HOLDER_WAIT = 1.0  # seconds: for a stack that has just taken the lock to write its pid


@dataclass(frozen=True)
class Ports:
    hosp: int
    proxy: int
    internal: int
    chalice: int
    worker: int
    aws: int
    # The edge's HTTPS and plain-HTTP ports; 0: a free port, picked when the stack is built.
    edge: int = 0
    edge_http: int = 0

    def all(self) -> tuple[int, ...]:
        return (self.hosp, self.proxy, self.internal, self.chalice, self.worker, self.aws, self.edge, self.edge_http)

    def with_edge_ports(self) -> Ports:
        """These ports, with free ones for the edge where none is set."""
        return dataclasses.replace(self, edge=self.edge or free_port(), edge_http=self.edge_http or free_port())


@dataclass
class Member:
    """One server of the stack, how to tell it is up, and where it explains a failure."""

    name: str
    server: LoopbackServer
    health: Callable[[], bool] | None = None  # None: the server's own `healthy`
    log: Path | None = None  # None: where the server's output goes
    after_start: Callable[[], None] | None = None  # set-up that needs the server up

    @property
    def log_file(self) -> Path | None:
        return self.log or self.server.log_path


def fault_flags(faults: str | None) -> list[str]:
    """'503=0.1, reset=0.02' as the stand-in's `--fault` values."""
    return [flag.strip() for flag in (faults or "").split(",") if flag.strip()]


def check_faults(flags: list[str]) -> None:
    """Raises FaultConfigError as the stand-in would, before any server starts."""
    config = DEFAULT_CONFIG
    for flag in flags:  # in the stand-in's order: each flag on top of the previous ones
        config = apply_update(config, parse_fault_flag(flag))


def ports_in_use(ports: Ports) -> list[str]:
    """One line per port a server of ours could not bind."""
    return [f"port {port} is in use by {port_user(port)}" for port in ports.all() if port_in_use(port)]


class RunDirInUse(ProcessError):
    """Another local stack runs with this run directory."""

    def __init__(self, run_dir: Path, holder: int | None) -> None:
        if holder is None:
            who, stop = "another local stack", "Ctrl-C where it runs"
        else:
            who, stop = f"another local stack (pid {holder})", f"Ctrl-C where it runs, or `kill {holder}`"
        super().__init__(
            f"the run directory {run_dir} is in use by {who}; stop that one first ({stop}), "
            "or give this one another --run-dir"
        )
        self.holder = holder


class RunDirLock:
    """One stack per run directory: an exclusive flock on run_dir/stack.lock for the stack's life.

    The second stack would overwrite the first's configs, secret and pid files and
    share its logs. The kernel drops the lock when the holder ends, however it ends
    (kill -9 too), so a file left behind never blocks the next stack. The file holds
    the holder's pid, for the message, and is removed on release.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises RunDirInUse naming the holder; nothing else in the directory is touched."""
        if self._descriptor is not None:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for _ in range(LOCK_ATTEMPTS):
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no truncation: maybe not ours
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _lock_holder(descriptor)
                    os.close(descriptor)
                    raise RunDirInUse(self.run_dir, holder) from None
                if _is_file_at(descriptor, self.path):
                    os.ftruncate(descriptor, 0)
                    os.write(descriptor, f"{os.getpid()}\n".encode())
                    self._descriptor = descriptor
                    return
                # Locked a file its last holder had just removed on release: take the new one.
                os.close(descriptor)
        except OSError as exc:
            raise ProcessError(f"cannot lock the run directory {self.run_dir}: {exc}") from exc
        raise RunDirInUse(self.run_dir, None)

    def release(self) -> None:
        if self._descriptor is None:
            return
        # Removed while still locked, so that no stack can lock this file once we let go.
        self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None


def _lock_holder(descriptor: int) -> int | None:
    """The pid in a lock file another stack holds; None if it has written none yet (or ever)."""
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _is_file_at(descriptor: int, path: Path) -> bool:
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    ours = os.fstat(descriptor)
    return (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino)


class Stack:
    def __init__(self, ports: Ports, run_dir: Path, faults: str | None, seed: int) -> None:
        ports = self.ports = ports.with_edge_ports()
        self.run_dir = run_dir
        self.run_dir_lock = RunDirLock(run_dir)
        self.faults = faults
        self.proxy = NginxProxy(
            upstream=f"127.0.0.1:{ports.hosp}",
            run_dir=run_dir / "nginx",
            port=ports.proxy,
            internal_port=ports.internal,
            interceptor=f"127.0.0.1:{ports.chalice}",
        )
        # CloudFront in front of the proxy's public listener. That listener checks no
        # origin secret in `make run` (the README's examples call it directly); the
        # edge adds the run's secret all the same, as CloudFront does.
        self.edge = LocalEdge(
            origin=f"127.0.0.1:{ports.proxy}",
            run_dir=run_dir / "edge",
            origin_secret=new_origin_secret(),
            port=ports.edge,
            http_port=ports.edge_http,
        )
        hosp = StandInProcess(run_dir, seed=seed, port=ports.hosp, startup_faults=fault_flags(faults))
        self.chalice = self._chalice()
        self.cognito: cognito.LocalCognito | None = None
        # In start order; stopped in reverse.
        self.members = [
            Member("local AWS (moto)", self._moto(), after_start=self._set_up_aws),
            Member("HOSP stand-in", hosp, health=lambda: http_check(f"{hosp.url}/_sim/stats")),
            Member(
                "NGINX proxy",
                self.proxy,
                health=lambda: http_check(f"{self.proxy.url}/_proxy/health", reports_ok),
                log=self.proxy.error_log,
            ),
            Member("NGINX edge", self.edge, health=self._edge_reaches_the_proxy, log=self.edge.error_log),
            Member("chalice local", self.chalice),
            Member("note worker", self._worker(), health=lambda: http_check(f"{self.worker_url}/health", reports_ok)),
        ]

    def _edge_reaches_the_proxy(self) -> bool:
        """The proxy's health answer over HTTPS through the edge, its certificate checked."""
        try:
            status, _, body = self.edge.request("GET", "/_proxy/health")
            return status == 200 and json.loads(body).get("status") == "ok"
        except (OSError, http.client.HTTPException, ValueError):
            return False

    def _moto(self) -> CommandServer:
        return moto_server(self.ports.aws, self.run_dir / "moto.log")

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.aws}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.worker}"

    def lambda_environment(self) -> dict[str, str]:
        """What the Lambdas get in AWS, pointed at the local servers."""
        account = NOTES_SERVICE_ACCOUNT
        # Nothing the app reads comes from the shell (a stray NOTE_QUEUE_NAME, say).
        ours = set(constants.VARIABLES)
        inherited = {name: value for name, value in os.environ.items() if name not in ours}
        return {
            **inherited,
            constants.STAGE: constants.LOCAL_STAGE,
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any key; never a real one here
            "AWS_DEFAULT_REGION": "eu-west-2",
            constants.HOSP_BASE_URL: self.proxy.internal_url,
            # The stand-in's service account: a fixture of a local server, not a secret.
            constants.HOSP_SERVICE_USERNAME: account.username,
            constants.HOSP_SERVICE_PASSWORD: account.password,
            constants.HOSP_SERVICE_STAFF_ID: str(account.staff_id),
        }

    def _set_up_aws(self) -> None:
        """The note queues, the audit buckets and the admins' user pool, on the fresh moto server.

        The pool's ids are known only now, so chalice local, which starts later,
        gets the audit settings here.
        """
        note_queue.create(note_queue.client(self.aws_url), {constants.STAGE: constants.LOCAL_STAGE})
        audit_buckets.create(audit_buckets.client(self.aws_url))
        self.cognito = cognito.create(self.aws_url)
        assert self.chalice.env is not None
        self.chalice.env.update(self.cognito.environment())
        self.chalice.env.update(self.audit_export_environment())

    def audit_export_environment(self) -> dict[str, str]:
        """Where chalice local's audit route reads the log and writes its exports: this stack's own files."""
        return audit_buckets.environment(str(self.proxy.access_log), str(self.run_dir / AUDIT_WORK_DIR))

    def _chalice(self) -> CommandServer:
        argv = [sys.executable, "-m", "local.chalice_local", "--no-autoreload"]
        argv += ["--host", "127.0.0.1", "--port", str(self.ports.chalice), "--stage", constants.LOCAL_STAGE]
        # Our app's JSON {"status": "ok"}: chalice answering with a misconfigured app is not up.
        return CommandServer(
            argv, self.ports.chalice, self.run_dir / "chalice.log", env=self.lambda_environment(),
            health_path="/health", health_accepts=reports_ok,
        )  # fmt: skip

    def _worker(self) -> CommandServer:
        argv = [sys.executable, "-m", "local.note_worker_loop", "--port", str(self.ports.worker)]
        return CommandServer(argv, self.ports.worker, self.run_dir / "note-worker.log", env=self.lambda_environment())

    def claim_run_dir(self) -> None:
        """The run directory for this stack alone, until `stop`; RunDirInUse if another stack has it."""
        self.run_dir_lock.acquire()

    def start(self) -> None:
        self.claim_run_dir()  # before any file in the run directory is written
        for member in self.members:
            try:
                member.server.start()  # returns once the server's own `healthy` passes
                if member.health is not None:
                    member.server.wait_until_healthy(member.health)
                if member.after_start is not None:
                    member.after_start()
            except ProcessError as exc:
                raise ProcessError(f"{member.name} did not start: {exc}{log_tail(member.log_file)}") from exc

    def describe(self) -> str:
        p = self.ports
        user = f"{DEMO_ACCOUNT.username}:{DEMO_ACCOUNT.password}"
        ca = self.edge.certificates.ca
        screen = f'{{"images": ["{SMOKE_IMAGE}"]}}'
        return "\n".join(
            [
                "hosp-reliability local stack is up:",
                f"  HOSP stand-in   http://127.0.0.1:{p.hosp}    faults: {self.faults or 'off'}",
                f"  NGINX proxy     http://127.0.0.1:{p.proxy}    log: {self.proxy.access_log}",
                f"  NGINX internal  http://127.0.0.1:{p.internal}    (the Lambdas' way to HOSP)",
                f"  chalice local   http://127.0.0.1:{p.chalice}    (the note intake and the audit trail's API)",
                f"  note worker     http://127.0.0.1:{p.worker}    (drains the note queue; GET /health counts)",
                f"  local AWS       http://127.0.0.1:{p.aws}    (moto server: note queues, audit buckets, Cognito)",
                f"  NGINX edge      {self.edge.https_url}    (plays CloudFront; old name {self.edge.old_names[0]})",
                f"  edge, plain     http://127.0.0.1:{p.edge_http}    (301 to HTTPS)",
                "Try:",
                f"  curl -u {user} http://127.0.0.1:{p.proxy}/hospitals",
                f"  curl --cacert {ca} -u {user} {self.edge.https_url}/hospitals",
                f"  curl -i --cacert {ca} 'https://{self.edge.host(self.edge.old_names[0])}/notes?patient_id=1'"
                "    # 301 to the new name",
                f"  curl -u {user} -H 'Content-Type: application/json' -d '{screen}' \\",
                f"       http://127.0.0.1:{p.proxy}/patients/1/screen",
                f"  curl -u {user} 'http://127.0.0.1:{p.proxy}/notes?patient_id=1'    # the note, moments later",
                f"  curl http://127.0.0.1:{p.hosp}/_sim/stats",
                "The audit trail (admins only; the token lasts an hour):",
                f"  TOKEN=$(.venv/bin/python -m local.cognito token --user audit-admin --aws-url {self.aws_url})",
                f"  curl -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:{p.proxy}/audit'",
                "  curl -o audit.csv '<the url of the answer>'",
                "Ctrl-C stops everything.",
            ]
        )

    def smoke(self) -> None:
        """One request through each server, and one screen until its note is in HOSP; raises on a failure."""
        p = self.ports
        auth = {"Authorization": DEMO_ACCOUNT.authorization}
        checks = [
            ("proxy -> HOSP", f"http://127.0.0.1:{p.proxy}/hospitals", auth),
            ("internal -> HOSP", f"http://127.0.0.1:{p.internal}/hospitals", auth),
            ("chalice local", f"http://127.0.0.1:{p.chalice}/health", {}),
            ("note worker", f"{self.worker_url}/health", {}),
            ("HOSP stats", f"http://127.0.0.1:{p.hosp}/_sim/stats", {}),
            ("local AWS", f"{self.aws_url}/moto-api/", {}),
        ]
        for name, url, headers in checks:
            answer = requests.get(url, headers=headers, timeout=10)
            if answer.status_code != 200:
                raise RuntimeError(f"{name}: GET {url} answered {answer.status_code}: {answer.text[:200]}")
            print(f"ok  {name:16} GET {url}")
        self._smoke_edge(auth)
        self._smoke_screen(auth)
        self._smoke_audit()

    def _smoke_edge(self, auth: dict[str, str]) -> None:
        """One request through the edge over HTTPS (the certificate checked against the local CA), and its 301."""
        status, _, body = self.edge.request("GET", "/hospitals", headers=auth)
        if status != 200:
            raise RuntimeError(f"edge: GET {self.edge.https_url}/hospitals answered {status}: {body[:200]!r}")
        print(f"ok  {'edge -> proxy':16} GET {self.edge.https_url}/hospitals")
        plain = f"{self.edge.http_url}/hospitals"
        answer = requests.get(plain, allow_redirects=False, timeout=10)
        if (
            answer.status_code != 301
            or answer.headers.get("Location") != f"https://127.0.0.1:{self.ports.edge}/hospitals"
        ):
            raise RuntimeError(f"edge: GET {plain} answered {answer.status_code} to {answer.headers.get('Location')}")
        print(f"ok  {'edge http->https':16} GET {plain}, 301")

    def _smoke_screen(self, auth: dict[str, str]) -> None:
        url = f"{self.proxy.url}/patients/1/screen"
        answer = requests.post(url, json={"images": [SMOKE_IMAGE]}, headers=auth, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"screen: POST {url} answered {answer.status_code}: {answer.text[:200]}")
        request_id = answer.headers["X-Request-Id"]
        deadline = time.monotonic() + SMOKE_NOTE_TIMEOUT
        while time.monotonic() < deadline:
            notes = requests.get(f"{self.proxy.url}/notes", params={"patient_id": "1"}, headers=auth, timeout=10)
            if any(request_id in note["body"] for note in notes.json()):
                print(f"ok  {'screen -> note':16} POST {url}, note in HOSP")
                return
            time.sleep(0.2)
        raise RuntimeError(f"screen: no note with request id {request_id} in HOSP after {SMOKE_NOTE_TIMEOUT:.0f} s")

    def _smoke_audit(self) -> None:
        """The admin's path: a token from the local Cognito, GET /audit, the CSV through its link."""
        pool = cognito.find(self.aws_url)
        token = cognito.sign_in(pool, "audit-admin").access
        # NGINX writes buffered log lines at least once a second (access-log-buffered.conf):
        # wait for the smoke's own requests to be in the file the export reads.
        time.sleep(ACCESS_LOG_FLUSH + 0.5)
        headers = {"Authorization": f"Bearer {token}"}
        answer = requests.get(f"{self.proxy.url}/audit", headers=headers, timeout=30)
        deadline = time.monotonic() + SMOKE_NOTE_TIMEOUT
        while answer.status_code == 202 and time.monotonic() < deadline:
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = requests.get(f"{self.proxy.url}{answer.json()['poll']}", headers=headers, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"audit: GET /audit answered {answer.status_code}: {answer.text[:200]}")
        if answer.json()["rows"] == 0:
            raise RuntimeError("audit: the export holds none of the smoke's requests")
        download = requests.get(answer.json()["url"], timeout=30)
        if download.status_code != 200 or not download.text.startswith('"time","user"'):
            raise RuntimeError(f"audit: the CSV's link answered {download.status_code}: {download.text[:200]}")
        print(f"ok  {'audit':16} GET {self.proxy.url}/audit, {answer.json()['rows']} rows through the link")

    def first_exited(self) -> str | None:
        for member in self.members:
            process = member.server.process
            if process is not None and process.poll() is not None:
                return f"{member.name} exited with code {process.returncode}{log_tail(member.log_file)}"
        return None

    def stop(self) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for member in reversed(self.members):
                member.server.stop()
        finally:
            self.run_dir_lock.release()  # after the servers, so that the next stack finds them stopped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.stack",
        description="Run the whole hosp-reliability stack on loopback (make run).",
    )
    parser.add_argument(
        "--faults",
        default=os.environ.get(FAULTS_VARIABLE) or None,
        help=f"HOSP faults, e.g. '503=0.1,reset=0.02,slow=0.05' (default: ${FAULTS_VARIABLE}, else off)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the HOSP stand-in's faults (default: %(default)s)")
    parser.add_argument("--hosp-port", type=int, default=9000, help="the HOSP stand-in (default: %(default)s)")
    parser.add_argument("--proxy-port", type=int, default=8080, help="NGINX, the front door (default: %(default)s)")
    parser.add_argument(
        "--internal-port", type=int, default=8081, help="NGINX's listener for the Lambdas (default: %(default)s)"
    )
    parser.add_argument("--chalice-port", type=int, default=8000, help="chalice local (default: %(default)s)")
    parser.add_argument(
        "--worker-port", type=int, default=8001, help="the local note worker's /health (default: %(default)s)"
    )
    parser.add_argument("--aws-port", type=int, default=5000, help="moto, the local AWS (default: %(default)s)")
    parser.add_argument(
        "--edge-port", type=int, default=EDGE_PORT, help="the edge's HTTPS (plays CloudFront) (default: %(default)s)"
    )
    parser.add_argument(
        "--edge-http-port", type=int, default=EDGE_HTTP_PORT, help="the edge's plain HTTP (301) (default: %(default)s)"
    )
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead (tests)")
    parser.add_argument(
        "--run-dir", default=str(ROOT / ".local"), help="logs and rendered configs (default: %(default)s)"
    )
    parser.add_argument("--smoke", action="store_true", help="start, check each server once, stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_faults(fault_flags(args.faults))
    except FaultConfigError as exc:
        print(f"local stack: faults {args.faults!r} are invalid: {exc}", file=sys.stderr)
        return USAGE_ERROR

    if args.free_ports:
        ports = Ports(*(free_port() for _ in range(8)))
    else:
        ports = Ports(
            args.hosp_port, args.proxy_port, args.internal_port, args.chalice_port, args.worker_port, args.aws_port,
            args.edge_port, args.edge_http_port,
        )  # fmt: skip
    stack = Stack(ports, Path(args.run_dir), args.faults, args.seed)
    try:
        # Before the ports: a second `make run` is told of the first stack, not of its ports.
        stack.claim_run_dir()
    except ProcessError as exc:
        print(f"local stack not started: {exc}", file=sys.stderr)
        return 1
    if busy := ports_in_use(stack.ports):
        stack.run_dir_lock.release()
        print("local stack not started:\n" + "\n".join(f"  {line}" for line in busy), file=sys.stderr)
        return 1
    return run(stack, smoke=args.smoke)


def run(stack: Stack, smoke: bool) -> int:
    """Start the stack, then smoke-test it or serve until Ctrl-C or a server exits."""

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        stack.claim_run_dir()
    except ProcessError as exc:
        print(f"local stack not started: {exc}", file=sys.stderr)
        return 1
    try:
        stack.start()
        if smoke:
            stack.smoke()
            return 0
        print(stack.describe(), flush=True)
        while (reason := stack.first_exited()) is None:
            time.sleep(0.5)
        print(f"stopping: {reason}\n(logs in {stack.run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except Exception as exc:
        print(f"local stack failed: {exc}\n(logs in {stack.run_dir})", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
