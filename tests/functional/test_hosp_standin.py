"""The HOSP stand-in over real HTTP: API, auth, keep-alive, faults and the /_sim endpoints."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.hosp_standin import RunningServer, start_server
from local.hosp_standin.faults import DEFAULT_CONFIG, apply_update, outcome_for

ROOT = Path(__file__).resolve().parents[2]
SEED = 5
PASSWORD = "supersecret"
AUTH = ("test-account", PASSWORD)
AUTH_HEADER = "Basic " + base64.b64encode(f"test-account:{PASSWORD}".encode()).decode()
NOTE = {"title": "X-ray", "body": "No fracture seen.", "patient_id": 7, "staff_id": 2}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with start_server(seed=SEED) as running:
        yield running


@pytest.fixture
def hosp(server: RunningServer) -> Iterator[RunningServer]:
    """The stand-in, reset to seed data and no faults; fails a test that crashed a handler."""
    requests.post(f"{server.url}/_sim/reset", timeout=5).raise_for_status()
    errors_before = server.server.handler_errors
    yield server
    assert server.server.handler_errors == errors_before, "a request handler raised (see stderr)"


def call(hosp: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.request(method, hosp.url + path, timeout=5, **kwargs)


def set_faults(hosp: RunningServer, **update: Any) -> dict[str, Any]:
    answer = requests.put(f"{hosp.url}/_sim/faults", json=update, timeout=5)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def sim(hosp: RunningServer, path: str) -> Any:
    answer = requests.get(f"{hosp.url}/_sim/{path}", timeout=5)
    answer.raise_for_status()
    return answer.json()


def raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on a raw socket and read one answer (headers + Content-Length body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


# --- API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, ("test-account", "wrong"), ("nobody", PASSWORD), ("", "")],
    ids=["none", "wrong-password", "unknown-user", "empty"],
)
def test_requests_without_valid_credentials_get_401(hosp: RunningServer, auth: tuple[str, str] | None) -> None:
    answer = call(hosp, "GET", "/hospitals", auth=auth)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="HOSP"'
    assert answer.json() == {"error": "HTTP Basic: Access denied."}


@pytest.mark.parametrize(
    ("user", "password"), [("dr-vega", "vetpass"), ("nurse-kim", "nursepass"), ("admin-ola", "adminpass")]
)
def test_every_demo_account_is_accepted(hosp: RunningServer, user: str, password: str) -> None:
    assert call(hosp, "GET", "/patients/1", auth=(user, password)).status_code == 200


def test_seed_data_is_deterministic_and_rails_shaped(hosp: RunningServer) -> None:
    hospitals = call(hosp, "GET", "/hospitals").json()
    patient = call(hosp, "GET", "/patients/7").json()
    staff = call(hosp, "GET", "/staffs/1").json()

    assert [h["id"] for h in hospitals] == [3, 2, 1]  # newest first
    assert hospitals[2] == {
        "id": 1,
        "name": "Northside Veterinary Hospital",
        "created_at": "2023-10-02T08:01:00.000Z",
        "updated_at": "2023-10-02T08:01:00.000Z",
        "url": f"{hosp.url}/hospitals/1.json",
    }
    assert (patient["id"], patient["hospital_id"], patient["name"], patient["species"]) == (7, 1, "Coco", "rabbit")
    assert staff["username"] == "test-account"
    assert staff["role"] == "nurse"
    assert "password" not in json.dumps(staff)
    assert call(hosp, "GET", "/patients/21").status_code == 404


def test_hospital_crud(hosp: RunningServer) -> None:
    created = call(hosp, "POST", "/hospitals", json={"name": "Riverside Clinic"})
    assert created.status_code == 201
    hospital = created.json()
    assert hospital["id"] == 4
    assert created.headers["Location"] == hospital["url"] == f"{hosp.url}/hospitals/4.json"
    assert call(hosp, "GET", "/hospitals").json()[0] == hospital

    patched = call(hosp, "PATCH", "/hospitals/4", json={"name": "Riverside Animal Clinic"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Riverside Animal Clinic"
    assert call(hosp, "PUT", "/hospitals/4.json", json={"name": "Riverside Vets"}).json()["name"] == "Riverside Vets"
    assert call(hosp, "GET", "/hospitals/4").json()["name"] == "Riverside Vets"

    deleted = call(hosp, "DELETE", "/hospitals/4")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "Content-Length" not in deleted.headers  # a 204 must not carry one
    assert call(hosp, "GET", "/hospitals/4").status_code == 404
    assert call(hosp, "DELETE", "/hospitals/4").status_code == 404


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 7}])
def test_a_hospital_needs_a_name(hosp: RunningServer, body: dict[str, Any]) -> None:
    answer = call(hosp, "POST", "/hospitals", json=body)

    assert answer.status_code == 422
    assert answer.json() == {"errors": {"name": ["can't be blank"]}}


def test_notes_are_created_and_listed_per_patient(hosp: RunningServer) -> None:
    created = call(hosp, "POST", "/notes", json=NOTE)
    call(hosp, "POST", "/notes", json={**NOTE, "patient_id": 8})

    assert created.status_code == 201
    note = created.json()
    assert {k: note[k] for k in NOTE} == NOTE
    assert note["id"] == 1
    assert note["created_at"].endswith("Z")
    assert len(note["created_at"]) == len("2023-10-17T08:51:00.113Z")
    assert call(hosp, "GET", "/notes", params={"patient_id": 7}).json() == [note]
    assert call(hosp, "GET", "/notes/1").json() == note
    assert len(call(hosp, "GET", "/notes").json()) == 2


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({**NOTE, "title": ""}, {"title": ["can't be blank"]}),
        ({k: v for k, v in NOTE.items() if k != "body"}, {"body": ["can't be blank"]}),
        ({**NOTE, "patient_id": 999}, {"patient": ["must exist"]}),
        ({**NOTE, "patient_id": "7"}, {"patient": ["must exist"]}),
        ({**NOTE, "staff_id": None}, {"staff": ["must exist"]}),
    ],
)
def test_invalid_notes_get_422_and_are_not_stored(
    hosp: RunningServer, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    answer = call(hosp, "POST", "/notes", json=body)

    assert answer.status_code == 422
    assert answer.json() == {"errors": errors}
    assert call(hosp, "GET", "/notes").json() == []


def test_a_body_that_is_not_json_gets_400(hosp: RunningServer) -> None:
    answer = call(hosp, "POST", "/notes", data=b"{title", headers={"Content-Type": "application/json"})

    assert answer.status_code == 400
    assert answer.json() == {"error": "request body is not valid JSON"}


def test_screening_is_deterministic_to_the_byte(hosp: RunningServer) -> None:
    images = [base64.b64encode(b"xray-one").decode(), base64.b64encode(b"xray-two").decode()]

    first = call(hosp, "POST", "/patients/7/screen", json={"images": images})
    second = call(hosp, "POST", "/patients/7/screen", json={"images": images})
    other_patient = call(hosp, "POST", "/patients/8/screen", json={"images": images}).json()

    assert first.status_code == 200
    assert first.content == second.content
    result = first.json()
    assert result["patient_id"] == 7
    assert result["screening_id"].startswith("scr_")
    assert [r["image_index"] for r in result["results"]] == [0, 1]
    assert all(0.5 <= r["confidence"] <= 0.99 for r in result["results"])
    assert result["summary"]["images"] == 2
    assert other_patient["screening_id"] != result["screening_id"]
    assert other_patient["results"] == result["results"]  # findings depend on the image only


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/patients/7/screen", {"images": []}, 422),
        ("/patients/7/screen", {}, 422),
        ("/patients/7/screen", {"images": ["not base64!"]}, 422),
        ("/patients/7/screen", {"images": [""]}, 422),
        ("/patients/999/screen", {"images": ["aGk="]}, 404),
    ],
)
def test_bad_screen_requests(hosp: RunningServer, path: str, body: dict[str, Any], status: int) -> None:
    assert call(hosp, "POST", path, json=body).status_code == status


def test_unknown_paths_get_404_and_wrong_methods_405_in_json(hosp: RunningServer) -> None:
    missing = call(hosp, "GET", "/nothing/here", auth=None)
    wrong = call(hosp, "DELETE", "/patients/1")

    assert missing.status_code == 404
    assert "error" in missing.json()
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, HEAD"
    assert "error" in wrong.json()


def test_head_answers_like_get_without_a_body(hosp: RunningServer) -> None:
    head = call(hosp, "HEAD", "/hospitals")
    get = call(hosp, "GET", "/hospitals")

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))


# --- connections ---------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(hosp: RunningServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hosp.port, timeout=5)
    sockets, statuses = [], []
    try:
        for method, path, headers in [
            ("POST", "/notes", {"Authorization": AUTH_HEADER}),
            # An error answer to a request with a body must leave the connection usable:
            # the server reads the whole body first.
            ("POST", "/notes", {}),
            ("POST", "/nowhere", {}),
            ("GET", "/notes?patient_id=7", {"Authorization": AUTH_HEADER}),
        ]:
            conn.request(method, path, body=json.dumps(NOTE) if method == "POST" else None, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            statuses.append(answer.status)
            sockets.append(conn.sock)
            assert answer.getheader("Connection") is None
    finally:
        conn.close()

    assert statuses == [201, 401, 404, 200]
    assert sockets[0] is not None
    assert all(s is sockets[0] for s in sockets)  # http.client would have reconnected otherwise
    assert len(json.loads(body)) == 1


def test_connection_close_is_honoured(hosp: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", hosp.port), timeout=5) as sock:
        head = raw_exchange(
            sock,
            f"GET /hospitals HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode(),
        )
        # The server closes: the next read sees end of stream, not a timeout.
        assert sock.recv(1) == b""

    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close" in head


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    with (
        start_server(idle_timeout=0.3) as quick,
        socket.create_connection(("127.0.0.1", quick.port), timeout=5) as sock,
    ):
        get = f"GET /hospitals HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode()
        # Requests 0.15 s apart keep the connection alive for longer than the timeout...
        for _ in range(4):
            assert raw_exchange(sock, get).startswith(b"HTTP/1.1 200")
            time.sleep(0.15)
        # ... and once idle, it is closed after about 0.3 s.
        raw_exchange(sock, get)
        idle_since = time.monotonic()
        assert sock.recv(1) == b""
        idle = time.monotonic() - idle_since
        assert quick.server.handler_errors == 0

    assert 0.2 < idle < 2.0


# --- faults -------------------------------------------------------------------------------


def test_a_reset_fault_resets_the_connection_before_any_byte(hosp: RunningServer) -> None:
    set_faults(hosp, script=["reset", "reset"])

    with socket.create_connection(("127.0.0.1", hosp.port), timeout=5) as sock:
        sock.sendall(f"GET /hospitals HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(1)  # an RST, not an orderly close (that would return b"")
    with pytest.raises(requests.ConnectionError):
        call(hosp, "GET", "/hospitals")

    assert call(hosp, "GET", "/hospitals").status_code == 200  # the script is used up
    assert sim(hosp, "stats")["by_status"] == {"reset": 2, "200": 1}


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_injected_errors_answer_with_a_small_json_body(hosp: RunningServer, status: str) -> None:
    set_faults(hosp, script=[status])

    answer = call(hosp, "GET", "/hospitals")

    assert answer.status_code == int(status)
    assert answer.json() == {"error": f"injected {status}"}
    assert call(hosp, "GET", "/hospitals").status_code == 200


def test_an_injected_error_on_a_write_does_not_perform_it(hosp: RunningServer) -> None:
    set_faults(hosp, script=["503"])

    assert call(hosp, "POST", "/notes", json=NOTE).status_code == 503
    assert call(hosp, "GET", "/notes").json() == []


@pytest.mark.parametrize("mode", ["502", "reset"])
def test_commit_then_fail_stores_the_note_and_loses_the_answer(hosp: RunningServer, mode: str) -> None:
    set_faults(hosp, script=[f"commit_then_fail:{mode}"])

    if mode == "502":
        answer = call(hosp, "POST", "/notes", json=NOTE)
        assert answer.status_code == 502
        assert answer.json() == {"error": "injected 502 after commit"}
    else:
        with pytest.raises(requests.ConnectionError):
            call(hosp, "POST", "/notes", json=NOTE)

    notes = call(hosp, "GET", "/notes", params={"patient_id": 7}).json()
    assert [n["title"] for n in notes] == [NOTE["title"]]
    assert sim(hosp, "stats")["notes_by_patient"] == {"7": 1}


def test_a_slow_answer_arrives_after_the_delay(hosp: RunningServer) -> None:
    set_faults(hosp, script=["slow:300"])

    started = time.monotonic()
    slow = call(hosp, "GET", "/hospitals/1")
    slow_elapsed = time.monotonic() - started
    started = time.monotonic()
    call(hosp, "GET", "/hospitals/1")
    fast_elapsed = time.monotonic() - started

    assert slow.status_code == 200
    assert slow_elapsed >= 0.3
    assert fast_elapsed < 0.25


def test_an_outage_answers_503_to_everything_but_sim(hosp: RunningServer) -> None:
    set_faults(hosp, outage=True)

    read = call(hosp, "GET", "/hospitals")
    write = call(hosp, "POST", "/notes", json=NOTE)

    assert (read.status_code, write.status_code) == (503, 503)
    assert read.json() == {"error": "injected 503 (outage)"}
    stats = sim(hosp, "stats")
    assert stats["by_outcome"] == {"outage": 2}
    assert stats["notes_by_patient"] == {}
    set_faults(hosp, outage=False)
    assert call(hosp, "GET", "/hospitals").status_code == 200


def test_random_faults_follow_outcome_for_request_by_request(hosp: RunningServer) -> None:
    update = {"seed": 11, "rates": {"500": 0.2, "503": 0.3}}
    config = apply_update(DEFAULT_CONFIG, update)
    set_faults(hosp, **update)

    statuses = [call(hosp, "GET", "/patients/1").status_code for _ in range(40)]

    expected = [200 if (o := outcome_for(11, k, config)).kind == "ok" else int(o.kind) for k in range(40)]
    assert statuses == expected
    assert {500, 503, 200} <= set(statuses)


# --- /_sim ---------------------------------------------------------------------------------


def test_fault_config_get_put_and_validation(hosp: RunningServer) -> None:
    assert sim(hosp, "faults") == {**DEFAULT_CONFIG.to_json(), "seed": SEED}

    updated = set_faults(hosp, rates={"503": 0.1}, slow={"rate": 0.2})
    assert updated["rates"]["503"] == 0.1
    assert updated["slow"] == {"rate": 0.2, "min_ms": 2000, "max_ms": 20000}

    too_much = requests.put(f"{hosp.url}/_sim/faults", json={"rates": {"502": 0.9}}, timeout=5)
    not_json = requests.put(f"{hosp.url}/_sim/faults", data=b"rates", timeout=5)
    assert too_much.status_code == 400
    assert "sum to 1.2" in too_much.json()["error"]
    assert not_json.status_code == 400
    assert sim(hosp, "faults") == updated  # refused updates change nothing


def test_stats_count_api_requests_by_method_route_outcome_and_status(hosp: RunningServer) -> None:
    set_faults(hosp, script=["ok", "ok", "503"])
    call(hosp, "GET", "/hospitals")
    call(hosp, "GET", "/hospitals/1")
    call(hosp, "GET", "/hospitals/2.json")
    call(hosp, "POST", "/notes", json=NOTE)
    call(hosp, "GET", "/nowhere")
    call(hosp, "GET", "/patients/1", auth=None)
    sim(hosp, "faults")  # /_sim is never counted

    assert sim(hosp, "stats") == {
        "total": 6,
        "by_method": {"GET": 5, "POST": 1},
        "by_route": {
            "GET /hospitals": 1,
            "GET /hospitals/{id}": 2,
            "POST /notes": 1,
            "unmatched": 1,
            "GET /patients/{id}": 1,
        },
        "by_outcome": {"ok": 5, "503": 1},
        "by_status": {"200": 2, "503": 1, "201": 1, "404": 1, "401": 1},
        "notes_by_patient": {"7": 1},
    }


def test_requests_log_records_who_and_what_but_never_the_password(hosp: RunningServer) -> None:
    call(hosp, "GET", "/hospitals", auth=("dr-vega", "a-wrong-password-xyz"))
    call(
        hosp,
        "GET",
        "/notes?patient_id=7",
        headers={"X-Request-Id": "req-123", "X-Patient-Id": "7"},
    )

    answer = requests.get(f"{hosp.url}/_sim/requests", params={"limit": 1000}, timeout=5)
    seen = answer.json()

    assert [r["user"] for r in seen] == ["dr-vega", "test-account"]
    last = seen[-1]
    assert {
        k: last[k] for k in ("index", "method", "path", "route", "x_request_id", "x_patient_id", "outcome", "status")
    } == {
        "index": 1,
        "method": "GET",
        "path": "/notes?patient_id=7",
        "route": "GET /notes",
        "x_request_id": "req-123",
        "x_patient_id": "7",
        "outcome": "ok",
        "status": 200,
    }
    assert last["received_at"].endswith("Z")
    for secret in ("a-wrong-password-xyz", PASSWORD, AUTH_HEADER.split()[1], "Basic "):
        assert secret not in answer.text
    assert sim(hosp, "requests?limit=1") == [last]
    assert requests.get(f"{hosp.url}/_sim/requests", params={"limit": 0}, timeout=5).status_code == 400


def test_reset_restores_seed_data_counters_index_and_startup_faults(hosp: RunningServer) -> None:
    call(hosp, "POST", "/hospitals", json={"name": "Temporary"})
    call(hosp, "POST", "/notes", json=NOTE)
    set_faults(hosp, outage=True, script=["503"], seed=99)

    assert requests.post(f"{hosp.url}/_sim/reset", timeout=5).json() == {"status": "reset"}

    assert sim(hosp, "faults") == {**DEFAULT_CONFIG.to_json(), "seed": SEED}
    assert sim(hosp, "stats")["total"] == 0
    assert sim(hosp, "requests") == []
    assert [h["id"] for h in call(hosp, "GET", "/hospitals").json()] == [3, 2, 1]
    assert call(hosp, "GET", "/notes").json() == []
    assert sim(hosp, "requests")[0]["index"] == 0  # k starts again from 0


def test_sim_endpoints_refuse_unknown_paths_and_methods(hosp: RunningServer) -> None:
    assert requests.get(f"{hosp.url}/_sim/nothing", timeout=5).status_code == 404
    assert requests.post(f"{hosp.url}/_sim/stats", timeout=5).status_code == 405
    assert requests.get(f"{hosp.url}/_sim/reset", timeout=5).status_code == 405


# --- command line ---------------------------------------------------------------------------


def test_cli_announces_its_url_applies_fault_flags_and_exits_cleanly_on_sigterm() -> None:
    argv = [sys.executable, "-m", "local.hosp_standin", "--port", "0", "--seed", "3", "--fault", "503=0.25"]
    argv += ["--faults", '{"slow": {"rate": 0.1, "min_ms": 10, "max_ms": 20}}']
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            url = line.strip().removeprefix("HOSP stand-in listening on ")
            faults = requests.get(f"{url}/_sim/faults", timeout=5).json()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            process.kill()

    assert line.startswith("HOSP stand-in listening on http://127.0.0.1:")
    assert faults["seed"] == 3
    assert faults["rates"]["503"] == 0.25
    assert faults["slow"] == {"rate": 0.1, "min_ms": 10, "max_ms": 20}


def test_cli_refuses_an_invalid_fault_config() -> None:
    argv = [sys.executable, "-m", "local.hosp_standin", "--port", "0", "--fault", "503=0.7", "--fault", "502=0.7"]
    finished = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)

    assert finished.returncode == 2
    assert "fault rates sum to 1.4" in finished.stderr
