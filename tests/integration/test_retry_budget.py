"""The retry budget (lua/hosp_retry_budget.lua) in the real NGINX, in front of the real stand-in.

HOSP is fully down in most tests (every attempt answered 503), so that every
request asks the budget for a retry and every retry let through makes its
`tries - 1` attempts: what the budget allowed is then exact, read from the
access log's verdicts and HOSP's own request count. A window of a minute keeps
every counter in it for the length of a test, except where the window is what
is tested, and one connection per test, except where the workers are what is
tested. docs/proxy.md, "The retry budget", gives the rule the tests model.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_PASSWORD, DEMO_USER, PROXY_TEST_TUNING, Hosp

RESERVE = PROXY_TEST_TUNING.tries - 1  # attempts a retry reserves, and makes when HOSP is down
WINDOW = 60.0


def auth(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{DEMO_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def budget(ratio: float, floor_attempts: float, window: float = WINDOW) -> Tuning:
    """A budget of `ratio` and a floor of `floor_attempts` attempts per window."""
    return dataclasses.replace(
        PROXY_TEST_TUNING,
        retry_budget_ratio=ratio,
        retry_budget_floor=floor_attempts / window,
        retry_budget_window=window,
    )


@pytest.fixture
def down(fresh_hosp: Hosp) -> Iterator[Hosp]:
    fresh_hosp.faults(outage=True)
    yield fresh_hosp
    fresh_hosp.faults(outage=False)


# One kept-alive connection per proxy: its requests go to one worker, which
# adds its deposits to the budget before each retry decision (another
# worker's reach it within 0.1 s: the workers test has its own connections).
_sessions: dict[str, requests.Session] = {}


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    for session in _sessions.values():
        session.close()
    _sessions.clear()


def verdict(proxy: NginxProxy, user: str) -> str:
    """One GET by `user`; the budget's verdict: PASSED (retried) or REJECTED (the proxy's 503)."""
    session = _sessions.setdefault(proxy.url, requests.Session())
    answer = session.get(proxy.url + "/hospitals", headers=auth(user), timeout=10)
    assert answer.status_code == 503
    return "REJECTED" if answer.headers.get("Retry-After") == "1" else "PASSED"


def one_off_verdict(proxy: NginxProxy, user: str) -> str:
    """As verdict, over a new connection: any worker may take it."""
    answer = requests.get(proxy.url + "/hospitals", headers=auth(user), timeout=10)
    assert answer.status_code == 503
    return "REJECTED" if answer.headers.get("Retry-After") == "1" else "PASSED"


class Model:
    """docs/proxy.md's rule, one request at a time, every counter in the window."""

    def __init__(self, ratio: float, floor_attempts: float) -> None:
        self.ratio, self.floor = ratio, floor_attempts
        self.deposits: dict[str, int] = {}
        self.withdrawals: dict[str, int] = {}

    def verdict(self, user: str) -> str:
        users = len(self.deposits) + (user not in self.deposits)
        own = self.deposits.get(user, 0) + 1
        user_left = self.ratio * own + self.floor / (users + 1) - self.withdrawals.get(user, 0)
        left = self.ratio * (sum(self.deposits.values()) + 1) + self.floor - sum(self.withdrawals.values())
        self.deposits[user] = own
        if user_left >= 1 and left >= 1:
            self.withdrawals[user] = self.withdrawals.get(user, 0) + RESERVE
            return "PASSED"
        return "REJECTED"


def test_retries_follow_the_ratio_of_first_attempts(down: Hosp, tmp_path: Path) -> None:
    ratio, floor_attempts, requests_sent = 0.5, 4, 30
    model = Model(ratio, floor_attempts)
    with NginxProxy(down.address, tmp_path, tuning=budget(ratio, floor_attempts)) as proxy:
        seen = [verdict(proxy, "nurse") for _ in range(requests_sent)]

    assert seen == [model.verdict("nurse") for _ in range(requests_sent)]
    retried = seen.count("PASSED")
    # Attempts within ratio x first attempts + the lone user's half of the floor,
    # the last retry one attempt over at most (tries - 2); one more would not fit.
    allowed = ratio * requests_sent + floor_attempts / 2
    assert RESERVE * retried <= allowed + RESERVE - 1 < RESERVE * (retried + 1)
    assert down.received() == requests_sent + RESERVE * retried


def test_the_floor_alone_allows_its_attempts_per_window(down: Hosp, tmp_path: Path) -> None:
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        seen = [verdict(proxy, "nurse") for _ in range(10)]

    # A lone user gets half the floor (the other half is kept for a user who
    # arrives): 6 attempts, 3 retries.
    assert seen == ["PASSED"] * 3 + ["REJECTED"] * 7
    assert down.received() == 10 + 3 * RESERVE


def test_spent_retries_leave_the_window_and_the_budget_refills(down: Hosp, tmp_path: Path) -> None:
    window = 2.0
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 4, window=window)) as proxy:
        first = [verdict(proxy, "nurse") for _ in range(3)]
        time.sleep(window * 1.3)  # every slot of the first requests has left the window
        again = [verdict(proxy, "nurse") for _ in range(3)]

    assert first == ["PASSED", "REJECTED", "REJECTED"]
    assert again == ["PASSED", "REJECTED", "REJECTED"]


def test_a_user_arriving_after_a_flood_gets_its_share(down: Hosp, tmp_path: Path) -> None:
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        flood = [verdict(proxy, "flooder") for _ in range(20)]
        quiet = [verdict(proxy, "quiet") for _ in range(4)]
        flood_after = [verdict(proxy, "flooder") for _ in range(5)]

    assert flood == [model.verdict("flooder") for _ in range(20)]
    assert quiet == [model.verdict("quiet") for _ in range(4)]
    # Alone, the flooder took half the floor (3 retries); the quiet user gets
    # a third of it (2 retries) and the flooder, over its third, no more.
    assert flood.count("PASSED") == 3
    assert quiet == ["PASSED", "PASSED", "REJECTED", "REJECTED"]
    assert flood_after == ["REJECTED"] * 5


def test_many_users_each_get_a_retry_and_together_stay_under_the_floor(down: Hosp, tmp_path: Path) -> None:
    users = [f"user{n}" for n in range(10)]
    floor_attempts = 22
    model = Model(0, floor_attempts)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, floor_attempts)) as proxy:
        seen = [(user, verdict(proxy, user)) for _ in range(3) for user in users]

    assert [v for _, v in seen] == [model.verdict(user) for _ in range(3) for user in users]
    retried = {user: sum(v == "PASSED" for u, v in seen if u == user) for user in users}
    assert retried == dict.fromkeys(users, 1)  # the 10th user's share, 22/11, is one retry too
    assert down.received() - len(seen) == RESERVE * len(users) <= floor_attempts


def test_forged_user_names_cannot_spend_more_than_the_instance_bound(down: Hosp, tmp_path: Path) -> None:
    """Thousands of made-up names, each failing once, then a real user: the instance's
    retries stay within ratio x first attempts + floor, in a dictionary of 256 KiB
    that must evict, and the real user keeps the ratio of its own traffic."""
    ratio, floor_attempts, forged = 0.5, 10, 3000
    tuning = dataclasses.replace(budget(ratio, floor_attempts), retry_budget_memory="256k")
    with NginxProxy(down.address, tmp_path, tuning=tuning) as proxy:
        with ThreadPoolExecutor(8) as pool:
            flood = list(pool.map(lambda n: one_off_verdict(proxy, f"forged-{n}-" + "x" * (n % 90)), range(forged)))
        quiet = [verdict(proxy, "nurse") for _ in range(10)]
        health = requests.get(proxy.url + "/_proxy/health", timeout=5)
        errors = [line for line in (proxy.run_dir / "error.log").read_text().splitlines() if "[error]" in line]

    first_attempts = forged + len(quiet)
    retries = down.received() - first_attempts
    assert retries <= ratio * first_attempts + floor_attempts + RESERVE - 1
    assert flood.count("PASSED") > 0  # the forged names got their ratio, no more
    # The real user's ratio: a retry (2 attempts) for every 4 requests of its own.
    assert quiet.count("PASSED") >= math.floor(ratio * len(quiet) / RESERVE)
    assert health.status_code == 200
    assert not [line for line in errors if "lua" in line or "shared" in line], errors[:3]


def test_the_workers_share_one_budget(down: Hosp, tmp_path: Path) -> None:
    """Concurrent connections land on every worker; the bound is the instance's, not each worker's."""
    floor_attempts, clients, each = 20, 8, 10
    with NginxProxy(down.address, tmp_path, tuning=budget(0, floor_attempts)) as proxy:
        workers = len(proxy.worker_pids())

        def client(n: int) -> list[str]:
            with requests.Session() as session:
                out = []
                for _ in range(each):
                    answer = session.get(proxy.url + "/hospitals", headers=auth("nurse"), timeout=10)
                    out.append("REJECTED" if answer.headers.get("Retry-After") == "1" else "PASSED")
                return out

        with ThreadPoolExecutor(clients) as pool:
            seen = [v for result in pool.map(client, range(clients)) for v in result]

    assert workers >= 2
    retried = seen.count("PASSED")
    # A lone user's half of the floor: 10 attempts, 5 retries; a retry under
    # way may run one attempt over (tries - 2).
    assert retried * RESERVE <= floor_attempts / 2 + RESERVE - 1
    assert down.received() == clients * each + RESERVE * retried


def test_requests_without_credentials_neither_deposit_nor_count_as_a_user(down: Hosp, tmp_path: Path) -> None:
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        for _ in range(20):
            assert requests.get(proxy.url + "/hospitals", timeout=10).status_code == 503
        assert down.received() == 20  # one attempt each
        seen = [verdict(proxy, "nurse") for _ in range(5)]
    # Read once NGINX has stopped: a line is written after its answer.
    lines = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    # The nurse is alone: half the floor, 3 retries (a second user would leave her a third, 2).
    assert seen == ["PASSED"] * 3 + ["REJECTED"] * 2
    assert lines == [""] * 20 + seen


def test_a_retry_that_succeeds_early_gives_back_its_unused_attempt(fresh_hosp: Hosp, tmp_path: Path) -> None:
    # A floor of 4 attempts: a lone user's half is 2, one reservation.
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=budget(0, 4)) as proxy:
        statuses = []
        for _ in range(3):
            fresh_hosp.script("503")  # the first attempt fails, the first retry succeeds
            statuses.append(requests.get(proxy.url + "/hospitals", headers=auth(DEMO_USER), timeout=10).status_code)
    lines = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    # Each retry made 1 of its 2 reserved attempts and gave the other back, so
    # the second fits; the third would be a 3rd attempt of the 2 allowed.
    assert lines == ["PASSED", "PASSED", "REJECTED"]
    assert statuses == [200, 200, 503]
