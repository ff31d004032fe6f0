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
from typing import Any

import pytest
import requests

from local.hosp_standin import RunningServer, start_server
from local.hosp_standin.faults import DEFAULT_CONFIG, ROUTE_NAMES, apply_update, outcome_for
from local.hosp_standin.server import MAX_BODY_BYTES
from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.hosp_standin.store import DEMO_ACCOUNTS, NOTES_SERVICE_ACCOUNT, DemoAccount
from local.processes import ROOT

SEED = 5
USER, PASSWORD = DEMO_ACCOUNTS[0].username, DEMO_ACCOUNTS[0].password
AUTH = (USER, PASSWORD)
AUTH_HEADER = DEMO_ACCOUNTS[0].authorization
NOTE = {"title": "X-ray", "body": "No fracture seen.", "patient_id": 7, "staff_id": 2}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with start_server(seed=SEED) as running:
        yield running


@pytest.fixture
def standin(server: RunningServer) -> Iterator[RunningServer]:
    """The stand-in, reset to seed data and no faults; fails a test that crashed a handler."""
    requests.post(f"{server.url}/_sim/reset", timeout=5).raise_for_status()
    errors_before = server.server.handler_errors
    yield server
    assert server.server.handler_errors == errors_before, "a request handler raised (see stderr)"


def call(standin: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    kwargs.setdefault("timeout", 5)
    return requests.request(method, standin.url + path, **kwargs)


def set_faults(standin: RunningServer, **update: Any) -> dict[str, Any]:
    answer = requests.put(f"{standin.url}/_sim/faults", json=update, timeout=5)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def sim(standin: RunningServer, path: str) -> Any:
    answer = requests.get(f"{standin.url}/_sim/{path}", timeout=5)
    answer.raise_for_status()
    return answer.json()


def raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on a raw socket and read one answer; returns its head."""
    sock.sendall(request)
    return read_answer(sock)[0]


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One answer from a raw socket: (head, body), the body as long as its Content-Length."""
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
    return head, body


def raw_request(method: str, path: str, body: bytes = b"", framing: bytes | None = None) -> bytes:
    """An authenticated request; framing is its body's framing header (default: the true Content-Length)."""
    framing = f"Content-Length: {len(body)}".encode() if framing is None else framing
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH_HEADER}\r\n".encode()
    return head + framing + b"\r\n\r\n" + body


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


# --- API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, ("test-account", "wrong"), ("nobody", PASSWORD), ("", "")],
    ids=["none", "wrong-password", "unknown-user", "empty"],
)
def test_requests_without_valid_credentials_get_401(standin: RunningServer, auth: tuple[str, str] | None) -> None:
    answer = call(standin, "GET", "/hospitals", auth=auth)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="HOSP"'
    assert answer.json() == {"error": "HTTP Basic: Access denied."}


@pytest.mark.parametrize("account", DEMO_ACCOUNTS, ids=lambda account: account.username)
def test_every_demo_account_is_accepted_as_its_staff_record(standin: RunningServer, account: DemoAccount) -> None:
    answer = call(standin, "GET", f"/staffs/{account.staff_id}", auth=(account.username, account.password))

    assert answer.status_code == 200
    assert answer.json()["username"] == account.username


def test_the_notes_service_account_is_a_service_staff_record_that_can_write_notes(standin: RunningServer) -> None:
    service = (NOTES_SERVICE_ACCOUNT.username, NOTES_SERVICE_ACCOUNT.password)

    staff = call(standin, "GET", f"/staffs/{NOTES_SERVICE_ACCOUNT.staff_id}", auth=service).json()
    note = call(standin, "POST", "/notes", auth=service, json={**NOTE, "staff_id": NOTES_SERVICE_ACCOUNT.staff_id})

    assert (NOTES_SERVICE_ACCOUNT.username, NOTES_SERVICE_ACCOUNT.staff_id) == ("notes-service", 5)
    assert {k: staff[k] for k in ("id", "name", "role", "username", "hospital_id")} == {
        "id": 5,
        "name": "X-ray Notes Service",
        "role": "service",
        "username": "notes-service",
        "hospital_id": 1,
    }
    assert note.status_code == 201
    assert note.json()["staff_id"] == 5
    # Its password is its own: another account's does not open it.
    assert call(standin, "GET", "/hospitals", auth=("notes-service", PASSWORD)).status_code == 401


def test_seed_data_is_deterministic_and_rails_shaped(standin: RunningServer) -> None:
    hospitals = call(standin, "GET", "/hospitals").json()
    patient = call(standin, "GET", "/patients/7").json()
    staff = call(standin, "GET", "/staffs/1").json()

    assert [h["id"] for h in hospitals] == [3, 2, 1]  # newest first
    assert hospitals[2] == {
        "id": 1,
        "name": "Northside Veterinary Hospital",
        "created_at": "2023-10-02T08:01:00.000Z",
        "updated_at": "2023-10-02T08:01:00.000Z",
        "url": f"{standin.url}/hospitals/1.json",
    }
    assert (patient["id"], patient["hospital_id"], patient["name"], patient["species"]) == (7, 1, "Coco", "rabbit")
    assert staff["username"] == USER
    assert staff["role"] == "nurse"
    assert "password" not in json.dumps(staff)
    assert call(standin, "GET", "/patients/21").status_code == 404


def test_hospital_crud(standin: RunningServer) -> None:
    created = call(standin, "POST", "/hospitals", json={"name": "Riverside Clinic"})
    assert created.status_code == 201
    hospital = created.json()
    assert hospital["id"] == 4
    assert created.headers["Location"] == hospital["url"] == f"{standin.url}/hospitals/4.json"
    assert call(standin, "GET", "/hospitals").json()[0] == hospital

    patched = call(standin, "PATCH", "/hospitals/4", json={"name": "Riverside Animal Clinic"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Riverside Animal Clinic"
    assert call(standin, "PUT", "/hospitals/4.json", json={"name": "Riverside Vets"}).json()["name"] == "Riverside Vets"
    assert call(standin, "GET", "/hospitals/4").json()["name"] == "Riverside Vets"

    deleted = call(standin, "DELETE", "/hospitals/4")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "Content-Length" not in deleted.headers  # a 204 must not carry one
    assert call(standin, "GET", "/hospitals/4").status_code == 404
    assert call(standin, "DELETE", "/hospitals/4").status_code == 404


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 7}, {"name": None}])
def test_a_hospital_needs_a_name(standin: RunningServer, body: dict[str, Any]) -> None:
    answer = call(standin, "POST", "/hospitals", json=body)

    assert answer.status_code == 422
    assert answer.json() == {"errors": {"name": ["can't be blank"]}}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_an_update_may_leave_the_name_out_but_not_blank_it(standin: RunningServer, method: str) -> None:
    kept = call(standin, method, "/hospitals/1", json={})
    blanked = [call(standin, method, "/hospitals/1", json={"name": name}) for name in (None, "", " ", 7)]

    assert kept.status_code == 200
    assert [answer.status_code for answer in blanked] == [422] * 4
    assert call(standin, "GET", "/hospitals/1").json() == kept.json()


def test_notes_are_created_and_listed_per_patient(standin: RunningServer) -> None:
    created = call(standin, "POST", "/notes", json=NOTE)
    call(standin, "POST", "/notes", json={**NOTE, "patient_id": 8})

    assert created.status_code == 201
    note = created.json()
    assert {k: note[k] for k in NOTE} == NOTE
    assert note["id"] == 1
    assert note["created_at"].endswith("Z")
    assert len(note["created_at"]) == len("2023-10-17T08:51:00.113Z")
    assert call(standin, "GET", "/notes", params={"patient_id": 7}).json() == [note]
    assert call(standin, "GET", "/notes/1").json() == note
    assert len(call(standin, "GET", "/notes").json()) == 2


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
    standin: RunningServer, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    answer = call(standin, "POST", "/notes", json=body)

    assert answer.status_code == 422
    assert answer.json() == {"errors": errors}
    assert call(standin, "GET", "/notes").json() == []


def test_a_body_that_is_not_json_gets_400(standin: RunningServer) -> None:
    answer = call(standin, "POST", "/notes", data=b"{title", headers={"Content-Type": "application/json"})

    assert answer.status_code == 400
    assert answer.json()["error"].startswith("request body is not valid JSON")


def test_screening_is_deterministic_to_the_byte(standin: RunningServer) -> None:
    images = [base64.b64encode(b"xray-one").decode(), base64.b64encode(b"xray-two").decode()]

    first = call(standin, "POST", "/patients/7/screen", json={"images": images})
    second = call(standin, "POST", "/patients/7/screen", json={"images": images})
    other_patient = call(standin, "POST", "/patients/8/screen", json={"images": images}).json()

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
def test_bad_screen_requests(standin: RunningServer, path: str, body: dict[str, Any], status: int) -> None:
    assert call(standin, "POST", path, json=body).status_code == status


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("", "image 1 is empty"),
        ("not base64!", "image 1 is not valid base64 (padded, standard alphabet)"),
        ("aGk", "image 1 is not valid base64 (padded, standard alphabet)"),
        (7, "image 1 must be a base64 string"),
        (None, "image 1 must be a base64 string"),
    ],
)
def test_a_bad_image_is_named_plainly(standin: RunningServer, image: object, says: str) -> None:
    answer = call(standin, "POST", "/patients/7/screen", json={"images": ["aGk=", image]})
    assert answer.status_code == 422
    assert answer.json() == {"errors": {"images": [says]}}


def test_unknown_paths_get_404_and_wrong_methods_405_in_json(standin: RunningServer) -> None:
    missing = call(standin, "GET", "/nothing/here", auth=None)
    wrong = call(standin, "DELETE", "/patients/1")

    assert missing.status_code == 404
    assert "error" in missing.json()
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, HEAD"
    assert "error" in wrong.json()


def test_head_answers_like_get_without_a_body(standin: RunningServer) -> None:
    head = call(standin, "HEAD", "/hospitals")
    get = call(standin, "GET", "/hospitals")

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))


# --- connections ---------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(standin: RunningServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
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


def test_connection_close_is_honoured(standin: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        head = raw_exchange(
            sock,
            f"GET /hospitals HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode(),
        )
        # The server closes: the next read sees end of stream, not a timeout.
        assert sock.recv(1) == b""

    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close" in head


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    timeout = 1.5
    with (
        start_server(idle_timeout=timeout) as quick,
        socket.create_connection(("127.0.0.1", quick.port), timeout=30) as sock,
    ):
        get = f"GET /hospitals HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode()
        # Requests a third of the timeout apart keep the connection alive for longer
        # than the timeout (a busy machine has a second of slack on each pause) ...
        started = time.monotonic()
        for _ in range(4):
            assert raw_exchange(sock, get).startswith(b"HTTP/1.1 200")
            time.sleep(timeout / 3)
        alive = time.monotonic() - started
        # ... and once idle, it is closed: an orderly end of stream, not our recv timeout.
        raw_exchange(sock, get)
        idle_since = time.monotonic()
        assert sock.recv(1) == b""
        idle = time.monotonic() - idle_since
        assert quick.server.handler_errors == 0

    assert alive > timeout
    # Not before the timeout (the server's clock starts a little before ours).
    assert idle > timeout / 2


# --- faults -------------------------------------------------------------------------------


def test_a_reset_fault_resets_the_connection_before_any_byte(standin: RunningServer) -> None:
    set_faults(standin, script=["reset", "reset"])

    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(f"GET /hospitals HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH_HEADER}\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(1)  # an RST, not an orderly close (that would return b"")
    with pytest.raises(requests.ConnectionError):
        call(standin, "GET", "/hospitals")

    assert call(standin, "GET", "/hospitals").status_code == 200  # the script is used up
    assert sim(standin, "stats")["by_status"] == {"reset": 2, "200": 1}


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_injected_errors_answer_with_a_small_json_body(standin: RunningServer, status: str) -> None:
    set_faults(standin, script=[status])

    answer = call(standin, "GET", "/hospitals")

    assert answer.status_code == int(status)
    assert answer.json() == {"error": f"injected {status}"}
    assert call(standin, "GET", "/hospitals").status_code == 200


def test_an_injected_error_on_a_write_does_not_perform_it(standin: RunningServer) -> None:
    set_faults(standin, script=["503"])

    assert call(standin, "POST", "/notes", json=NOTE).status_code == 503
    assert call(standin, "GET", "/notes").json() == []


@pytest.mark.parametrize("mode", ["502", "reset"])
def test_commit_then_fail_stores_the_note_and_loses_the_answer(standin: RunningServer, mode: str) -> None:
    set_faults(standin, script=[f"commit_then_fail:{mode}"])

    if mode == "502":
        answer = call(standin, "POST", "/notes", json=NOTE)
        assert answer.status_code == 502
        assert answer.json() == {"error": "injected 502 after commit"}
    else:
        with pytest.raises(requests.ConnectionError):
            call(standin, "POST", "/notes", json=NOTE)

    notes = call(standin, "GET", "/notes", params={"patient_id": 7}).json()
    assert [n["title"] for n in notes] == [NOTE["title"]]
    assert sim(standin, "stats")["notes_by_patient"] == {"7": 1}


def test_a_slow_answer_arrives_after_the_delay_and_only_once(standin: RunningServer) -> None:
    set_faults(standin, script=["slow:300"])

    started = time.monotonic()
    slow = call(standin, "GET", "/hospitals/1")
    slow_elapsed = time.monotonic() - started
    call(standin, "GET", "/hospitals/1")

    assert slow.status_code == 200
    assert slow_elapsed >= 0.3  # a lower bound holds however loaded the machine is
    # The delay applied to the scripted request only: the log says so, not a clock.
    assert [(r["outcome"], r["delay_ms"]) for r in sim(standin, "requests")] == [("slow", 300), ("ok", 0)]


def test_an_outage_answers_503_to_everything_but_sim(standin: RunningServer) -> None:
    set_faults(standin, outage=True)

    read = call(standin, "GET", "/hospitals")
    write = call(standin, "POST", "/notes", json=NOTE)

    assert (read.status_code, write.status_code) == (503, 503)
    assert read.json() == {"error": "injected 503 (outage)"}
    stats = sim(standin, "stats")
    assert stats["by_outcome"] == {"outage": 2}
    assert stats["notes_by_patient"] == {}
    set_faults(standin, outage=False)
    assert call(standin, "GET", "/hospitals").status_code == 200


def test_random_faults_follow_outcome_for_request_by_request(standin: RunningServer) -> None:
    update = {"seed": 11, "rates": {"500": 0.2, "503": 0.3}}
    config = apply_update(DEFAULT_CONFIG, update)
    set_faults(standin, **update)

    statuses = [call(standin, "GET", "/patients/1").status_code for _ in range(40)]

    expected = [200 if (o := outcome_for(11, k, config)).kind == "ok" else int(o.kind) for k in range(40)]
    assert statuses == expected
    assert {500, 503, 200} <= set(statuses)


def test_a_route_entry_faults_its_route_and_no_other(standin: RunningServer) -> None:
    set_faults(
        standin,
        routes={"POST /notes": {"commit_then_fail": {"rate": 1.0}}, "GET /hospitals": {"rates": {"503": 1.0}}},
    )

    commit_lost = call(standin, "POST", "/notes", json=NOTE)
    notes = call(standin, "GET", "/notes")
    listed = call(standin, "GET", "/hospitals")
    created = call(standin, "POST", "/hospitals", json={"name": "Riverside Clinic"})
    # HEAD has no route name of its own ("HEAD /hospitals"): the top level's rates.
    head = call(standin, "HEAD", "/hospitals")

    assert commit_lost.status_code == 502
    assert commit_lost.json() == {"error": "injected 502 after commit"}
    # The note was stored all the same, and reading it back is not faulted.
    assert notes.status_code == 200
    assert [n["title"] for n in notes.json()] == [NOTE["title"]]
    assert listed.status_code == 503
    assert listed.json() == {"error": "injected 503"}
    assert created.status_code == 201
    assert head.status_code == 200
    assert sim(standin, "stats")["by_outcome"] == {"commit_then_fail:502": 1, "ok": 3, "503": 1}


def test_random_per_route_faults_follow_outcome_for_with_the_logged_route(standin: RunningServer) -> None:
    update = {
        "seed": 11,
        "rates": {"500": 0.3},
        "routes": {"GET /patients/{id}": {"rates": {"503": 0.4}}, "GET /staffs/{id}": {}},
    }
    config = apply_update(DEFAULT_CONFIG, update)
    set_faults(standin, **update)

    paths = ["/patients/1", "/staffs/1", "/hospitals/1", "/nowhere"] * 15
    statuses = [call(standin, "GET", path).status_code for path in paths]
    log = sim(standin, "requests")

    def expected(k: int, route: str, unfaulted: int) -> int:
        outcome = outcome_for(11, k, config, route)
        return unfaulted if outcome.kind == "ok" else int(outcome.kind)

    unfaulted = {"/nowhere": 404}
    assert statuses == [expected(r["index"], r["route"], unfaulted.get(r["path"], 200)) for r in log]
    by_path = {path: {s for p, s in zip(paths, statuses, strict=True) if p == path} for path in set(paths)}
    assert by_path["/patients/1"] == {200, 503}
    assert by_path["/staffs/1"] == {200}
    assert by_path["/hospitals/1"] == {200, 500}
    assert by_path["/nowhere"] == {404, 500}


# --- /_sim ---------------------------------------------------------------------------------


def test_fault_config_get_put_and_validation(standin: RunningServer) -> None:
    assert sim(standin, "faults") == {**DEFAULT_CONFIG.to_json(), "seed": SEED}

    updated = set_faults(standin, rates={"503": 0.1}, slow={"rate": 0.2})
    assert updated["rates"]["503"] == 0.1
    assert updated["slow"] == {"rate": 0.2, "min_ms": 2000, "max_ms": 20000}

    too_much = requests.put(f"{standin.url}/_sim/faults", json={"rates": {"502": 0.9}}, timeout=5)
    not_json = requests.put(f"{standin.url}/_sim/faults", data=b"rates", timeout=5)
    assert too_much.status_code == 400
    assert "sum to 1.2" in too_much.json()["error"]
    assert not_json.status_code == 400
    assert sim(standin, "faults") == updated  # refused updates change nothing


def test_delete_turns_every_fault_off_and_keeps_the_records(standin: RunningServer) -> None:
    """PUT merges, so {"rates": {}} leaves the faults on; DELETE turns them all off, a
    route's, the outage and the script included, and HOSP then answers every request."""
    note = call(standin, "POST", "/notes", json={"title": "t", "body": "b", "patient_id": 1, "staff_id": 1})
    assert note.status_code == 201, note.text
    set_faults(standin, rates={"503": 0.5, "reset": 0.2}, outage=True, routes={"GET /hospitals": {"rates": {"502": 1}}})
    assert set_faults(standin, rates={})["outage"] is True  # what a newcomer tries first: nothing changes

    cleared = requests.delete(f"{standin.url}/_sim/faults", timeout=5)

    assert cleared.status_code == 200
    assert cleared.json() == {**DEFAULT_CONFIG.to_json(), "seed": SEED}
    assert [call(standin, "GET", "/hospitals").status_code for _ in range(20)] == [200] * 20
    assert call(standin, "GET", f"/notes/{note.json()['id']}").status_code == 200  # the records are kept


def test_fault_config_routes_are_shown_changed_and_checked(standin: RunningServer) -> None:
    assert sim(standin, "faults")["routes"] == {}

    updated = set_faults(standin, routes={"POST /notes": {"rates": {"502": 0.2}}})
    unknown = requests.put(f"{standin.url}/_sim/faults", json={"routes": {"POST /note": {}}}, timeout=5)

    assert updated["routes"] == {
        "POST /notes": {
            "rates": {"500": 0.0, "502": 0.2, "503": 0.0, "504": 0.0, "reset": 0.0},
            "slow": {"rate": 0.0, "min_ms": 2000, "max_ms": 20000},
            "commit_then_fail": {"rate": 0.0, "mode": "502"},
        }
    }
    assert sim(standin, "faults") == updated
    assert unknown.status_code == 400
    message = unknown.json()["error"]
    assert "unknown route(s) in routes: 'POST /note'" in message
    assert all(name in message for name in ROUTE_NAMES)
    assert set_faults(standin, routes={"POST /notes": None})["routes"] == {}


def test_stats_count_api_requests_by_method_route_outcome_and_status(standin: RunningServer) -> None:
    set_faults(standin, script=["ok", "ok", "503"])
    call(standin, "GET", "/hospitals")
    call(standin, "GET", "/hospitals/1")
    call(standin, "GET", "/hospitals/2.json")
    call(standin, "POST", "/notes", json=NOTE)
    call(standin, "GET", "/nowhere")
    call(standin, "GET", "/patients/1", auth=None)
    sim(standin, "faults")  # /_sim is never counted

    assert sim(standin, "stats") == {
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


def test_requests_log_records_who_and_what_but_never_the_password(standin: RunningServer) -> None:
    call(standin, "GET", "/hospitals", auth=("dr-vega", "a-wrong-password-xyz"))
    call(
        standin,
        "GET",
        "/notes?patient_id=7",
        headers={"X-Request-Id": "req-123", "X-Patient-Id": "7"},
    )

    answer = requests.get(f"{standin.url}/_sim/requests", params={"limit": 1000}, timeout=5)
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
    assert sim(standin, "requests?limit=1") == [last]
    assert requests.get(f"{standin.url}/_sim/requests", params={"limit": 0}, timeout=5).status_code == 400


def test_reset_restores_seed_data_counters_index_and_startup_faults(standin: RunningServer) -> None:
    call(standin, "POST", "/hospitals", json={"name": "Temporary"})
    call(standin, "POST", "/notes", json=NOTE)
    set_faults(standin, outage=True, script=["503"], seed=99)

    assert requests.post(f"{standin.url}/_sim/reset", timeout=5).json() == {"status": "reset"}

    assert sim(standin, "faults") == {**DEFAULT_CONFIG.to_json(), "seed": SEED}
    assert sim(standin, "stats")["total"] == 0
    assert sim(standin, "requests") == []
    assert [h["id"] for h in call(standin, "GET", "/hospitals").json()] == [3, 2, 1]
    assert call(standin, "GET", "/notes").json() == []
    assert sim(standin, "requests")[0]["index"] == 0  # k starts again from 0


def test_sim_endpoints_refuse_unknown_paths_and_methods(standin: RunningServer) -> None:
    assert requests.get(f"{standin.url}/_sim/nothing", timeout=5).status_code == 404
    assert requests.post(f"{standin.url}/_sim/stats", timeout=5).status_code == 405
    assert requests.get(f"{standin.url}/_sim/reset", timeout=5).status_code == 405


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


# --- request framing and bodies -----------------------------------------------------------

BODY_PATHS = [("PUT", "/_sim/faults"), ("POST", "/notes"), ("PUT", "/hospitals/1")]


@pytest.mark.parametrize(("method", "path"), BODY_PATHS)
def test_deeply_nested_json_gets_400_and_the_connection_stays_usable(
    standin: RunningServer, method: str, path: str
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000

    with socket.create_connection(("127.0.0.1", standin.port), timeout=30) as sock:
        sock.sendall(raw_request(method, path, deep))
        head, body = read_answer(sock)
        after = raw_exchange(sock, raw_request("GET", "/hospitals/1"))

    assert status_of(head) == 400
    assert json.loads(body) == {"error": "request body is nested too deeply"}
    assert status_of(after) == 200


@pytest.mark.parametrize(("method", "path"), BODY_PATHS)
def test_a_flat_body_of_the_largest_size_is_parsed_promptly(standin: RunningServer, method: str, path: str) -> None:
    flat = b"[" + b"0," * ((MAX_BODY_BYTES - 3) // 2) + b"0]"
    assert len(flat) <= MAX_BODY_BYTES

    # Parsing takes well under a second; the bound is there to catch a parser that
    # turned quadratic, with room for a loaded machine.
    answer = call(standin, method, path, data=flat, timeout=30)

    assert answer.status_code == 400
    assert "must be a JSON object" in answer.json()["error"]


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: \xb2",  # a Unicode digit (latin-1): str.isdigit() says yes, int() says no
        b"Content-Length: \xb9\xb2",
        b"Content-Length: +2",
        b"Content-Length: 0x2",
        b"Content-Length: 2\r\nContent-Length: 5",  # two lengths: which one ends the body?
    ],
    ids=["superscript-two", "superscript-digits", "sign", "hex", "two-lengths"],
)
def test_a_content_length_other_than_ascii_digits_gets_400_and_close(standin: RunningServer, framing: bytes) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(raw_request("PUT", "/_sim/faults", b"{}", framing=framing))
        head, body = read_answer(sock)
        closed = sock.recv(1) == b""

    assert status_of(head) == 400
    assert json.loads(body) == {"error": "invalid Content-Length"}
    assert b"\r\nConnection: close" in head
    assert closed


@pytest.mark.parametrize("length", [str(MAX_BODY_BYTES + 1), "9" * 5000], ids=["one-byte-over", "5000-digits"])
def test_a_body_over_the_limit_gets_413_before_it_is_sent(standin: RunningServer, length: str) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(raw_request("POST", "/notes", framing=f"Content-Length: {length}".encode()))
        head, body = read_answer(sock)

    assert status_of(head) == 413
    assert json.loads(body) == {"error": f"request body larger than {MAX_BODY_BYTES} bytes"}


def chunked_put_faults(chunks: bytes) -> bytes:
    return raw_request("PUT", "/_sim/faults", chunks, framing=b"Transfer-Encoding: chunked")


@pytest.mark.parametrize(
    "chunks",
    [
        b"+2\r\n{}\r\n0\r\n\r\n",
        b" 2\r\n{}\r\n0\r\n\r\n",
        b"2 \r\n{}\r\n0\r\n\r\n",
        b"0_2\r\n{}\r\n0\r\n\r\n",
        b"0x2\r\n{}\r\n0\r\n\r\n",
        b"\xb2\r\n{}\r\n0\r\n\r\n",
        b"2\r\n{}\r\n-0\r\n\r\n",
    ],
    ids=["sign", "leading-space", "trailing-space", "underscore", "hex-prefix", "superscript", "negative-zero"],
)
def test_chunk_sizes_other_than_hex_digits_get_400(standin: RunningServer, chunks: bytes) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(chunked_put_faults(chunks))
        head, body = read_answer(sock)

    assert status_of(head) == 400
    assert json.loads(body) == {"error": "invalid chunk size"}
    assert b"\r\nConnection: close" in head


@pytest.mark.parametrize(
    "chunks",
    [
        b'a\r\n{"seed":3}\r\n0\r\n\r\n',
        b'5\r\n{"see\r\n5;part=two\r\nd":3}\r\n0\r\n\r\n',
        b'A ;ext\r\n{"seed":3}\r\n0\r\nX-Checksum: 1\r\n\r\n',
    ],
    ids=["one-chunk", "extension", "space-before-extension-and-trailer"],
)
def test_well_formed_chunked_bodies_are_read(standin: RunningServer, chunks: bytes) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(chunked_put_faults(chunks))
        head, body = read_answer(sock)
        # The connection is left at the next request's first byte.
        after = raw_exchange(sock, raw_request("GET", "/hospitals/1"))

    assert status_of(head) == 200
    assert json.loads(body)["seed"] == 3
    assert status_of(after) == 200


def test_a_chunk_not_followed_by_crlf_gets_400(standin: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(chunked_put_faults(b"2\r\n{}XX\r\n0\r\n\r\n"))
        head, body = read_answer(sock)

    assert status_of(head) == 400
    assert json.loads(body) == {"error": "chunk data not followed by CRLF"}
    assert sim(standin, "faults")["seed"] == SEED


@pytest.mark.parametrize(
    "partial",
    [b"10\r\nabc", b"3\r\nabc", b"3\r\nabc\r\n", b"3"],
    ids=["mid-chunk", "before-crlf", "before-next", "mid-size"],
)
def test_a_client_closing_mid_chunked_body_gets_no_answer(standin: RunningServer, partial: bytes) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(raw_request("POST", "/notes", partial, framing=b"Transfer-Encoding: chunked"))
        sock.shutdown(socket.SHUT_WR)
        # Like a short Content-Length body: nobody to answer, the server just closes.
        assert sock.recv(65536) == b""

    assert sim(standin, "stats")["total"] == 0


def test_a_chunked_body_over_the_limit_gets_413(standin: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as sock:
        sock.sendall(chunked_put_faults(f"{MAX_BODY_BYTES + 1:x}\r\n".encode()))
        head, _ = read_answer(sock)

    assert status_of(head) == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/hospitals/1"),
        ("PATCH", "/hospitals/1"),
        ("POST", "/hospitals"),
        ("POST", "/notes"),
        ("POST", "/patients/7/screen"),
    ],
)
def test_an_action_that_takes_a_body_refuses_none_with_400(standin: RunningServer, method: str, path: str) -> None:
    before = call(standin, "GET", "/hospitals").json()

    answer = call(standin, method, path)

    assert answer.status_code == 400
    assert answer.json() == {"error": "request body is required: a JSON object"}
    assert call(standin, "GET", "/hospitals").json() == before
    assert call(standin, "GET", "/notes").json() == []


# --- query parameters and paths ----------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "\u00b2", "-1", "1.5", "+7", "seven"])
def test_notes_patient_id_must_be_a_positive_integer(standin: RunningServer, value: str) -> None:
    answer = call(standin, "GET", "/notes", params={"patient_id": value})

    assert answer.status_code == 400
    assert answer.json() == {"error": "patient_id must be a positive integer"}


@pytest.mark.parametrize("value", ["0", "\u00b2", "+5", str(REQUEST_LOG_SIZE + 1), "9" * 5000])
def test_sim_requests_limit_must_be_ascii_digits_within_the_log_size(standin: RunningServer, value: str) -> None:
    answer = requests.get(f"{standin.url}/_sim/requests", params={"limit": value}, timeout=5)

    assert answer.status_code == 400
    assert answer.json() == {"error": f"limit must be an integer in 1..{REQUEST_LOG_SIZE}"}


@pytest.mark.parametrize(
    "path", ["/patients/5", "/patients/5.json", "/patients/5/", "/patients/%35", "/patients//5", "//patients/5.json/"]
)
def test_paths_resolve_like_rails(standin: RunningServer, path: str) -> None:
    answer = call(standin, "GET", path)

    assert answer.status_code == 200
    assert answer.json()["id"] == 5
    assert sim(standin, "stats")["by_route"] == {"GET /patients/{id}": 1}


@pytest.mark.parametrize("path", ["/patients/05", "/patients/0", "/patients/%D9%A5", "/patients/5.xml", "/patients/5x"])
def test_ids_are_positive_ascii_integers(standin: RunningServer, path: str) -> None:
    answer = call(standin, "GET", path)

    assert answer.status_code == 404
    assert sim(standin, "stats")["by_route"] == {"unmatched": 1}


def test_a_wrong_method_names_the_allowed_ones_and_counts_under_the_path(standin: RunningServer) -> None:
    answer = call(standin, "POST", "/hospitals/1.json")

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "DELETE, GET, HEAD, PATCH, PUT"
    assert sim(standin, "stats")["by_route"] == {"POST /hospitals/{id}": 1}


@pytest.mark.parametrize("extra", [b"\xa0", b"\x85", b"\x0b", b"\x1c"])
def test_a_byte_pythons_split_takes_for_a_space_in_the_request_line_gets_400(
    standin: RunningServer, extra: bytes
) -> None:
    """Such a byte would otherwise be dropped: /notes?patient_id=5<NBSP> would list patient 5."""
    with socket.create_connection(("127.0.0.1", standin.port), timeout=10) as client:
        client.sendall(b"GET /notes?patient_id=5" + extra + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 400")
    assert sim(standin, "stats")["total"] == 0
