"""Screens through the whole local stack: NGINX, HOSP, the hand-off, the note intake, the queue, the worker.

One stack for the module, started in this process as `make run` starts it.
Every screen is sent with http.client, which sends the path exactly as written
(requests would resolve "..", "." and "%31" before NGINX sees them). What HOSP
answers is compared byte for byte with the same call made straight to the
stand-in, whose screening is a pure function of the patient and the images.

A note is one per distinct result (its marker comes from the patient and HOSP's
answer), so each test screens images of its own (`images()`): an image screened
before would find its note already written.

"No note" is checked after a later screen of the same patient has its note:
the note queue is FIFO per patient, so a job queued earlier would have been
handled first. HOSP's request log then shows what carried the request id.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.nginx.render import HANDOFF_FAILED_LOG, MAX_BODY_BYTES
from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.nginx_proxy import NginxProxy
from local.processes import closed_port
from local.stack import Stack
from tests.support import DEMO_AUTH, PROXY_TEST_TUNING, RawAnswer, access_log_lines, send_raw, whole_stack

SCREEN_PATH = "/patients/1/screen"
_IMAGES = itertools.count()


def images() -> bytes:
    """A screen body whose image no other screen of this module has: its own result, its own note."""
    image = base64.b64encode(f"chest x-ray, lateral view, film {next(_IMAGES)}".encode()).decode()
    return json.dumps({"images": [image]}).encode()


JSON = {"Content-Type": "application/json"}
NOTE_TIMEOUT = 15.0  # a note is written within a second or two; a bound, not an expectation
LOG_TIMEOUT = 5.0
SCREEN_ROUTE = "POST /patients/{id}/screen"  # how the stand-in names the screen route


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with whole_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


# --- helpers ----------------------------------------------------------------------------


Answer = RawAnswer
send = send_raw


def screen(
    port: int, path: str = SCREEN_PATH, body: bytes | Iterable[bytes] | None = None, auth: bool = True
) -> Answer:
    return send(port, "POST", path, images() if body is None else body, {**(DEMO_AUTH if auth else {}), **JSON})


def body_of_size(size: int, seed: int = 0) -> bytes:
    """A valid screen body of exactly `size` bytes: one large image (its bytes shifted by `seed`), then JSON
    whitespace."""
    prefix, suffix = b'{"images":["', b'"]}'
    pattern = bytes((seed + i) % 256 for i in range(256))
    raw = (pattern * (size // 256 + 1))[: (size - len(prefix) - len(suffix)) // 4 * 3]
    body = prefix + base64.b64encode(raw) + suffix
    return body + b" " * (size - len(body))


def log_lines(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    return [entry for entry in access_log_lines(stack.proxy) if entry["request_id"] == request_id]


def logged(stack: Stack, request_id: str, **fields: object) -> dict[str, Any]:
    """The one access-log line of `request_id` with these fields. NGINX writes it just
    after the answer's last byte, so the client may read first: wait briefly."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        lines = log_lines(stack, request_id)
        found = [entry for entry in lines if all(entry[k] == v for k, v in fields.items())]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"wanted one line with {fields}; the lines of {request_id}: {lines}"
            return found[0]
        time.sleep(0.02)


def notes_of(stack: Stack, patient_id: int, request_id: str) -> list[dict[str, Any]]:
    """The bodies of the patient's notes that name the request id, read straight from HOSP."""
    return [body for body in note_bodies(stack, patient_id) if body.get("request_id") == request_id]


def note_bodies(stack: Stack, patient_id: int) -> list[dict[str, Any]]:
    """The bodies of the patient's notes that are JSON objects, read straight from HOSP."""
    answer = send(stack.ports.hosp, "GET", f"/notes?patient_id={patient_id}", headers=DEMO_AUTH)
    assert answer.status == 200, answer.body
    bodies = []
    for note in answer.json():
        try:
            body = json.loads(note["body"])
        except ValueError:
            continue
        if isinstance(body, dict):
            bodies.append(body)
    return bodies


def wait_for_note(stack: Stack, patient_id: int, request_id: str) -> dict[str, Any]:
    """The note of the request's job (its body), once the worker has written it: exactly one."""
    deadline = time.monotonic() + NOTE_TIMEOUT
    while not (found := notes_of(stack, patient_id, request_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no note of patient {patient_id} with request id {request_id} in HOSP")
        time.sleep(0.1)
    assert len(found) == 1, found
    return found[0]


def assert_handed_off(stack: Stack, request_id: str) -> None:
    """The screen's hand-off was taken by the note intake: sent, and not in the failed hand-offs' log."""
    assert logged(stack, request_id, listener="public")["note_handoff"] == "sent"
    failed = stack.proxy.access_log.with_name(HANDOFF_FAILED_LOG)
    lines = failed.read_text().splitlines() if failed.exists() else []
    assert [line for line in lines if request_id in line] == []


def hosp_requests(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    """The API requests HOSP received carrying the request id."""
    received = send(stack.ports.hosp, "GET", f"/_sim/requests?limit={REQUEST_LOG_SIZE}").json()
    return [entry for entry in received if entry["x_request_id"] == request_id]


def assert_no_note(stack: Stack, patient_id: int, request_id: str) -> None:
    """No note was made for the request, and the worker never read or wrote on its behalf."""
    later = screen(stack.ports.proxy, f"/patients/{patient_id}/screen")
    assert later.status == 200
    wait_for_note(stack, patient_id, later.request_id)

    assert notes_of(stack, patient_id, request_id) == []
    # The worker never read or wrote a note for it: HOSP got the screen alone under its id.
    assert not [entry for entry in hosp_requests(stack, request_id) if entry["path"].startswith("/notes")]


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "/patients/1/screen",
        "/patients/1/screen.json",
        "/patients/1/screen/",
        "//patients//1//screen",
        "/patients/%31/screen",
        "/patients/1/./screen",
        "/patients/x/../1/screen",
    ],
)
def test_every_spelling_hosp_screens_gets_hosps_answer_and_a_note(stack: Stack, spelling: str) -> None:
    body = images()
    direct = screen(stack.ports.hosp, spelling, body)

    answer = screen(stack.ports.proxy, spelling, body)

    assert (answer.status, answer.body) == (direct.status, direct.body)
    assert answer.header("Content-Type") == direct.header("Content-Type")
    assert answer.header("Server") == direct.header("Server")  # HOSP's, as for any request
    entry = logged(stack, answer.request_id, listener="public")
    assert entry["route"] == "screen"
    assert entry["path"] == spelling  # NGINX got the spelling itself, not a client's normalized one
    if direct.status == 200:
        note = wait_for_note(stack, 1, answer.request_id)
        assert note["results"] == direct.json()
        assert note["marker"].startswith("xray-")
        assert note["requested_by"] == "test-account"
        assert_handed_off(stack, answer.request_id)
    else:  # a spelling HOSP does not screen: its refusal, no note
        assert entry["note_handoff"] == "not-2xx"
        assert_no_note(stack, 1, answer.request_id)


def test_a_screen_reaches_hosp_once_and_its_note_carries_the_nurses_request_id(stack: Stack) -> None:
    body = images()
    answer = screen(stack.ports.proxy, "/patients/%31/screen.json", body)

    assert answer.status == 200
    request_id = answer.request_id
    note = wait_for_note(stack, 1, request_id)
    assert note["request_id"] == request_id
    # One line for the nurse's screen; the worker's read and write under her id, on her behalf.
    lines = log_lines(stack, request_id)
    assert [(e["listener"], e["route"], e["method"]) for e in lines if e["listener"] == "public"] == [
        ("public", "screen", "POST")
    ]
    worker = [e for e in lines if e["listener"] == "internal"]
    assert {(e["method"], e["normalized_path"]) for e in worker} >= {("GET", "/notes"), ("POST", "/notes")}
    assert {e["on_behalf_of"] for e in worker} == {"test-account"}
    screens = [entry for entry in hosp_requests(stack, request_id) if entry["route"] == SCREEN_ROUTE]
    assert [(entry["method"], entry["path"]) for entry in screens] == [("POST", "/patients/%31/screen.json")]


def test_a_screen_sent_to_the_internal_listener_goes_to_hosp_and_makes_no_note(stack: Stack) -> None:
    forwarded = "0123456789abcdef0123456789abcdef"  # as a Lambda forwards the nurse's id
    headers = {**DEMO_AUTH, **JSON, "X-Request-Id": forwarded}

    answer = send(stack.ports.internal, "POST", SCREEN_PATH, images(), headers)

    assert answer.status == 200
    assert answer.request_id == forwarded
    entry = logged(stack, forwarded, listener="internal")
    assert (entry["route"], entry["note_handoff"]) == ("hosp", "")
    assert [e["route"] for e in hosp_requests(stack, forwarded)] == [SCREEN_ROUTE]
    assert_no_note(stack, 1, forwarded)


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_other_methods_on_the_screen_path_go_to_hosp(stack: Stack, method: str) -> None:
    body = images() if method == "PUT" else None
    direct = send(stack.ports.hosp, method, SCREEN_PATH, body, {**DEMO_AUTH, **JSON})

    answer = send(stack.ports.proxy, method, SCREEN_PATH, body, {**DEMO_AUTH, **JSON})

    assert direct.status == 405
    assert (answer.status, answer.body) == (direct.status, direct.body)
    assert answer.header("Allow") == direct.header("Allow")
    entry = logged(stack, answer.request_id, listener="public")
    assert entry["route"] == "hosp"
    assert [e["method"] for e in hosp_requests(stack, answer.request_id)] == [method]


@pytest.mark.parametrize(
    "path", ["/patients/abc/screen", "/patients/1a/screen", "/patients/%D9%A1/screen", "/patients/abc/screen.json"]
)
def test_a_screen_of_an_id_that_is_not_digits_is_answered_by_the_proxy(stack: Stack, path: str) -> None:
    before = int(send(stack.ports.hosp, "GET", "/_sim/stats").json()["total"])

    answer = screen(stack.ports.proxy, path)

    assert answer.status == 404
    assert answer.header("Content-Type") == "application/json"
    request_id = answer.request_id
    assert answer.json() == {
        "error": "a screen needs a patient id of ASCII digits",
        "status": 404,
        "request_id": request_id,
    }
    entry = logged(stack, request_id, listener="public")
    assert (entry["route"], entry["upstream_addr"]) == ("screen-not-a-patient", "")
    # The note worker may be busy with earlier tests' notes: look at what HOSP got since.
    received = send(stack.ports.hosp, "GET", f"/_sim/requests?limit={REQUEST_LOG_SIZE}").json()
    arrived = [e for e in received if e["index"] >= before]
    assert not [e for e in arrived if e["x_request_id"] == request_id or "screen" in e["path"]]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [4_000_001, 9_000_000, MAX_BODY_BYTES - 1], ids=["4MB+1", "9MB", "16MiB-1"])
def test_a_screen_of_any_size_gets_its_note(stack: Stack, size: int, chunked: bool) -> None:
    body = body_of_size(size, seed=next(_IMAGES))
    assert len(body) == size
    direct = screen(stack.ports.hosp, "/patients/2/screen", body)
    assert direct.status == 200

    sent: bytes | Iterator[bytes] = (body[i : i + (1 << 20)] for i in range(0, size, 1 << 20)) if chunked else body
    answer = screen(stack.ports.proxy, "/patients/2/screen", sent)

    assert (answer.status, answer.body) == (200, direct.body)
    assert wait_for_note(stack, 2, answer.request_id)["results"] == direct.json()
    assert_handed_off(stack, answer.request_id)


def test_an_identical_screen_sent_again_makes_no_second_note(stack: Stack) -> None:
    body = images()
    first = screen(stack.ports.proxy, "/patients/3/screen", body)
    note = wait_for_note(stack, 3, first.request_id)

    again = screen(stack.ports.proxy, "/patients/3/screen", body)
    other = screen(stack.ports.proxy, "/patients/3/screen")  # a new image: a note of its own
    wait_for_note(stack, 3, other.request_id)  # FIFO per patient: the re-send's job came first

    assert (again.status, again.body) == (200, first.body)
    with_marker = [b for b in note_bodies(stack, 3) if b.get("marker") == note["marker"]]
    assert len(with_marker) == 1
    assert notes_of(stack, 3, again.request_id) == []


def test_a_failed_handoff_is_recovered_by_requeue(stack: Stack, tmp_path: Path) -> None:
    """A front door whose note intake is down: the nurse gets her answer, the hand-off is logged
    whole, and requeue (as an operator runs it, with the app's settings) puts its note in HOSP."""
    body = images()
    down = f"127.0.0.1:{closed_port()}"
    with NginxProxy(
        f"127.0.0.1:{stack.ports.hosp}", tmp_path / "nginx", tuning=PROXY_TEST_TUNING, interceptor=down
    ) as proxy:
        answer = screen(proxy.port, "/patients/4/screen", body)
        failed = proxy.access_log.with_name(HANDOFF_FAILED_LOG)
        deadline = time.monotonic() + LOG_TIMEOUT
        while not (failed.exists() and failed.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert answer.status == 200
    (line,) = failed.read_text().splitlines()
    assert json.loads(line)["request_id"] == answer.request_id

    requeued = subprocess.run(
        [sys.executable, "-m", "chalicelib.requeue"], input=line + "\n", capture_output=True, text=True,
        env=stack.lambda_environment(), timeout=60, check=False,
    )  # fmt: skip

    assert requeued.returncode == 0, requeued.stderr
    assert wait_for_note(stack, 4, answer.request_id)["results"] == json.loads(answer.body)


@pytest.mark.parametrize(
    "path", [SCREEN_PATH, "/patients/abc/screen", "/patients/1", "/patients/9999/screen", "/no/such/path"]
)
def test_the_nurse_gets_one_request_id(stack: Stack, path: str) -> None:
    answer = screen(stack.ports.proxy, path)

    assert len(answer.headers.get_all("X-Request-Id") or []) == 1
    assert logged(stack, answer.request_id, listener="public")


def test_a_request_id_sent_by_the_client_is_replaced_on_the_public_listener(stack: Stack) -> None:
    forged = "feedfacefeedfacefeedfacefeedface"
    headers = {**DEMO_AUTH, **JSON, "X-Request-Id": forged}

    answer = send(stack.ports.proxy, "POST", SCREEN_PATH, images(), headers)

    assert answer.status == 200
    assert answer.request_id != forged
    assert wait_for_note(stack, 1, answer.request_id)
    assert hosp_requests(stack, forged) == []
    assert notes_of(stack, 1, forged) == []


@pytest.mark.parametrize(
    ("path", "body", "auth", "status"),
    [
        pytest.param(SCREEN_PATH, None, False, 401, id="no credentials"),
        pytest.param("/patients/9999/screen", None, True, 404, id="unknown patient"),
        pytest.param(SCREEN_PATH, b"{}", True, 422, id="no images"),
        pytest.param(SCREEN_PATH, b'{"images": []}', True, 422, id="an empty list of images"),
    ],
)
def test_hosps_refusals_pass_through_and_make_no_note(
    stack: Stack, path: str, body: bytes | None, auth: bool, status: int
) -> None:
    body = images() if body is None else body
    direct = screen(stack.ports.hosp, path, body, auth=auth)
    assert direct.status == status

    answer = screen(stack.ports.proxy, path, body, auth=auth)

    assert (answer.status, answer.body) == (direct.status, direct.body)
    for name in ("Content-Type", "WWW-Authenticate"):
        assert answer.header(name) == direct.header(name)
    request_id = answer.request_id
    entry = logged(stack, request_id, listener="public")
    assert (entry["route"], entry["note_handoff"]) == ("screen", "not-2xx")
    assert [e["route"] for e in hosp_requests(stack, request_id)] == [SCREEN_ROUTE]
    # Patient 9999 has no later screen to wait for: patient 1's stands in (another FIFO group).
    assert_no_note(stack, 1, request_id)


def test_a_content_length_with_leading_zeros_still_gets_a_note(stack: Stack) -> None:
    body = images()
    headers = {**DEMO_AUTH, **JSON, "Content-Length": f"00{len(body)}"}

    answer = send(stack.ports.proxy, "POST", SCREEN_PATH, body, headers)

    assert answer.status == 200
    assert logged(stack, answer.request_id, listener="public")["route"] == "screen"
    wait_for_note(stack, 1, answer.request_id)
