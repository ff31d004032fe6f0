"""One stack per run directory: a second is refused before it touches the first's files; kill -9 frees it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from local.edge.server import LocalEdge
from local.processes import ROOT, ProcessError
from local.stack import LOCK_FILE, RunDirInUse, RunDirLock
from tests.support import STACK_ENV, STACK_TIMEOUT, running_stack, stack_argv

REFUSAL_TIMEOUT = 30  # the refused stack starts no server: an interpreter's start and the lock
# What the second stack would have overwritten or removed: the first's configs, secret and pid files.
FIRST_STACKS_FILES = (
    LOCK_FILE, "nginx/nginx.conf", "nginx/nginx.pid", "edge/nginx.conf", "edge/origin-secret", "edge/nginx.pid",
)  # fmt: skip


def printed_url(printed: str, server: str) -> str:
    found = re.search(rf"^  {server} +(https?://\S+)", printed, re.M)
    assert found, printed
    return found[1]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_a_second_stack_on_the_same_run_dir_is_refused_and_the_first_keeps_serving(tmp_path: Path) -> None:
    with running_stack(tmp_path) as (first, printed):
        before = {name: (tmp_path / name).read_bytes() for name in FIRST_STACKS_FILES}
        listing = sorted(tmp_path.rglob("*"))

        second = subprocess.run(
            stack_argv(tmp_path, "--smoke"),
            cwd=ROOT, env=STACK_ENV, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT, check=False,
        )  # fmt: skip

        assert second.returncode == 1, second.stdout + second.stderr
        assert (
            f"local stack not started: the run directory {tmp_path} is in use by another local stack "
            f"(pid {first.pid}); stop that one first (Ctrl-C where it runs, or `kill {first.pid}`)"
        ) in second.stderr
        assert second.stdout == ""  # no server started, no smoke run
        # Untouched: the same files with the same bytes, nothing added, nothing removed.
        assert sorted(tmp_path.rglob("*")) == listing
        assert {name: (tmp_path / name).read_bytes() for name in FIRST_STACKS_FILES} == before
        assert int(before[LOCK_FILE]) == first.pid
        for pid_file in ("nginx/nginx.pid", "edge/nginx.pid"):
            assert comm(int(before[pid_file])) == "nginx", pid_file  # the first's masters, still running
        # The first still serves, through its proxy and through its edge.
        assert first.poll() is None
        proxy = printed_url(printed, "NGINX proxy")
        assert requests.get(proxy + "/_proxy/health", timeout=5).json() == {"status": "ok"}
        edge_port = int(printed_url(printed, "NGINX edge").rsplit(":", 1)[1])
        edge = LocalEdge(origin="unused", run_dir=tmp_path / "edge", origin_secret="unused", port=edge_port)
        status, _, body = edge.request("GET", "/_proxy/health")  # TLS checked against the first's CA
        assert status == 200, body
        assert json.loads(body) == {"status": "ok"}

        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=STACK_TIMEOUT) == 0
    assert not (tmp_path / LOCK_FILE).exists()  # a stack that stopped leaves the directory free


def test_kill_9_of_a_stack_frees_its_run_dir_for_the_next(tmp_path: Path) -> None:
    with running_stack(tmp_path) as (first, _):
        first.kill()
        first.wait(timeout=STACK_TIMEOUT)

        after = subprocess.run(
            stack_argv(tmp_path, "--smoke"),
            cwd=ROOT, env=STACK_ENV, capture_output=True, text=True, timeout=STACK_TIMEOUT, check=False,
        )  # fmt: skip

    assert after.returncode == 0, after.stdout + after.stderr
    assert "ok  edge -> proxy" in after.stdout
    assert "in use" not in after.stderr


def test_the_lock_names_its_holder_and_is_free_once_released(tmp_path: Path) -> None:
    # flock conflicts between two opens of the file even in one process: this process plays both stacks.
    first, second = RunDirLock(tmp_path), RunDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(RunDirInUse) as refused:
            second.acquire()
        assert refused.value.holder == os.getpid()
        assert f"`kill {os.getpid()}`" in str(refused.value)
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        first.release()
    assert not (tmp_path / LOCK_FILE).exists()

    second.acquire()  # the directory is free again
    second.release()


def test_a_lock_file_left_by_a_dead_stack_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("999999999\n")  # a stack killed outright: its file, no lock
    lock = RunDirLock(tmp_path)
    lock.acquire()
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_a_run_dir_that_cannot_be_locked_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ProcessError, match=r"cannot lock the run directory .*file/sub"):
        RunDirLock(tmp_path / "file" / "sub").acquire()
