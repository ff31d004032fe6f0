"""Small helpers for the servers the stack, the tests and the benchmarks start on loopback."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent  # the project; servers start here
# Bounds, not expected durations: a loaded 2-core machine can take many seconds to
# import moto or chalice, and a passing run never waits for a bound.
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# One health request; the check is repeated until the startup bound, so a slow
# first answer only costs a retry, and a silent server no more than this.
HEALTH_REQUEST_TIMEOUT = 2.0
POLL_INTERVAL = 0.05


class ProcessError(RuntimeError):
    """A binary is missing, or a server did not come up."""


def system_binary(name: str, install_hint: str) -> str:
    """Path of a system binary; /usr/sbin is not on an ordinary user's PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ProcessError(f"{name} was not found: {install_hint}")
    return found


# Ports handed out by free_port, each held by a socket of ours until a server of ours listens there.
_reserved: dict[int, socket.socket] = {}


def free_port() -> int:
    """A free port on 127.0.0.1 for a server process we are about to start, reserved until it listens there.

    A port found free and given up (bind port 0, close) is free for anyone until
    our server binds it, seconds later for a Python server that imports a lot first:
    another server or connection (another pytest-xdist worker's, say) may take it in
    between. So the port stays bound to a socket of ours, with SO_REUSEADDR and never
    listening. Linux gives a bound port to no bind to port 0 (unless the sysctl
    net.ipv4.ip_autobind_reuse is on) and to no outgoing connection, and refuses binds
    without SO_REUSEADDR, so no one else can take it; our server binds it all the same,
    because two sockets with SO_REUSEADDR may share a port as long as at most one
    listens, and NGINX and Python's servers (http.server, socketserver,
    socket.create_server, Werkzeug) all set it. LoopbackServer gives the reservation
    up (release_ports) once its process listens on the port, and when it stops. A port
    that no LoopbackServer of this process takes (one passed to `python -m local.stack`,
    say) stays reserved until this process ends: refusing connections while nothing
    listens there, and still open to our servers.

    Why not the alternatives: servers whose ports others must know before they start
    cannot bind port 0 and report the port they got (the proxy's configuration names
    chalice local's port before chalice starts, and NGINX has no way to report one);
    a retry on a collision would restart servers whose ports are already written into
    other servers' configurations. A server in this process needs none of this: it
    binds ("127.0.0.1", 0) itself and reads the port it got (`server_address[1]`).
    """
    reservation = socket.socket()
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind(("127.0.0.1", 0))
    port = int(reservation.getsockname()[1])
    _reserved[port] = reservation
    return port


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens, so that every connection to it is refused at once.

    A free_port that no server takes: reserved, never listening, while this process runs.
    """
    return free_port()


def release_ports(ports: Iterable[int]) -> None:
    """Gives up the reservations free_port holds for `ports`; any other port is left alone."""
    for port in ports:
        reservation = _reserved.pop(port, None)
        if reservation is not None:
            reservation.close()


atexit.register(lambda: release_ports(list(_reserved)))  # the ones no server took


def dying_with_parent(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when the process that started it dies.

    So a stack killed outright leaves no server holding its ports. Uses
    util-linux's setpriv (Linux); where it is missing, argv unchanged.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


# --- ports -------------------------------------------------------------------------------


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not bind host:port, asking the way our servers bind.

    SO_REUSEADDR, as NGINX and Python's servers set it, so that connections of a
    stack that just stopped (TIME_WAIT) do not count; a listener on any address does.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def port_user(port: int) -> str:
    """Who listens on `port`, e.g. "nginx (pid 812)", or each of them (NGINX's master and workers).

    "another process" when that cannot be told: a process of another user whose
    sockets we may not see.
    """
    owners = [process.pid for process in psutil.process_iter() if _listens_on(process.pid, port)]
    if not owners:
        return "another process"
    return ", ".join(f"{_process_name(pid)} (pid {pid})" for pid in owners)


def group_listens_on(pgid: int, port: int) -> bool:
    """Whether a process of group `pgid` listens on `port`.

    What tells a server we started, bound to its port, from another server that
    answers there while ours still retries its bind or is about to exit.
    """
    return any(_listens_on(pid, port) for pid in group_members(pgid))


def established_connections(pid: int, port: int) -> int:
    """How many established TCP connections to local `port` process `pid` holds; 0 for a
    process gone, or of another user whose sockets we may not see."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for s in sockets if s.status == psutil.CONN_ESTABLISHED and s.laddr and s.laddr.port == port)


def connections_held(pids: Iterable[int], port: int) -> list[int]:
    """How many established connections to local `port` each of `pids` holds, most first; a
    process holding none is left out (so "16" is all on one process, "9+7" on two)."""
    held = (established_connections(pid, port) for pid in pids)
    return sorted((count for count in held if count), reverse=True)


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP socket listening on `port`, on any address.

    False for a process gone, or of another user whose sockets we may not see (an
    NGINX worker's: its master holds the same sockets).
    """
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets)


def _process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "a process"


# --- process groups -------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """The running processes of process group `pgid` (zombies have exited: not counted)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue  # gone since listed
    return members


def stop_process(process: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    """SIGTERM (NGINX: fast shutdown), then SIGKILL if it has not exited within STOP_TIMEOUT.

    group: the process leads its own process group (start_new_session=True), and
    the signals go to the whole group, so that its children (NGINX's workers) stop too,
    also when the leader itself is already gone (kill -9 of NGINX's master leaves
    workers that still hold the port).
    """
    if process is None:
        return
    if group:
        _stop_group(process)
    elif process.poll() is None:
        _stop_one(process)


def _stop_one(process: subprocess.Popen[bytes]) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue
    raise ProcessError(f"process {process.pid} did not exit after SIGKILL")


def _stop_group(leader: subprocess.Popen[bytes]) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if _group_stopped(leader):
            return
        # The group's id stays reserved while any member lives, so this cannot hit a
        # stranger; once the group is empty we signal nothing (checked just above).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signum)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and not _group_stopped(leader):
            time.sleep(POLL_INTERVAL)
    if not _group_stopped(leader):
        raise ProcessError(f"process group {leader.pid} still runs after SIGKILL: {group_members(leader.pid)}")


def _group_stopped(leader: subprocess.Popen[bytes]) -> bool:
    # poll() reaps the leader, so that a leader that has exited does not count as a member.
    return leader.poll() is not None and not group_members(leader.pid)


# --- health ------------------------------------------------------------------------------------


def answered_200(answer: requests.Response) -> bool:
    return answer.status_code == 200


def reports_ok(answer: requests.Response) -> bool:
    """A JSON health answer {"status": "ok", ...}: our server, not just anything on the port."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return answer.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok"


def http_check(
    url: str, accepts: Callable[[requests.Response], bool] = answered_200, timeout: float = HEALTH_REQUEST_TIMEOUT
) -> bool:
    """Whether GET url gets, within `timeout` seconds, an answer that `accepts` takes."""
    with requests.Session() as session:
        session.trust_env = False  # loopback: never through an HTTP_PROXY from the environment
        try:
            answer = session.get(url, timeout=timeout)
        except requests.RequestException:
            return False
        return accepts(answer)


class LoopbackServer:
    """A server process on 127.0.0.1, started in the foreground and always stopped.

    Subclasses set `port` (0: a free_port is picked, reserved until the server
    listens there) and define `start()`, which prepares the server and calls `_launch`. Its own process group, so that
    stopping it stops its children (NGINX's workers) too; and it dies with the
    process that started it. A subclass with a health endpoint overrides `healthy`;
    one with more listeners than `port` overrides `listen_ports`.
    """

    port: int
    process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = None
    _log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """Where the server's stdout and stderr go, if anywhere."""
        return self._log_path

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every port the server listens on; it is up only once it holds them all."""
        return (self.port,)

    def start(self) -> Self:
        raise NotImplementedError

    def healthy(self) -> bool:
        """Whether the server answers. Here only that its port accepts connections."""
        return accepts_connections(self.port)

    def wait_until_healthy(self, check: Callable[[], bool] | None = None, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until `check` (by default `healthy`) passes while the process we started runs and holds its ports.

        Something else may answer on our port (a server left by another run) while
        ours has not bound it: NGINX retries its bind for some seconds before it
        exits, a Python server exits only once its imports are done. So a passing
        check alone does not mean ours is up; ours listening on each port does.
        """
        check = check or self.healthy
        deadline = time.monotonic() + timeout
        foreign: list[int] = []  # ports that answered the check, held by another process
        while True:
            self._ensure_running()
            if check():
                foreign = self._ports_not_ours()
                if not foreign:
                    self._ensure_running()
                    return
            if time.monotonic() >= deadline:
                if foreign:
                    raise ProcessError(
                        f"the server we started (pid {self._pid()}) did not bind its port in {timeout:.0f} s: "
                        f"{self._taken(foreign)}, and that answered the health check"
                    )
                raise ProcessError(f"the server on port {self.port} failed its health check for {timeout:.0f} s")
            time.sleep(POLL_INTERVAL)

    def _ports_not_ours(self) -> list[int]:
        return [port for port in self.listen_ports if not group_listens_on(self._pid(), port)]

    def _pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @staticmethod
    def _taken(ports: list[int]) -> str:
        """'port 8443 is in use by nginx (pid 812)', for each of `ports`."""
        return "; ".join(f"port {port} is in use by {port_user(port)}" for port in ports)

    def _ensure_running(self) -> None:
        if self.process is None:
            raise ProcessError(f"the server for port {self.port} is not running")
        if self.process.poll() is not None:
            # Ours has exited; a port still taken is the likely reason (it could not bind).
            busy = [port for port in self.listen_ports if port_in_use(port)]
            reason = f"; {self._taken(busy)}" if busy else ""
            raise ProcessError(f"the server for port {self.port} exited with code {self.process.returncode}{reason}")

    def _launch(
        self,
        argv: list[str],
        output: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        """Run argv (stdout and stderr to `output`, or nowhere) and wait until it is healthy."""
        self._log_path = output
        self._output = output.open("ab") if output else None
        self.process = subprocess.Popen(
            dying_with_parent(argv), cwd=ROOT, env=env,
            stdout=self._output or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            self.wait_until_healthy(timeout=timeout)
        except ProcessError:
            self.stop()
            raise
        release_ports(self.listen_ports)  # ours listens on them now, which keeps them from anyone else

    def stop(self) -> None:
        stop_process(self.process, group=True)
        self.process = None
        release_ports(self.listen_ports)
        if self._output:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CommandServer(LoopbackServer):
    """Any command that serves on `port` once started; its output appended to `log`.

    With `health_path`, it is up once GET health_path gets an answer `health_accepts`
    takes; without, once its port accepts connections.
    """

    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] | None = None
    startup_timeout: float = 2 * STARTUP_TIMEOUT  # chalice local and moto import a lot before they listen
    health_path: str | None = None
    health_accepts: Callable[[requests.Response], bool] = answered_200

    def start(self) -> Self:
        self._launch(self.argv, output=self.log, env=self.env, timeout=self.startup_timeout)
        return self

    def healthy(self) -> bool:
        if self.health_path is None:
            return super().healthy()
        # A server that never answers must not keep its start waiting beyond the timeout.
        timeout = min(HEALTH_REQUEST_TIMEOUT, self.startup_timeout / 2)
        return http_check(self.url + self.health_path, self.health_accepts, timeout)


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a log, indented, after a newline; "" if there is nothing to show."""
    try:
        text = path.read_text(errors="replace") if path else ""
    except OSError:
        return ""
    last = text.strip().splitlines()[-lines:]
    if not last:
        return ""
    return f"\n  last lines of {path}:\n" + "\n".join(f"    {line}" for line in last)


def moto_server(port: int, log: Path) -> CommandServer:
    """The local AWS: moto in server mode on 127.0.0.1:port, up once its API answers."""
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return CommandServer(argv, port, log, health_path="/moto-api/")
