"""The real NGINX, with the project's rendered config, in front of the real HOSP stand-in.

Every test scripts HOSP's next outcomes (`Hosp.script`) and then checks what
the client saw and what HOSP received: retries are proven by HOSP's own
request counters and the access log, not by timing.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from local.nginx_proxy import NginxProxy
from local.processes import ROOT, free_port
from tests.support import DEMO_AUTH, DEMO_PASSWORD, DEMO_USER, HOSP_IDLE_TIMEOUT, Hosp

TRY_TIMEOUT = 1.0
DEADLINE = 2.5
WRITE_TIMEOUT = 4.0
TEST_OPTIONS = {
    "tries": "3",
    "connect_timeout": "0.5",
    "try_timeout": str(TRY_TIMEOUT),
    "deadline": str(DEADLINE),
    "write_timeout": str(WRITE_TIMEOUT),
    "keepalive_timeout": str(HOSP_IDLE_TIMEOUT / 2),
    # Generous: these tests are about retries, the budget has its own test.
    "retry_budget_rate": "1000",
    "retry_budget_burst": "1000",
}
ATTEMPT_SEPARATOR = re.compile(r"\s*,\s*|\s+:\s+")


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with NginxProxy(f"127.0.0.1:{hosp.port}", tmp_path_factory.mktemp("nginx"), options=TEST_OPTIONS) as running:
        yield running


def log_entry(proxy: NginxProxy, answer: requests.Response) -> dict[str, object]:
    """The access-log line of one answer, found by its X-Request-Id."""
    return logged_request(proxy, answer.headers["X-Request-Id"])


def logged_request(proxy: NginxProxy, request_id: str) -> dict[str, object]:
    """NGINX buffers the log and writes it at least once a second: wait for the line."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for entry in log_entries(proxy):
            if entry["request_id"] == request_id:
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no access-log line for request {request_id}")


def log_entries(proxy: NginxProxy) -> list[dict[str, object]]:
    return [dict(json.loads(line)) for line in proxy.access_log.read_text().splitlines()]


def attempts(entry: dict[str, object]) -> list[str]:
    """Per-attempt upstream statuses of one access-log entry."""
    return ATTEMPT_SEPARATOR.split(str(entry["upstream_status"]))


def get(proxy: NginxProxy, path: str, headers: dict[str, str] | None = None, **kwargs: object) -> requests.Response:
    return requests.get(proxy.url + path, headers={**DEMO_AUTH, **(headers or {})}, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_get_failing_twice_then_succeeding_reaches_client_as_success_after_three_attempts(
    proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    fresh_hosp.script("502", "503")

    answer = get(proxy, "/hospitals")

    assert answer.status_code == 200
    assert [h["id"] for h in answer.json()] == sorted((h["id"] for h in answer.json()), reverse=True)
    assert answer.json()[0]["url"].startswith(proxy.url + "/hospitals/")  # links a client can follow
    assert fresh_hosp.received() == 3
    assert attempts(log_entry(proxy, answer)) == ["502", "503", "200"]


def test_a_request_failing_every_try_gets_hosps_last_answer_after_exactly_three_attempts(
    proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    fresh_hosp.script("503", "502", "504", "ok")

    answer = get(proxy, "/hospitals/1")

    assert answer.status_code == 504
    assert answer.json() == {"error": "injected 504"}  # HOSP's own body, passed through
    assert fresh_hosp.received() == 3


def test_500_is_retried_for_idempotent_requests(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("500")

    assert get(proxy, "/patients/1").status_code == 200
    assert fresh_hosp.received() == 2


@pytest.mark.parametrize("failure", ["500", "502", "503", "504", "reset"])
def test_a_failing_post_is_attempted_exactly_once(proxy: NginxProxy, fresh_hosp: Hosp, failure: str) -> None:
    fresh_hosp.script(failure)
    note = {"title": "t", "body": "b", "patient_id": 1, "staff_id": 1}

    answer = requests.post(proxy.url + "/notes", json=note, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == (502 if failure == "reset" else int(failure))
    assert fresh_hosp.received() == 1
    assert requests.get(proxy.url + "/notes", params={"patient_id": 1}, headers=DEMO_AUTH, timeout=10).json() == []


def test_a_failing_patch_is_attempted_exactly_once(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503")

    answer = requests.patch(proxy.url + "/hospitals/1", json={"name": "x"}, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 503
    assert fresh_hosp.received() == 1


@pytest.mark.parametrize("mode", ["502", "reset"])
def test_commit_then_fail_on_post_notes_leaves_exactly_one_note(proxy: NginxProxy, fresh_hosp: Hosp, mode: str) -> None:
    fresh_hosp.script(f"commit_then_fail:{mode}")
    note = {"title": "X-ray", "body": "clear", "patient_id": 3, "staff_id": 1}

    answer = requests.post(proxy.url + "/notes", json=note, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 502
    notes = requests.get(proxy.url + "/notes", params={"patient_id": 3}, headers=DEMO_AUTH, timeout=10).json()
    assert [n["title"] for n in notes] == ["X-ray"]


def test_connection_resets_are_retried(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("reset", "reset")

    assert get(proxy, "/staffs/1").status_code == 200
    assert fresh_hosp.received() == 3


def test_a_slow_answer_is_abandoned_after_the_try_timeout_and_retried_within_the_deadline(
    proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    fresh_hosp.script(f"slow:{int(TRY_TIMEOUT * 3000)}")

    started = time.monotonic()
    answer = get(proxy, "/hospitals")
    elapsed = time.monotonic() - started

    assert answer.status_code == 200
    assert fresh_hosp.received() == 2
    assert TRY_TIMEOUT <= elapsed < DEADLINE
    assert attempts(log_entry(proxy, answer)) == ["504", "200"]


def test_slow_answers_on_every_try_end_within_deadline_plus_one_try(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    slow = f"slow:{int(DEADLINE * 2000)}"
    fresh_hosp.script(slow, slow, slow)

    started = time.monotonic()
    answer = get(proxy, "/hospitals")
    elapsed = time.monotonic() - started

    assert answer.status_code == 504
    assert elapsed < DEADLINE + TRY_TIMEOUT + 0.5
    assert fresh_hosp.received() == 3


def test_a_slow_post_is_not_cut_by_the_idempotent_try_timeout(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script(f"slow:{int(TRY_TIMEOUT * 1500)}")
    note = {"title": "slow", "body": "b", "patient_id": 2, "staff_id": 1}

    answer = requests.post(proxy.url + "/notes", json=note, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 201
    assert fresh_hosp.received() == 1


def test_a_put_is_replayed_with_its_body(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503")

    answer = requests.put(proxy.url + "/hospitals/2", json={"name": "Riverside"}, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 200
    assert get(proxy, "/hospitals/2").json()["name"] == "Riverside"
    assert int(fresh_hosp.stats()["by_method"]["PUT"]) == 2


def test_the_only_backend_is_never_marked_down_by_failures(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script(*["502"] * 9)
    statuses = [get(proxy, "/hospitals").status_code for _ in range(3)]

    assert statuses == [502, 502, 502]
    assert get(proxy, "/hospitals").status_code == 200  # no "no live upstreams"
    assert fresh_hosp.received() == 10


def client_ports(hosp: Hosp, method: str) -> list[int]:
    return [int(r["client_port"]) for r in hosp.recent_requests(50) if r["method"] == method]


def test_first_attempts_reuse_kept_alive_connections_and_writes_open_new_ones(
    proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    note = {"title": "t", "body": "b", "patient_id": 4, "staff_id": 1}
    with requests.Session() as session:  # one client connection, so one NGINX worker
        for _ in range(3):
            assert session.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10).status_code == 200
            assert session.post(proxy.url + "/notes", json=note, headers=DEMO_AUTH, timeout=10).status_code == 201

    # A write never goes into a pooled connection HOSP may be closing.
    posts = client_ports(fresh_hosp, "POST")
    assert len(set(posts)) == len(posts) == 3
    assert len(set(client_ports(fresh_hosp, "GET"))) == 1


def test_a_large_body_is_proxied_and_a_large_put_is_replayed_whole(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    # X-ray images arrive base64-encoded: bodies far larger than NGINX's memory buffer.
    images = [base64.b64encode(bytes(range(256)) * 1200).decode()]  # ~400 kB of JSON
    body = {"images": images}
    screen = requests.post(proxy.url + "/patients/1/screen", json=body, headers=DEMO_AUTH, timeout=10)
    direct = requests.post(fresh_hosp.url + "/patients/1/screen", json=body, headers=DEMO_AUTH, timeout=10)
    fresh_hosp.script("503")
    name = "R" * 100_000
    put = requests.put(proxy.url + "/hospitals/1", json={"name": name}, headers=DEMO_AUTH, timeout=10)

    assert screen.status_code == 200
    assert screen.content == direct.content
    assert put.status_code == 200
    assert get(proxy, "/hospitals/1").json()["name"] == name


def test_no_retry_starts_after_the_deadline(hosp: Hosp, fresh_hosp: Hosp, tmp_path: Path) -> None:
    # Five tries of 1 s each would take 5 s; the 2.5 s deadline stops at three.
    options = {**TEST_OPTIONS, "tries": "5", "try_timeout": "1", "deadline": "2.5"}
    slow = "slow:3000"
    fresh_hosp.script(*[slow] * 5)
    with NginxProxy(hosp.address, tmp_path, options=options) as proxy:
        answer = get(proxy, "/hospitals")

    assert answer.status_code == 504
    assert fresh_hosp.received() == 3


def test_the_access_log_holds_every_field_and_never_the_password(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503")
    headers = {"X-Patient-Id": "5", "User-Agent": "vet-app/2"}
    answer = get(proxy, "/patients/5", params={"view": "full"}, headers=headers)
    entry = log_entry(proxy, answer)
    documented = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "access-log.md").read_text(), re.MULTILINE)

    assert answer.status_code == 200
    assert sorted(entry) == sorted(documented)  # the schema of docs/access-log.md, no more, no less
    assert entry["user"] == DEMO_USER
    assert entry["user_agent"] == "vet-app/2"
    assert entry["retry_budget"] == "PASSED"  # it failed once and was retried
    assert entry["method"] == "GET"
    assert (entry["path"], entry["normalized_path"], entry["query"]) == ("/patients/5", "/patients/5", "view=full")
    assert entry["patient_id"] == "5"
    assert entry["status"] == 200
    assert isinstance(entry["bytes_sent"], int)
    assert entry["bytes_sent"] == len(answer.content)
    assert isinstance(entry["request_time"], float)
    assert entry["client_ip"] == "127.0.0.1"
    assert attempts(entry) == ["503", "200"]
    assert len(ATTEMPT_SEPARATOR.split(str(entry["upstream_addr"]))) == 2
    assert len(ATTEMPT_SEPARATOR.split(str(entry["upstream_response_time"]))) == 2
    # UTC with milliseconds, and now.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(entry["time"]))
    logged = datetime.fromisoformat(str(entry["time"]))
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 60
    # One request id: in the log, in the answer, and on both attempts HOSP saw.
    assert re.fullmatch(r"[0-9a-f]{32}", str(entry["request_id"]))
    seen = [r for r in fresh_hosp.recent_requests(50) if r["path"] == "/patients/5?view=full"]
    assert [r["x_request_id"] for r in seen] == [entry["request_id"]] * 2

    whole_log = proxy.access_log.read_text()
    assert DEMO_PASSWORD not in whole_log
    assert DEMO_AUTH["Authorization"].split()[1] not in whole_log
    for line in whole_log.splitlines():
        json.loads(line)  # every line is one JSON object


def test_an_encoded_path_is_logged_as_sent_and_as_hosp_resolves_it(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    # http.client sends the path as given (requests would decode %35 itself).
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", "/patients/%35", headers=DEMO_AUTH)
    raw = connection.getresponse()
    body, request_id = json.loads(raw.read()), str(raw.getheader("X-Request-Id"))
    connection.close()
    entry = logged_request(proxy, request_id)

    assert body["id"] == 5  # HOSP decodes the path too
    assert (entry["path"], entry["normalized_path"]) == ("/patients/%35", "/patients/5")


def test_proxy_health_is_answered_without_hosp(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = requests.get(proxy.url + "/_proxy/health", timeout=5)

    assert answer.json() == {"status": "ok"}
    assert fresh_hosp.received() == 0


def test_a_full_outage_ends_within_the_deadline_and_retries_stay_within_the_budget(
    hosp: Hosp, fresh_hosp: Hosp, tmp_path: Path
) -> None:
    rate, burst, tries, clients = 2, 3, 3, 40
    options = {**TEST_OPTIONS, "retry_budget_rate": str(rate), "retry_budget_burst": str(burst)}
    fresh_hosp.faults(outage=True)
    with NginxProxy(f"127.0.0.1:{hosp.port}", tmp_path, options=options) as proxy:
        started = time.monotonic()
        durations, statuses = [], []
        for _ in range(clients):
            t0 = time.monotonic()
            statuses.append(get(proxy, "/hospitals").status_code)
            durations.append(time.monotonic() - t0)
        elapsed = time.monotonic() - started
    # Read once NGINX has stopped and flushed its log buffer.
    budget_spent = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    assert set(statuses) == {503}
    assert max(durations) < DEADLINE
    # Retried requests: at most the burst plus the rate over the run (and one
    # token NGINX holds at the start); each makes at most tries-1 more attempts.
    allowed_retries = burst + 1 + rate * elapsed
    assert budget_spent.count("REJECTED") >= clients - allowed_retries
    assert fresh_hosp.received() <= clients + (tries - 1) * allowed_retries
    assert fresh_hosp.received() < clients * tries / 2


def test_hosp_refusing_connections_gets_bounded_tries_and_a_502(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here: every connect is refused at once
    with NginxProxy(f"127.0.0.1:{closed}", tmp_path, options=TEST_OPTIONS) as proxy:
        read = get(proxy, "/hospitals")
        write = requests.post(proxy.url + "/notes", json={"title": "t"}, headers=DEMO_AUTH, timeout=10)
        read_entry, write_entry = log_entry(proxy, read), log_entry(proxy, write)

    assert (read.status_code, write.status_code) == (502, 502)
    assert attempts(read_entry) == ["502", "502", "502"]
    assert attempts(write_entry) == ["502"]
