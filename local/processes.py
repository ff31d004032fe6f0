"""Small helpers for the servers the stack, the tests and the benchmarks start on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

ROOT = Path(__file__).resolve().parent.parent  # the project; servers start here
STOP_TIMEOUT = 10.0


class ProcessError(RuntimeError):
    """A binary is missing, or a server did not come up."""


def system_binary(name: str, install_hint: str) -> str:
    """Path of a system binary; /usr/sbin is not on an ordinary user's PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ProcessError(f"{name} was not found: {install_hint}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dying_with_parent(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when the process that started it dies.

    So a stack killed outright leaves no server holding its ports. Uses
    util-linux's setpriv (Linux); where it is missing, argv unchanged.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def wait_for_port(
    port: int, timeout: float = 10.0, host: str = "127.0.0.1", process: subprocess.Popen[bytes] | None = None
) -> None:
    """Until something accepts on host:port; fails at once if `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ProcessError(f"the server for port {port} exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    """SIGTERM (NGINX: fast shutdown), then SIGKILL if it has not exited within STOP_TIMEOUT.

    group: the process leads its own process group (start_new_session=True), and
    the signals go to the whole group, so that its children (NGINX's workers) stop too.
    """
    if process is None or process.poll() is not None:
        return

    def send(signum: int) -> None:
        try:
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


class LoopbackServer:
    """A server process on 127.0.0.1, started in the foreground and always stopped.

    Subclasses set `port` (0: a free one is picked) and define `start()`, which
    prepares the server and calls `_launch`. Its own process group, so that
    stopping it stops its children (NGINX's workers) too; and it dies with the
    process that started it.
    """

    port: int
    process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        raise NotImplementedError

    def _launch(
        self, argv: list[str], output: Path | None = None, env: dict[str, str] | None = None, timeout: float = 10.0
    ) -> None:
        """Run argv (stdout and stderr to `output`, or nowhere) and wait until it listens."""
        self._output = output.open("ab") if output else None
        self.process = subprocess.Popen(
            dying_with_parent(argv), cwd=ROOT, env=env,
            stdout=self._output or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_port(self.port, timeout=timeout, process=self.process)
        except ProcessError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process, group=True)
        self.process = None
        if self._output:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CommandServer(LoopbackServer):
    """Any command that serves on `port` once started; its output appended to `log`."""

    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] | None = None
    startup_timeout: float = 30.0  # chalice local and moto import a lot before they listen

    def start(self) -> Self:
        self._launch(self.argv, output=self.log, env=self.env, timeout=self.startup_timeout)
        return self
