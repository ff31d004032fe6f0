"""What local/nginx_proxy.py reads of a running NGINX: its workers and the connections each holds
(the overhead bench shows how the workers shared wrk's connections with it, and probes every target alike)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from bench.proxy_bench import connection_split
from bench.servers import StaticUpstream
from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, Hosp

AUTHORIZATION = DEMO_AUTH["Authorization"]
REQUEST = f"GET /hospitals HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTHORIZATION}\r\n\r\n".encode()


def answered(port: int) -> socket.socket:
    """A kept-alive connection to `port` that has had one answer: a worker has accepted it."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(REQUEST)
    assert client.recv(65536).startswith(b"HTTP/1.1 200 "), "no answer"
    return client


def held_within(proxy: NginxProxy, expected: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while sum(held := proxy.client_connections(proxy.port)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


def test_each_connection_is_counted_once_by_the_worker_that_holds_it(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=Tuning()) as proxy, contextlib.ExitStack() as opened:
        workers = proxy.worker_pids()
        assert workers
        assert held_within(proxy, 0) == []

        clients = [opened.enter_context(answered(proxy.port)) for _ in range(5)]
        internal = opened.enter_context(answered(proxy.internal_port))
        held = held_within(proxy, 5)
        assert sum(held) == 5, held
        assert len(held) <= len(workers)
        assert held == sorted(held, reverse=True)
        # The internal listener's connection is counted on its port only.
        assert proxy.client_connections(proxy.internal_port) == [1]
        internal.close()

        for client in clients[:3]:
            client.close()
        assert sum(held_within(proxy, 2)) == 2
        for client in clients[3:]:
            client.close()
        assert held_within(proxy, 0) == []


def test_one_worker_when_the_render_asks_for_one(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=Tuning(worker_processes="1")) as proxy:
        assert len(proxy.worker_pids()) == 1
        with contextlib.ExitStack() as opened:
            for _ in range(4):
                opened.enter_context(answered(proxy.port))
            assert held_within(proxy, 4) == [4]


def test_the_bench_counts_the_static_upstreams_connections_in_its_worker(tmp_path: Path) -> None:
    """The overhead bench probes every target alike; the static upstream's master holds no connection."""
    with StaticUpstream(tmp_path) as static, contextlib.ExitStack() as opened:
        assert connection_split(static) == "connections 0"
        for _ in range(3):
            opened.enter_context(answered(static.port))
        deadline = time.monotonic() + 10
        while (split := connection_split(static)) != "connections 3" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert split == "connections 3"
