"""The retry budget (lua/hosp_retry_budget.lua) in the real NGINX, in front of the real stand-in.

HOSP is fully down in most tests (every attempt answered 503), so that every
request asks the budget for a retry and every retry let through makes its
`tries - 1` attempts: what the budget allowed is then exact, read from the
access log's verdicts and HOSP's own request count. A window of a minute keeps
every counter in it for the length of a test, except where the window is what
is tested, and one connection per test, except where the workers are what is
tested. docs/proxy.md, "The retry budget", gives the rule the tests model.

A user of the budget is a name HOSP knows (one it answered with a success:
`sign_in` makes one while HOSP is up), else the request's address: every name
HOSP has not accepted, like the tests' made-up ones, counts as 127.0.0.1, or,
to a proxy behind CloudFront (an origin secret rendered), as the
CloudFront-Viewer-Address a test sends.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from infra.nginx.render import Tuning
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_PASSWORD, DEMO_USER, PROXY_TEST_TUNING, Hosp, RecordingServer

RESERVE = PROXY_TEST_TUNING.tries - 1  # attempts a retry reserves, and makes when HOSP is down
WINDOW = 60.0
# Names HOSP accepts, with their passwords; any other name is made up.
PASSWORDS = {account.username: account.password for account in DEMO_ACCOUNTS}
# The budget's user of a name HOSP does not know, from the tests' own address.
HERE = "127.0.0.1"
# The origin secret of the proxies that stand behind CloudFront, as production does:
# only there is CloudFront-Viewer-Address CloudFront's word, and the budget's.
ORIGIN_SECRET = secrets.token_urlsafe(32)
BEHIND_CLOUDFRONT = (ORIGIN_SECRET,)


def auth(user: str, viewer: str | None = None, password: str | None = None) -> dict[str, str]:
    """Basic credentials of `user` (its own password if HOSP has the account, unless
    `password` says otherwise), from `viewer`, the "address:port" CloudFront names a
    viewer by, with the origin header CloudFront adds (a proxy without origin secrets
    asks for none)."""
    token = base64.b64encode(f"{user}:{password or PASSWORDS.get(user, DEMO_PASSWORD)}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "X-Origin-Verify": ORIGIN_SECRET}
    if viewer is not None:
        headers["CloudFront-Viewer-Address"] = viewer
    return headers


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


def verdict(proxy: NginxProxy, user: str, viewer: str | None = None, password: str | None = None) -> str:
    """One GET by `user`; the budget's verdict: PASSED (retried) or REJECTED (the proxy's 503)."""
    return verdict_of(proxy, auth(user, viewer, password))


def budget_verdict(answer: requests.Response) -> str:
    """What the budget said of a request HOSP failed: REJECTED (the proxy's 503, with
    Retry-After: 1) or PASSED (retried, HOSP's own answer)."""
    return "REJECTED" if answer.headers.get("Retry-After") == "1" else "PASSED"


def verdict_of(proxy: NginxProxy, headers: dict[str, str]) -> str:
    """As verdict, with these headers."""
    session = _sessions.setdefault(proxy.url, requests.Session())
    answer = session.get(proxy.url + "/hospitals", headers=headers, timeout=10)
    assert answer.status_code == 503
    return budget_verdict(answer)


def one_off_verdict(proxy: NginxProxy, user: str, viewer: str | None = None) -> str:
    """As verdict, over a new connection: any worker may take it."""
    answer = requests.get(proxy.url + "/hospitals", headers=auth(user, viewer), timeout=10)
    assert answer.status_code == 503
    return budget_verdict(answer)


def sign_in(hosp: Hosp, proxy: NginxProxy, *users: str) -> None:
    """A GET of each user while HOSP is up, then HOSP down again: HOSP answers 200, and
    the name is known. Each GET is a first attempt of its own, a deposit."""
    hosp.faults(outage=False)
    try:
        session = _sessions.setdefault(proxy.url, requests.Session())
        for user in users:
            assert session.get(proxy.url + "/hospitals", headers=auth(user), timeout=10).status_code == 200
    finally:
        hosp.faults(outage=True)


class Model:
    """docs/proxy.md's rule, one request at a time, every counter in the window."""

    def __init__(self, ratio: float, floor_attempts: float) -> None:
        self.ratio, self.floor = ratio, floor_attempts
        self.deposits: dict[str, int] = {}
        self.withdrawals: dict[str, int] = {}

    def deposit(self, user: str) -> None:
        """A first attempt that was not retried."""
        self.deposits[user] = self.deposits.get(user, 0) + 1

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
    flooder, newcomer = "dr-vega", "203.0.113.9"
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12), origin_secrets=BEHIND_CLOUDFRONT) as proxy:
        sign_in(down, proxy, flooder)
        model.deposit(flooder)
        flood = [verdict(proxy, flooder) for _ in range(20)]
        # A name HOSP does not know, from another address: a user of its own, new.
        quiet = [verdict(proxy, "someone", newcomer + ":443") for _ in range(4)]
        flood_after = [verdict(proxy, flooder) for _ in range(5)]

    assert flood == [model.verdict(flooder) for _ in range(20)]
    assert quiet == [model.verdict(newcomer) for _ in range(4)]
    # Alone, the flooder took half the floor (3 retries); the newcomer gets
    # a third of it (2 retries) and the flooder, over its third, no more.
    assert flood.count("PASSED") == 3
    assert quiet == ["PASSED", "PASSED", "REJECTED", "REJECTED"]
    assert flood_after == ["REJECTED"] * 5


def test_many_users_each_get_a_retry_and_together_stay_under_the_floor(down: Hosp, tmp_path: Path) -> None:
    # Ten users: four names HOSP knows, and six addresses whose names it does not.
    names = ["test-account", "dr-vega", "nurse-kim", "admin-ola"]
    users: list[tuple[str, str, str | None]] = [(name, name, None) for name in names]
    users += [(address, "anyone", address + ":443") for address in (f"198.51.100.{n}" for n in range(6))]
    floor_attempts = 22
    model = Model(0, floor_attempts)
    tuning = budget(0, floor_attempts)
    with NginxProxy(down.address, tmp_path, tuning=tuning, origin_secrets=BEHIND_CLOUDFRONT) as proxy:
        sign_in(down, proxy, *names)
        for name in names:
            model.deposit(name)
        seen = [(user, verdict(proxy, name, address)) for _ in range(3) for user, name, address in users]

    assert [v for _, v in seen] == [model.verdict(user) for _ in range(3) for user, _, _ in users]
    retried = {user: sum(v == "PASSED" for u, v in seen if u == user) for user, _, _ in users}
    assert retried == {user: 1 for user, _, _ in users}  # the 10th user's share, 22/11, is one retry too
    assert down.received() - len(names) - len(seen) == RESERVE * len(users) <= floor_attempts


def test_made_up_names_are_one_user_and_leave_a_known_user_its_share(down: Hosp, tmp_path: Path) -> None:
    """Thousands of names HOSP never accepted, from one address, each failing once:
    together they are one user, so a user HOSP knows keeps a third of the floor
    (its own, the address's, the newcomer's), as well as the ratio of its own traffic."""
    ratio, floor_attempts, forged, nurse = 0.5, 12, 2000, "nurse-kim"
    model = Model(ratio, floor_attempts)
    with NginxProxy(down.address, tmp_path, tuning=budget(ratio, floor_attempts)) as proxy:
        sign_in(down, proxy, nurse)
        model.deposit(nurse)
        with ThreadPoolExecutor(8) as pool:
            flood = list(pool.map(lambda n: one_off_verdict(proxy, f"forged-{n}-" + "x" * (n % 90)), range(forged)))
        time.sleep(0.3)  # every worker's deposits are in the dictionary
        quiet = [verdict(proxy, nurse) for _ in range(10)]

    model.deposits[HERE] = forged
    model.withdrawals[HERE] = RESERVE * flood.count("PASSED")
    assert quiet == [model.verdict(nurse) for _ in range(10)]
    # The address: its ratio and its share of the floor, one user's, whatever the names.
    assert RESERVE * flood.count("PASSED") <= ratio * forged + floor_attempts / 2 + RESERVE - 1
    # The nurse: 0.5 x 11 first attempts + 12/3 = 9.5 attempts, 5 retries (the
    # last one attempt over, as a retry under way may run).
    assert quiet.count("PASSED") == 5
    assert down.received() == 1 + forged + len(quiet) + RESERVE * (flood.count("PASSED") + 5)


def test_an_address_is_one_user_whatever_its_port_and_an_ipv6_address_its_64(down: Hosp, tmp_path: Path) -> None:
    """CloudFront names a viewer "address:port", the port new with each connection, and one
    IPv6 host can send from any address of its /64: neither a port nor a host's other
    addresses is a user of its own."""
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12), origin_secrets=BEHIND_CLOUDFRONT) as proxy:
        ipv4 = [verdict(proxy, f"made-up-{port}", f"203.0.113.5:{port}") for port in range(1000, 1005)]
        ipv6 = [
            verdict(proxy, "made-up", viewer)
            for viewer in ("2001:db8:0:1::a:5000", "2001:db8:0:1:ffff::b:5001", "[2001:db8:0:1::c]:5002") * 2
        ]
        other_64 = verdict(proxy, "made-up", "2001:db8:0:2::a:5000")

    assert ipv4 == [model.verdict("203.0.113.5") for _ in range(5)]
    assert ipv6 == [model.verdict("2001:db8:0:1::/64") for _ in range(6)]
    assert other_64 == model.verdict("2001:db8:0:2::/64") == "PASSED"
    assert ipv4 == ["PASSED", "PASSED", "PASSED", "REJECTED", "REJECTED"]  # 12/2 alone: 3 retries
    assert ipv6 == ["PASSED", "PASSED", "REJECTED", "REJECTED", "REJECTED", "REJECTED"]  # 12/3: 2


def test_a_name_becomes_a_user_only_once_hosp_answers_it_with_a_success(fresh_hosp: Hosp, tmp_path: Path) -> None:
    """A name HOSP refuses (a wrong password: 401), never answers (503), or answers only on a
    path outside its API (the stand-in's /_sim, which asks for no credentials) stays its
    address; the same name with its password, once answered 200, is a user of its own."""
    model = Model(0, 12)
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        # One connection, one worker: its deposits are in the dictionary by its next decision.
        session = _sessions.setdefault(proxy.url, requests.Session())
        refused = session.get(proxy.url + "/hospitals", headers=auth("dr-vega", password="wrong"), timeout=10)
        model.deposit(HERE)
        outside = session.get(proxy.url + "/_sim/stats", headers=auth("ghost"), timeout=10)
        model.deposit(HERE)
        fresh_hosp.faults(outage=True)
        try:
            first = [verdict(proxy, "dr-vega") for _ in range(3)]  # never answered yet
            ghost = [verdict(proxy, "ghost") for _ in range(2)]
            expected = [model.verdict(HERE) for _ in range(5)]
            sign_in(fresh_hosp, proxy, "dr-vega")
            model.deposit("dr-vega")
            known = [verdict(proxy, "dr-vega") for _ in range(3)]
        finally:
            fresh_hosp.faults(outage=False)

    assert refused.status_code == 401
    assert outside.status_code == 200
    assert first + ghost == expected
    assert first + ghost == ["PASSED", "PASSED", "PASSED", "REJECTED", "REJECTED"]  # 12/2: the address alone
    assert known == [model.verdict("dr-vega") for _ in range(3)]
    assert known == ["PASSED", "PASSED", "REJECTED"]  # 12/3: its own share


def test_a_known_name_with_a_wrong_password_is_its_address(down: Hosp, tmp_path: Path) -> None:
    """HOSP knows dr-vega's credentials, not the name alone: someone who sends the name with
    another password (HOSP would answer 401) spends its own address's share, and dr-vega
    keeps its own, however many requests the other sends."""
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        sign_in(down, proxy, "dr-vega")
        model.deposit("dr-vega")
        posing = [verdict(proxy, "dr-vega", password="guess") for _ in range(5)]
        own = [verdict(proxy, "dr-vega") for _ in range(3)]

    assert posing == [model.verdict(HERE) for _ in range(5)]
    assert own == [model.verdict("dr-vega") for _ in range(3)]
    # Two users, a third of the floor each (4 attempts): two retries for the
    # address, and two still for dr-vega, which the other requests did not touch.
    assert posing == ["PASSED", "PASSED", "REJECTED", "REJECTED", "REJECTED"]
    assert own == ["PASSED", "PASSED", "REJECTED"]


def test_an_unknown_name_whose_retry_succeeds_gives_back_to_its_address(fresh_hosp: Hosp, tmp_path: Path) -> None:
    """The retry was reserved under the address; its success makes the name known before the
    request's deposit and give-back: the unused attempt goes back to the address."""
    model = Model(0, 12)
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        fresh_hosp.script("503")  # the first attempt fails, the retry succeeds
        # One connection, one worker: its deposits are in the dictionary by its next decision.
        session = _sessions.setdefault(proxy.url, requests.Session())
        answer = session.get(proxy.url + "/hospitals", headers=auth(DEMO_USER), timeout=10)
        fresh_hosp.faults(outage=True)
        try:
            after = [verdict(proxy, "someone") for _ in range(3)]
        finally:
            fresh_hosp.faults(outage=False)
    lines = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    assert answer.status_code == 200
    assert lines[0] == "PASSED"
    model.deposit(DEMO_USER)  # known by the time it deposits
    model.withdrawals[HERE] = RESERVE - 1  # reserved 2, made 1
    # The address's share is 12/3 = 4 attempts, 1 spent: one retry, and a second that
    # starts within it (over by one, as a retry under way may run); kept under the
    # name, the address would have 2 spent and only the first.
    assert after == [model.verdict(HERE) for _ in range(3)] == ["PASSED", "PASSED", "REJECTED"]


def test_a_known_name_is_its_address_again_after_known_for(down: Hosp, tmp_path: Path) -> None:
    known_for = 2.0
    tuning = dataclasses.replace(budget(0, 12), retry_budget_known_for=known_for)
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=tuning) as proxy:
        sign_in(down, proxy, "dr-vega")
        model.deposit("dr-vega")
        # The address (any unknown name) spends its share; dr-vega has its own.
        spent = [verdict(proxy, "anyone") for _ in range(3)]
        known = verdict(proxy, "dr-vega")
        # Past known_for, and past the half second (known_for / 4) a worker trusts what it read.
        time.sleep(known_for + known_for / 4 + 1.0)
        after = [verdict(proxy, "dr-vega") for _ in range(2)]

    assert spent == [model.verdict(HERE) for _ in range(3)] == ["PASSED", "PASSED", "REJECTED"]
    assert known == model.verdict("dr-vega") == "PASSED"
    # Forgotten: dr-vega is the address again, whose share is spent.
    assert after == [model.verdict(HERE) for _ in range(2)] == ["REJECTED", "REJECTED"]


@pytest.mark.parametrize("render_again", [False, True], ids=["reload", "render-and-reload"])
def test_known_names_and_spent_shares_survive_a_reload(down: Hosp, tmp_path: Path, render_again: bool) -> None:
    """A reload (the DNS refresh's; an origin secret's rotation renders the configuration
    again first, with a new request id salt) starts new workers, which remember nothing of
    their own: who is known and what was spent are in the shared dictionaries, which a
    reload keeps, with the key the known credentials are kept under."""
    model = Model(0, 12)
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        sign_in(down, proxy, "dr-vega")
        model.deposit("dr-vega")
        before = [verdict(proxy, "anyone") for _ in range(3)]
        if render_again:
            config = proxy.config_path.read_text()
            proxy.render()
            assert proxy.config_path.read_text() != config  # a new salt
        old_workers = proxy.worker_pids()
        _sessions.pop(proxy.url).close()  # its connection belongs to an old worker
        os.kill(int((proxy.run_dir / "nginx.pid").read_text()), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while proxy.worker_pids() & old_workers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.worker_pids() & old_workers, "the old workers did not leave within 10 s"
        known = [verdict(proxy, "dr-vega") for _ in range(3)]
        spent = verdict(proxy, "anyone")

    assert before == [model.verdict(HERE) for _ in range(3)] == ["PASSED", "PASSED", "REJECTED"]
    assert known == [model.verdict("dr-vega") for _ in range(3)] == ["PASSED", "PASSED", "REJECTED"]
    assert spent == model.verdict(HERE) == "REJECTED"


def viewer(n: int) -> str:
    """The n-th of thousands of viewers: an IPv4 address and port, or (one in ten) a header too
    long to be kept whole."""
    if n % 10 == 0:
        return "v" * 80 + f"{n}:443"
    return f"10.{n // 65536}.{n // 256 % 256}.{n % 256}:{40000 + n}"


def test_thousands_of_addresses_cannot_spend_more_than_the_instance_bound(down: Hosp, tmp_path: Path) -> None:
    """Thousands of addresses (CloudFront-Viewer-Address as sent), each failing once, then a
    known user: the instance's retries stay within ratio x first attempts + floor, in a
    dictionary of 256 KiB that must evict, and the known user keeps the ratio of its own traffic."""
    ratio, floor_attempts, forged = 0.5, 10, 3000
    tuning = dataclasses.replace(budget(ratio, floor_attempts), retry_budget_memory="256k")
    with NginxProxy(down.address, tmp_path, tuning=tuning, origin_secrets=BEHIND_CLOUDFRONT) as proxy:
        sign_in(down, proxy, "nurse-kim")
        with ThreadPoolExecutor(8) as pool:
            flood = list(
                pool.map(
                    lambda n: one_off_verdict(proxy, f"forged-{n}", viewer(n)),
                    range(forged),
                )
            )
        quiet = [verdict(proxy, "nurse-kim") for _ in range(10)]
        health = requests.get(proxy.url + "/_proxy/health", timeout=5)
        errors = [line for line in (proxy.run_dir / "error.log").read_text().splitlines() if "[error]" in line]

    first_attempts = 1 + forged + len(quiet)
    retries = down.received() - first_attempts
    assert retries <= ratio * first_attempts + floor_attempts + RESERVE - 1
    assert flood.count("PASSED") > 0  # the addresses got their ratio, no more
    # The known user's ratio: a retry (2 attempts) for every 4 requests of its own.
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
                    out.append(budget_verdict(answer))
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
        # HOSP answers the user 200 first: from then on it is a user of its own.
        assert requests.get(proxy.url + "/hospitals", headers=auth(DEMO_USER), timeout=10).status_code == 200
        statuses = []
        for _ in range(3):
            fresh_hosp.script("503")  # the first attempt fails, the first retry succeeds
            statuses.append(requests.get(proxy.url + "/hospitals", headers=auth(DEMO_USER), timeout=10).status_code)
    lines = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    # Each retry made 1 of its 2 reserved attempts and gave the other back, so
    # the second fits; the third would be a 3rd attempt of the 2 allowed.
    assert lines == ["", "PASSED", "PASSED", "REJECTED"]
    assert statuses == [200, 200, 503]


ODD_NAMES = {
    "empty": b"",
    "nul": b"a\x00b",
    "newline": b"line\nbreak",
    "not-utf8": b"\xff\xfe",
    "utf8": "명의".encode(),
    "6000-bytes": b"x" * 6000,
    "k": b"k",
    "colons": b"::1",
    "space": b" ",
    "quotes": b'"\\%s{}',
}


def basic(name: bytes, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(name + b":" + password).decode()}


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_odd_names_are_counted_without_an_error(fresh_hosp: Hosp, tmp_path: Path, name: bytes) -> None:
    """Any name HOSP refuses, up or down, is its address: answered, never a 500, no Lua error."""
    headers = basic(name, DEMO_PASSWORD.encode())
    with NginxProxy(fresh_hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        refused = requests.get(proxy.url + "/hospitals", headers=headers, timeout=10)
        fresh_hosp.faults(outage=True)
        try:
            down = [requests.get(proxy.url + "/hospitals", headers=headers, timeout=10) for _ in range(4)]
            # An unknown name from the same address: the same user, whose share the odd name spent.
            after = verdict(proxy, "someone-else")
        finally:
            fresh_hosp.faults(outage=False)
        errors = [line for line in (proxy.run_dir / "error.log").read_text().splitlines() if "[error]" in line]

    assert refused.status_code == 401
    assert [answer.status_code for answer in down] == [503] * 4
    passed = [budget_verdict(answer) for answer in down]
    assert passed == ["PASSED", "PASSED", "PASSED", "REJECTED"]  # 12/2 for the address: 3 retries
    assert after == "REJECTED"
    assert not errors, errors[:3]


# The names that are names: Basic credentials end the name at the first colon, and
# NGINX reads no user name from an empty one (such a request is its address, above).
NAMED = {key: name for key, name in ODD_NAMES.items() if name and b":" not in name}


@pytest.mark.parametrize("name", NAMED.values(), ids=NAMED.keys())
def test_an_odd_name_hosp_accepts_is_a_user_of_its_own(tmp_path: Path, name: bytes) -> None:
    """The stand-in's accounts have plain names; here HOSP's place is taken by a server that
    accepts any credentials, as HOSP does for its accounts whatever bytes their names hold.
    Once answered 200, the odd name has a share of its own, apart from its address's."""
    headers = basic(name, b"its password")
    with RecordingServer() as hosp, NginxProxy(hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        session = _sessions.setdefault(proxy.url, requests.Session())
        accepted = session.get(proxy.url + "/hospitals", headers=headers, timeout=10)
        hosp.statuses = [503] * 100  # HOSP down from here
        address = [verdict(proxy, "someone-else") for _ in range(3)]
        own = [session.get(proxy.url + "/hospitals", headers=headers, timeout=10) for _ in range(3)]
        errors = [line for line in (proxy.run_dir / "error.log").read_text().splitlines() if "[error]" in line]

    assert accepted.status_code == 200
    assert [answer.status_code for answer in own] == [503] * 3
    # Two users, a third of the floor each (4 attempts): two retries each. Were the
    # name its address, it would find that share spent.
    assert address == ["PASSED", "PASSED", "REJECTED"]
    assert [budget_verdict(answer) for answer in own] == address
    assert not errors, errors[:3]


@pytest.mark.parametrize(
    "spelling",
    ["Basic  {token}", "basic {token}", "BASIC {token}", "Basic {token}=junk"],
    ids=["two-spaces", "lower-case", "upper-case", "after-the-padding"],
)
def test_only_the_spelling_clients_send_becomes_known(tmp_path: Path, spelling: str) -> None:
    """NGINX (and HOSP) read the same name and password from other spellings of Basic
    credentials; were each known, one account could fill the dictionary of known
    credentials and push everyone else's out. Only "Basic " and the padded base64 become
    known: another spelling answered 200 stays its address."""
    token = base64.b64encode(b"vet-1:its password").decode()
    headers = {"Authorization": spelling.format(token=token)}
    with RecordingServer() as hosp, NginxProxy(hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        session = _sessions.setdefault(proxy.url, requests.Session())
        accepted = session.get(proxy.url + "/hospitals", headers=headers, timeout=10)
        hosp.statuses = [503] * 100  # HOSP down from here
        address = [verdict(proxy, "someone-else") for _ in range(3)]
        odd = [verdict_of(proxy, headers) for _ in range(2)]
        canonical = verdict_of(proxy, {"Authorization": f"Basic {token}"})

    assert accepted.status_code == 200
    assert hosp.received[0].headers["Authorization"] == headers["Authorization"]  # NGINX passed it on as sent
    # Alone, the address has half the floor (6 attempts): 3 retries, and the spelling,
    # the address again, finds them spent; so does the canonical one, never answered.
    assert address == ["PASSED", "PASSED", "PASSED"]
    assert odd == ["REJECTED", "REJECTED"]
    assert canonical == "REJECTED"


def test_credentials_hosp_refuses_are_forgotten(tmp_path: Path) -> None:
    """Known credentials that HOSP answers 401 (a password changed since) are unknown from
    then on: whoever still sends the old password spends its address's share, not the name's."""
    headers = basic(b"vet-1", b"old password")
    with RecordingServer() as hosp, NginxProxy(hosp.address, tmp_path, tuning=budget(0, 12)) as proxy:
        session = _sessions.setdefault(proxy.url, requests.Session())
        accepted = session.get(proxy.url + "/hospitals", headers=headers, timeout=10)
        hosp.statuses = [401]
        refused = session.get(proxy.url + "/hospitals", headers=headers, timeout=10)
        hosp.statuses = [503] * 100  # HOSP down from here
        address = [verdict(proxy, "someone-else") for _ in range(3)]
        old = [verdict_of(proxy, headers) for _ in range(2)]

    assert (accepted.status_code, refused.status_code) == (200, 401)
    # Two users (the name, by its first deposit, and the address): a third of the floor
    # each, 4 attempts, 2 retries. The old password is the address, whose share is spent;
    # still known, it would have the name's 2 retries.
    assert address == ["PASSED", "PASSED", "REJECTED"]
    assert old == ["REJECTED", "REJECTED"]


def test_without_cloudfront_in_front_a_viewer_address_is_the_clients_word(down: Hosp, tmp_path: Path) -> None:
    """With no origin secret rendered (no CloudFront in front, as `make run` has it), any
    client may send CloudFront-Viewer-Address: the budget counts the connection's address,
    so made-up viewer addresses do not make users either."""
    with NginxProxy(down.address, tmp_path, tuning=budget(0, 12)) as proxy:
        seen = [verdict(proxy, "anyone", f"198.51.100.{n}:443") for n in range(5)]

    # One user, 127.0.0.1: half the floor, 3 retries. Were each viewer a user, each
    # would find a share of its own.
    assert seen == ["PASSED", "PASSED", "PASSED", "REJECTED", "REJECTED"]


def test_the_internal_listener_takes_no_viewer_address(down: Hosp, tmp_path: Path) -> None:
    """The Lambdas' listener asks for no origin header, so CloudFront-Viewer-Address there is
    the caller's word, even on a proxy behind CloudFront: the connection's address counts."""
    tuning = budget(0, 12)
    with (
        NginxProxy(down.address, tmp_path, tuning=tuning, origin_secrets=BEHIND_CLOUDFRONT) as proxy,
        requests.Session() as session,
    ):
        seen = [
            session.get(proxy.internal_url + "/hospitals", headers=auth("anyone", f"198.51.100.{n}:443"), timeout=10)
            for n in range(5)
        ]

    assert [answer.status_code for answer in seen] == [503] * 5
    verdicts = [budget_verdict(answer) for answer in seen]
    assert verdicts == ["PASSED", "PASSED", "PASSED", "REJECTED", "REJECTED"]  # one user: half the floor
