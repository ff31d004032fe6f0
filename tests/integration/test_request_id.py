"""The request ids the real NGINX makes (server-common.conf's set_md5), read where a client sees them.

32 lowercase hex digits: the MD5 of the rendered salt, the host name, the
worker's pid, the connection's number, the request's number on it and the
time in ms. Other tests check that the client, HOSP and the access log get
the same id (test_retry_proxy.py, test_screen_route.py, test_access_log.py).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, Hosp, rendered_salt

REQUEST_ID = re.compile(r"[0-9a-f]{32}")
TUNING = Tuning(access_log_buffer="off")


def ids(proxy: NginxProxy, count: int) -> list[str]:
    """The X-Request-Id of `count` GETs over one kept-alive connection (so one worker)."""
    with requests.Session() as session:
        answers = [session.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10) for _ in range(count)]
    assert {answer.status_code for answer in answers} == {200}
    return [answer.headers["X-Request-Id"] for answer in answers]


def test_every_request_gets_an_id_of_its_own(fresh_hosp: Hosp, tmp_path: Path) -> None:
    clients, each = 8, 40
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy, ThreadPoolExecutor(clients) as pool:
        per_client = list(pool.map(lambda _: ids(proxy, each), range(clients)))
    seen = [request_id for batch in per_client for request_id in batch]

    assert all(REQUEST_ID.fullmatch(request_id) for request_id in seen), seen[:3]
    assert len(set(seen)) == clients * each


def test_an_id_does_not_tell_how_many_requests_came_before_it(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        drawn = ids(proxy, 20)
    numbers = [int(request_id, 16) for request_id in drawn]

    steps = {later - earlier for earlier, later in itertools.pairwise(numbers)}
    # A counter, even from a random start, would step by 1 every time.
    assert len(steps) > 1
    assert numbers != sorted(numbers)
    # Nor do the ids of one connection share a prefix, as a worker's or a connection's part would.
    assert len({request_id[:4] for request_id in drawn}) > 10


def test_the_id_is_the_md5_of_the_rendered_salt_and_the_request(fresh_hosp: Hosp, tmp_path: Path) -> None:
    """Recomputed from what NGINX reads: the salt in the rendered file, the host name, the worker,
    the connection, its request number (1 and 2 on a new connection), a time in ms around the request's."""
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        workers = proxy.worker_pids()
        started = int(time.time() * 1000) - 1
        first, second = ids(proxy, 2)
        ended = int(time.time() * 1000) + 1
        salt = rendered_salt(proxy.config_path.read_text())
    hostname = os.uname().nodename

    def found(request_id: str, number_on_connection: int) -> bool:
        for pid, connection, ms in itertools.product(workers, range(1, 50), range(started, ended + 1)):
            text = f"{salt}:{hostname}:{pid}:{connection}:{number_on_connection}:{ms // 1000}.{ms % 1000:03d}"
            if hashlib.md5(text.encode()).hexdigest() == request_id:
                return True
        return False

    assert found(first, 1)
    assert found(second, 2)


def test_ids_stay_unique_across_a_reload(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        before_pids = proxy.worker_pids()
        before = [request_id for _ in range(4) for request_id in ids(proxy, 5)]
        os.kill(int((proxy.run_dir / "nginx.pid").read_text()), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while proxy.worker_pids() & before_pids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.worker_pids() & before_pids, "the old workers did not leave within 10 s"
        after = [request_id for _ in range(4) for request_id in ids(proxy, 5)]

    assert len(set(before + after)) == len(before) + len(after) == 40
