"""The real NGINX, with the project's rendered config, in front of the real HOSP stand-in.

Every test scripts HOSP's next outcomes (`Hosp.script`) and then checks what
the client saw and what HOSP received: retries are proven by HOSP's own
request counters and the access log, not by timing.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from chalicelib import errors
from infra.nginx.render import MAX_BODY_BYTES, Tuning, worst_case
from local.nginx_proxy import NginxProxy
from local.processes import ROOT, closed_port
from tests.error_shape import assert_error
from tests.support import DEMO_AUTH, DEMO_PASSWORD, DEMO_USER, HOSP_IDLE_TIMEOUT, Hosp, access_log_lines

TRY_TIMEOUT = 1.0
DEADLINE = 2.5
WRITE_TIMEOUT = 4.0
CLIENT_TIMEOUT = 1.0
TEST_TUNING = Tuning(
    tries=3,
    connect_timeout=0.5,
    try_timeout=TRY_TIMEOUT,
    deadline=DEADLINE,
    write_timeout=WRITE_TIMEOUT,
    client_timeout=CLIENT_TIMEOUT,
    keepalive_timeout=HOSP_IDLE_TIMEOUT / 2,
    # Generous: these tests are about retries, the budget has its own test.
    retry_budget_ratio=10,
    retry_budget_floor=1000,
    # The tests read the log right after each answer.
    access_log_buffer="off",
)
# Slack for a loaded machine on top of a time the config guarantees.
MARGIN = 1.5
ATTEMPT_SEPARATOR = re.compile(r"\s*,\s*|\s+:\s+")


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with NginxProxy(hosp.address, tmp_path_factory.mktemp("nginx"), tuning=TEST_TUNING) as running:
        yield running


def log_entry(proxy: NginxProxy, answer: requests.Response) -> dict[str, object]:
    """The access-log line of one answer, found by its X-Request-Id."""
    return logged_request(proxy, answer.headers["X-Request-Id"])


def logged_request(proxy: NginxProxy, request_id: str) -> dict[str, object]:
    """The log line of a request. The tests turn the buffer off, but NGINX writes the
    line just after the answer's last byte, so the client may read first: wait briefly."""
    deadline = time.monotonic() + 5
    while True:
        for entry in log_entries(proxy):
            if entry["request_id"] == request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line for request {request_id}")
        time.sleep(0.01)


def log_entries(proxy: NginxProxy) -> list[dict[str, object]]:
    return access_log_lines(proxy)


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
    assert elapsed >= TRY_TIMEOUT
    assert attempts(log_entry(proxy, answer)) == ["504", "200"]


def test_slow_answers_on_every_try_end_within_deadline_plus_one_try(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    slow = f"slow:{int(DEADLINE * 2000)}"
    fresh_hosp.script(slow, slow, slow)

    started = time.monotonic()
    answer = get(proxy, "/hospitals")
    elapsed = time.monotonic() - started

    assert answer.status_code == 504
    assert elapsed < worst_case(TEST_TUNING) + MARGIN
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
    # Through the internal listener, as the interceptor sends it (the public one sends screens to it).
    screen = requests.post(proxy.internal_url + "/patients/1/screen", json=body, headers=DEMO_AUTH, timeout=10)
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
    tuning = dataclasses.replace(TEST_TUNING, tries=5, try_timeout=1.0, deadline=2.5)
    slow = "slow:3000"
    fresh_hosp.script(*[slow] * 5)
    with NginxProxy(hosp.address, tmp_path, tuning=tuning) as proxy:
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


@pytest.mark.parametrize("path", ["/_proxy/stats", "/_proxy/", "/_proxy/health/x", "/_proxy/error", "/%5Fproxy/stats"])
def test_another_path_under_the_proxys_own_prefix_is_the_proxys_404_not_hosps(
    proxy: NginxProxy, fresh_hosp: Hosp, path: str
) -> None:
    answer = requests.get(proxy.url + path, headers=DEMO_AUTH, timeout=5)

    assert answer.status_code == 404
    assert answer.json() == {
        "error": "no such resource at the proxy",
        "status": 404,
        "request_id": answer.headers["X-Request-Id"],
    }
    assert fresh_hosp.received() == 0


def test_a_full_outage_ends_within_the_deadline_and_retries_stay_within_the_budget(
    hosp: Hosp, fresh_hosp: Hosp, tmp_path: Path
) -> None:
    ratio, floor_attempts, tries, clients = 0.2, 4, 3, 40
    tuning = dataclasses.replace(
        TEST_TUNING, retry_budget_ratio=ratio, retry_budget_floor=floor_attempts / 60, retry_budget_window=60
    )
    fresh_hosp.faults(outage=True)
    with NginxProxy(hosp.address, tmp_path, tuning=tuning) as proxy:
        durations, statuses = [], []
        for _ in range(clients):
            t0 = time.monotonic()
            statuses.append(get(proxy, "/hospitals").status_code)
            durations.append(time.monotonic() - t0)
    # Read once NGINX has stopped and flushed its log buffer.
    budget_spent = [json.loads(line)["retry_budget"] for line in proxy.access_log.read_text().splitlines()]

    assert set(statuses) == {503}
    assert max(durations) < DEADLINE
    # Retry attempts: at most ratio x requests + the lone user's half of the floor,
    # the last retry one attempt over at most (tests/integration/test_retry_budget.py).
    retries = fresh_hosp.received() - clients
    assert retries <= ratio * clients + floor_attempts / 2 + tries - 2
    assert budget_spent.count("PASSED") * (tries - 1) == retries
    assert budget_spent.count("REJECTED") == clients - budget_spent.count("PASSED")


def test_hosp_refusing_connections_gets_bounded_tries_and_a_502(tmp_path: Path) -> None:
    closed = closed_port()  # nothing listens here: every connect is refused at once
    with NginxProxy(f"127.0.0.1:{closed}", tmp_path, tuning=TEST_TUNING) as proxy:
        read = get(proxy, "/hospitals")
        write = requests.post(proxy.url + "/notes", json={"title": "t"}, headers=DEMO_AUTH, timeout=10)
        read_entry, write_entry = log_entry(proxy, read), log_entry(proxy, write)

    assert (read.status_code, write.status_code) == (502, 502)
    assert attempts(read_entry) == ["502", "502", "502"]
    assert attempts(write_entry) == ["502"]


# --- what is not retried ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["502", "reset"])
def test_a_delete_is_attempted_once_so_a_committed_delete_is_not_replayed_into_a_404(
    proxy: NginxProxy, fresh_hosp: Hosp, mode: str
) -> None:
    fresh_hosp.script(f"commit_then_fail:{mode}")

    answer = requests.delete(proxy.url + "/hospitals/3", headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 502  # unknown outcome, not a misleading 404
    assert fresh_hosp.received() == 1
    assert get(proxy, "/hospitals/3").status_code == 404  # HOSP did delete it, once


def test_a_request_without_credentials_is_not_retried(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503", "503")

    answer = requests.get(proxy.url + "/hospitals", timeout=10)

    assert answer.status_code == 503
    assert answer.json() == {"error": "injected 503"}  # HOSP's own answer
    assert fresh_hosp.received() == 1
    assert log_entry(proxy, answer)["retry_budget"] == ""  # the budget was not touched


def test_a_put_that_hosp_committed_is_replayed_to_the_same_answer(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("commit_then_fail:502")

    answer = requests.put(proxy.url + "/hospitals/1", json={"name": "Eastside"}, headers=DEMO_AUTH, timeout=10)
    again = requests.put(proxy.url + "/hospitals/1", json={"name": "Eastside"}, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 200
    assert answer.json() == again.json()  # a replay of a committed PUT changes nothing, updated_at included
    assert int(fresh_hosp.stats()["by_method"]["PUT"]) == 3


# --- the proxy's own answers: JSON, one body limit, slow clients ------------------------------------


def assert_proxy_error(answer: requests.Response, status: int) -> None:
    """The proxy's own error: the one shape of every error (docs/errors.md), with the answer's request id."""
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    assert set(assert_error(answer.content, status, request_id=answer.headers["X-Request-Id"])) == set(errors.FIELDS)


def raw_exchange(proxy: NginxProxy, data: bytes) -> bytes:
    """Send bytes as they are and read the answer until NGINX closes."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO"])
def test_a_method_outside_the_api_gets_a_json_405_with_allow_and_never_reaches_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, method: str
) -> None:
    answer = requests.request(method, proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10)

    assert_proxy_error(answer, 405)
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /hospitals HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET /hospitals HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ],
)
def test_a_malformed_request_gets_a_json_error_from_the_proxy(
    proxy: NginxProxy, fresh_hosp: Hosp, request_bytes: bytes, status: int
) -> None:
    head, _, body = raw_exchange(proxy, request_bytes).partition(b"\r\n\r\n")

    assert head.split(b" ")[1] == str(status).encode()
    assert b"Content-Type: application/json" in head
    request_id = re.search(rb"\r\nX-Request-Id: ([0-9a-f]{32})(?:\r\n|$)", head)
    assert request_id is not None, head
    assert set(assert_error(body, status, request_id=request_id.group(1).decode())) == set(errors.FIELDS)
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_a_body_over_the_limit_gets_a_json_413_and_never_reaches_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, method: str
) -> None:
    too_large = b"x" * (MAX_BODY_BYTES + 1)

    answer = requests.request(method, proxy.url + "/hospitals/1", data=too_large, headers=DEMO_AUTH, timeout=30)

    assert_proxy_error(answer, 413)
    assert fresh_hosp.received() == 0  # refused before HOSP, so never retried either


def test_a_chunked_body_over_the_limit_gets_a_json_413(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536

    answer = requests.put(proxy.url + "/hospitals/1", data=chunks(), headers=DEMO_AUTH, timeout=30)

    assert_proxy_error(answer, 413)
    assert fresh_hosp.received() == 0


def test_a_body_at_the_limit_reaches_hosp_which_accepts_the_same_limit(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    envelope = b'{"name":""}'
    name = b"N" * (MAX_BODY_BYTES - len(envelope))
    body = b'{"name":"' + name + b'"}'
    assert len(body) == MAX_BODY_BYTES

    answer = requests.put(proxy.url + "/hospitals/2", data=body, headers=DEMO_AUTH, timeout=60)

    assert answer.status_code == 200
    assert fresh_hosp.received() == 1


def test_hosp_unreachable_is_a_json_502(tmp_path: Path) -> None:
    with NginxProxy(f"127.0.0.1:{closed_port()}", tmp_path, tuning=TEST_TUNING) as proxy:
        read = get(proxy, "/hospitals")
        write = requests.post(proxy.url + "/notes", json={"title": "t"}, headers=DEMO_AUTH, timeout=10)

    assert_proxy_error(read, 502)
    assert_proxy_error(write, 502)


def test_a_budget_refusal_names_its_request(hosp: Hosp, fresh_hosp: Hosp, tmp_path: Path) -> None:
    tuning = dataclasses.replace(TEST_TUNING, retry_budget_ratio=0, retry_budget_floor=0.1)
    fresh_hosp.faults(outage=True)
    with NginxProxy(hosp.address, tmp_path, tuning=tuning) as proxy:
        answers = [get(proxy, "/hospitals") for _ in range(5)]

    refused = [a for a in answers if a.headers.get("Retry-After") == "1"]
    assert refused
    for answer in refused:
        assert_proxy_error(answer, 503)


def test_a_client_that_stalls_mid_body_is_cut_off_after_the_client_timeout(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    head = b"PUT /hospitals/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n"
    auth = f"Authorization: {DEMO_AUTH['Authorization']}\r\n\r\n".encode()
    # Without the timeout the connection would wait for the other 92 bytes
    # forever; the socket's own timeout is far longer than the proxy's.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10 * CLIENT_TIMEOUT + MARGIN) as connection:
        connection.sendall(head + auth + b'{"name":')
        started = time.monotonic()
        closed = connection.recv(1024) == b""  # NGINX closes without an answer
        silent_for = time.monotonic() - started

    assert closed
    assert CLIENT_TIMEOUT * 0.5 < silent_for < CLIENT_TIMEOUT + MARGIN
    assert fresh_hosp.received() == 0
    logged = [e["status"] for e in log_entries(proxy) if e["method"] == "PUT" and e["path"] == "/hospitals/1"]
    assert logged[-1] == 408


def test_no_worker_runs_as_root(proxy: NginxProxy) -> None:
    assert proxy.process is not None
    # The workers are the master's children (setpriv, when present, execs into the master).
    children = Path(f"/proc/{proxy.process.pid}/task/{proxy.process.pid}/children").read_text().split()
    worker_uids = [
        int(line.split()[1])  # the real uid
        for pid in children
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    ]

    assert worker_uids  # the master has workers
    assert 0 not in worker_uids
