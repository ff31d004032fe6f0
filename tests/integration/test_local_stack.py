"""`make run`'s stack comes up on loopback and each server answers, then stops cleanly."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from local.processes import ROOT


def test_the_whole_local_stack_starts_answers_and_stops(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "local.stack", "--free-ports", "--smoke", "--run-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    for server in ("proxy -> HOSP", "chalice local", "HOSP stats", "local AWS"):
        assert f"ok  {server}" in done.stdout
    # No orphans: after the stack stopped, none of its ports answers any more.
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)/", done.stdout)}
    assert len(ports) == 4
    assert not any(answers(port) for port in ports)


def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "local.stack", "--free-ports", "--run-dir", str(tmp_path)]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as stack:
        watchdog = threading.Timer(120, stack.kill)  # a stack that never comes up fails, not hangs
        watchdog.start()
        try:
            assert stack.stdout is not None
            printed = ""
            for line in stack.stdout:
                printed += line
                if "Ctrl-C stops everything" in line:
                    break
            ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", printed)}
            assert len(ports) == 4, printed
            assert all(answers(port) for port in ports)

            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=60) == 0
        finally:
            watchdog.cancel()
            stack.kill()

    assert not any(answers(port) for port in ports)


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
