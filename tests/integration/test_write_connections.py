"""No write ever fails because of the proxy's keep-alive pool, and none is sent twice.

The real NGINX with the project's rendered config, in front of the real HOSP stand-in
with a short idle timeout: HOSP closes a kept-alive connection IDLE seconds after its
last answer. A request that NGINX writes into a pooled connection at that moment fails
(bench/write_reuse.py measures how often), and a failed write cannot be replayed. So
writes never take a pooled connection: each opens its own, whatever the pool's idle
timeout is. These tests give the pool the worst setting there is, idle connections kept
*longer* than HOSP keeps them, and send writes when HOSP is closing its connections.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.clients import NOTE
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, PROXY_TEST_TUNING, Hosp

IDLE = 0.3  # HOSP's idle timeout here, seconds
BAND = 0.004  # the idle gaps before a write: IDLE +- BAND
WRITE_HEADERS = {**DEMO_AUTH, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def quick_hosp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosp]:
    with Hosp(tmp_path_factory.mktemp("hosp"), seed=11, idle_timeout=IDLE) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(quick_hosp: Hosp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    # The pool keeps idle connections twice as long as HOSP: pooled requests meet HOSP's closes.
    tuning = dataclasses.replace(PROXY_TEST_TUNING, keepalive_timeout=2 * IDLE)
    with NginxProxy(quick_hosp.address, tmp_path_factory.mktemp("nginx"), tuning=tuning) as running:
        yield running


@pytest.fixture
def hosp(quick_hosp: Hosp) -> Hosp:
    quick_hosp.reset()
    return quick_hosp


def write(conn: http.client.HTTPConnection) -> tuple[int, str]:
    """One POST /notes on the client's kept-alive connection; its status and the proxy's request id."""
    conn.request("POST", "/notes", body=json.dumps(NOTE | {"title": uuid.uuid4().hex}), headers=WRITE_HEADERS)
    answer = conn.getresponse()
    answer.read()
    return answer.status, answer.getheader("X-Request-Id", "")


def received(hosp: Hosp, method: str) -> Counter[str]:
    """How many times HOSP received each request id, for one method."""
    time.sleep(0.1)  # HOSP logs a request as it arrives; let the last ones land
    return Counter(str(r["x_request_id"]) for r in hosp.recent_requests() if r["method"] == method)


def test_a_write_after_an_idle_gap_at_hosps_idle_timeout_never_fails(proxy: NginxProxy, hosp: Hosp) -> None:
    rng = random.Random(5)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    statuses: list[int] = []
    ids: list[str] = []
    try:
        write(conn)  # a first write, so that any pooled connection HOSP answered on is there
        for _ in range(24):
            # Just under and just over HOSP's idle timeout: HOSP closes a connection it
            # last answered on as this write arrives.
            time.sleep(IDLE + rng.uniform(-BAND, BAND))
            status, request_id = write(conn)
            statuses.append(status)
            ids.append(request_id)
    finally:
        conn.close()

    assert statuses == [201] * 24
    counts = received(hosp, "POST")
    assert [counts[i] for i in ids] == [1] * 24


def test_many_writes_from_concurrent_clients_with_random_pauses_never_fail_nor_repeat(
    proxy: NginxProxy, hosp: Hosp
) -> None:
    def client(seed: int) -> list[tuple[int, str]]:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            done = []
            for _ in range(15):
                # Every idle age from none to twice HOSP's timeout, HOSP's closes among them.
                time.sleep(rng.uniform(0, 2 * IDLE))
                done.append(write(conn))
            return done
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [pair for done in pool.map(client, range(8)) for pair in done]

    assert [status for status, _ in results] == [201] * 120
    counts = received(hosp, "POST")
    assert [counts[request_id] for _, request_id in results] == [1] * 120
    assert sum(counts.values()) == 120


def test_writes_open_a_connection_each_while_reads_share_the_pool(proxy: NginxProxy, hosp: Hosp) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        for _ in range(5):
            conn.request("GET", "/hospitals", headers=DEMO_AUTH)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200
            assert write(conn)[0] == 201
    finally:
        conn.close()

    ports = Counter((r["method"], r["client_port"]) for r in hosp.recent_requests(50))
    assert sorted(n for (method, _), n in ports.items() if method == "POST") == [1] * 5
    assert [n for (method, _), n in ports.items() if method == "GET"] == [5]


def test_the_write_location_makes_one_attempt_over_an_upstream_without_a_pool(proxy: NginxProxy) -> None:
    config = proxy.config_path.read_text()

    once = re.search(r"location @hosp_once \{(.*?)\}", config, re.DOTALL)
    assert once is not None
    upstream = re.search(r"proxy_pass http://(\w+);", once.group(1))
    assert upstream is not None
    block = re.search(rf"upstream {upstream.group(1)} \{{(.*?)\}}", config, re.DOTALL)
    assert block is not None
    assert "keepalive" not in block.group(1)
    assert "proxy_next_upstream off;" in once.group(1)
