"""NGINX killed outright (kill -9 of its master) leaves no worker holding the port once stopped."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from local.nginx_proxy import NginxProxy
from local.processes import closed_port


def test_stop_after_kill_9_of_the_master_stops_its_orphaned_workers(tmp_path: Path) -> None:
    proxy = NginxProxy(upstream=f"127.0.0.1:{closed_port()}", run_dir=tmp_path).start()
    assert proxy.process is not None
    master, port = proxy.process.pid, proxy.port
    workers = children(master)
    assert workers, "NGINX started no workers"
    try:
        os.kill(master, signal.SIGKILL)
        proxy.process.wait(timeout=10)
        assert answers(port)  # the workers still hold the port: what the next `make run` trips over

        proxy.stop()

        assert not answers(port)
        assert [pid for pid in workers if alive(pid)] == []
    finally:
        if any(alive(pid) for pid in workers):
            os.killpg(master, signal.SIGKILL)  # leave no orphan behind, even when the test fails


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie has exited and only waits to be reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
