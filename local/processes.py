"""Small helpers for the servers the stack, the tests and the benchmarks start on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (NGINX: fast shutdown), then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
