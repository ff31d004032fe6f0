"""Process-group shutdown, port ownership and health waits of local.processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from local.processes import (
    HEALTH_REQUEST_TIMEOUT,
    CommandServer,
    ProcessError,
    accepts_connections,
    closed_port,
    free_port,
    group_members,
    port_in_use,
    port_user,
    stop_process,
)

# A leader that starts a child in its own process group, prints the child's pid, and waits.
LEADER_WITH_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def leader_with_child() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    leader = subprocess.Popen([sys.executable, "-c", LEADER_WITH_CHILD], stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    yield leader, child
    if leader.poll() is None or group_of(child) == leader.pid:  # whatever the test left behind
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    leader.stdout.close()


def test_stop_process_stops_the_whole_group_when_its_leader_was_killed(
    leader_with_child: tuple[subprocess.Popen[bytes], int],
) -> None:
    leader, child = leader_with_child
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    assert alive(child)  # the orphan that used to be left behind

    stop_process(leader, group=True)

    assert not alive(child)
    assert group_members(leader.pid) == []


def test_stop_process_stops_leader_and_children(leader_with_child: tuple[subprocess.Popen[bytes], int]) -> None:
    leader, child = leader_with_child

    stop_process(leader, group=True)

    assert leader.returncode is not None
    assert not alive(child)


def test_a_free_port_is_not_in_use() -> None:
    assert not port_in_use(free_port())


def binds(port: int) -> bool:
    """Whether a socket without SO_REUSEADDR, as another program's may be, can bind 127.0.0.1:port."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_free_port_is_kept_from_others_until_our_server_listens_there_and_freed_when_it_stops(
    tmp_path: Path,
) -> None:
    port = free_port()
    listening = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(120)"
    server = CommandServer([sys.executable, "-c", listening], port, tmp_path / "listening.log")

    assert not binds(port)  # reserved: no one else takes it before our server does
    with server:
        assert accepts_connections(port)
    assert binds(port)


def test_a_closed_port_refuses_connections_and_no_one_else_takes_it() -> None:
    port = closed_port()

    assert not accepts_connections(port)
    assert not binds(port)


def test_a_listening_port_is_in_use_and_its_owner_is_named() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert port_in_use(port)
        assert f"(pid {os.getpid()})" in port_user(port)


def test_an_owner_that_cannot_be_told_is_another_process() -> None:
    assert port_user(closed_port()) == "another process"


def test_a_server_that_accepts_connections_but_fails_its_health_check_does_not_start(tmp_path: Path) -> None:
    port = free_port()
    silent = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(120)"
    server = CommandServer(
        [sys.executable, "-c", silent], port, tmp_path / "silent.log", health_path="/health", startup_timeout=0.5
    )

    started = time.monotonic()
    with pytest.raises(ProcessError, match="health check"):
        server.start()
    # One unanswered health request does not outlast the startup timeout by its own.
    assert time.monotonic() - started < HEALTH_REQUEST_TIMEOUT

    assert server.process is None
    assert not port_in_use(port)


def test_a_server_that_exits_during_startup_names_its_exit_code(tmp_path: Path) -> None:
    server = CommandServer([sys.executable, "-c", "raise SystemExit(3)"], free_port(), tmp_path / "exits.log")

    started = time.monotonic()
    with pytest.raises(ProcessError, match="exited with code 3"):
        server.start()
    assert time.monotonic() - started < server.startup_timeout  # fails at once, not at the timeout


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie has exited and only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
