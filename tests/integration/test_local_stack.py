"""`make run`'s stack comes up on loopback and each server answers, then stops cleanly."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
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
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
