"""The request ids the real NGINX makes (lua/hosp_request_id.lua), read where a client sees them.

32 lowercase hex digits: the first 16 the worker's, drawn when it starts
serving; the last 16 a random bijection of its count of requests. Other tests
check that the client, HOSP and the access log get the same id
(test_retry_proxy.py, test_screen_route.py, test_access_log.py).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, Hosp

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
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        workers = len(proxy.worker_pids())
        with ThreadPoolExecutor(clients) as pool:
            per_client = list(pool.map(lambda _: ids(proxy, each), range(clients)))
    seen = [request_id for batch in per_client for request_id in batch]

    assert all(REQUEST_ID.fullmatch(request_id) for request_id in seen), seen[:3]
    assert len(set(seen)) == clients * each
    # One connection, one worker, one prefix; no more prefixes than workers.
    assert all(len({request_id[:16] for request_id in batch}) == 1 for batch in per_client)
    assert len({request_id[:16] for request_id in seen}) <= workers


def stop(pid: int) -> None:
    """SIGSTOP, and wait until the process has stopped: until then it may still take a connection."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, f"worker {pid} did not stop within 10 s"
        time.sleep(0.01)


def test_each_worker_draws_a_prefix_of_its_own(fresh_hosp: Hosp, tmp_path: Path) -> None:
    """Each worker in turn is the only one running (the others stopped), so it takes the connection."""
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        pids = sorted(proxy.worker_pids())
        prefixes = {}
        for pid in pids:
            others = [other for other in pids if other != pid]
            for other in others:
                stop(other)
            try:
                prefixes[pid] = {request_id[:16] for request_id in ids(proxy, 2)}
            finally:
                for other in others:
                    os.kill(other, signal.SIGCONT)

    assert len(pids) >= 2
    assert all(len(drawn) == 1 for drawn in prefixes.values()), prefixes
    assert len({drawn.pop() for drawn in prefixes.values()}) == len(pids)


def test_an_id_does_not_tell_how_many_requests_came_before_it(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        suffixes = [int(request_id[16:], 16) for request_id in ids(proxy, 20)]

    steps = {later - earlier for earlier, later in itertools.pairwise(suffixes)}
    # A counter, even from a random start, would step by 1 every time.
    assert len(steps) > 1
    assert suffixes != sorted(suffixes)


def test_workers_started_by_a_reload_draw_new_prefixes(fresh_hosp: Hosp, tmp_path: Path) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=TUNING) as proxy:
        before_pids = proxy.worker_pids()
        before = {request_id[:16] for _ in range(4) for request_id in ids(proxy, 2)}
        os.kill(int((proxy.run_dir / "nginx.pid").read_text()), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while proxy.worker_pids() & before_pids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.worker_pids() & before_pids, "the old workers did not leave within 10 s"
        after = {request_id[:16] for _ in range(4) for request_id in ids(proxy, 2)}

    assert before
    assert after
    assert not before & after
