"""X-ray screens through the real NGINX: HOSP's answer to the nurse as for any request, and to the note intake.

The real NGINX with the project's config in front of the real HOSP stand-in; in the
Chalice app's place an intake server of this file, which records each hand-off and can
answer late, fail or be down. Every screen is sent with http.client, which sends the
path exactly as written and a body chunked when given as an iterable.

What the nurse gets is compared with the same screen sent straight to HOSP: status,
body and HOSP's headers byte for byte (only Date may move on, and the proxy adds
X-Request-Id and Connection). What the intake gets is the patient, the nurse's user
name, the request id and HOSP's answer bytes, and nothing of her credentials.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import http.client
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from infra.nginx.render import HANDOFF_FAILED_LOG, HANDOFF_TIMEOUT, MAX_BODY_BYTES
from local.nginx_proxy import NginxProxy
from local.processes import closed_port
from tests.support import (
    DEMO_AUTH,
    PROXY_TEST_TUNING,
    RAW_CLIENT_TIMEOUT,
    Hosp,
    LoopbackHTTPServer,
    RawAnswer,
    access_log_entry,
    send_raw,
)

JSON = {"Content-Type": "application/json"}
AUTH_HEADER = DEMO_AUTH["Authorization"]
HANDOFF_WAIT = 15.0  # a bound for a loaded machine, not an expectation: a hand-off takes milliseconds
# How long a test waits to see that no hand-off comes: one is posted as the answer's
# last byte passes, milliseconds before the nurse has it.
NO_HANDOFF_WAIT = 2.0


def screen_body(size: int, seed: int = 0) -> bytes:
    """A valid screen body of exactly `size` bytes: one image (seeded), then JSON whitespace."""
    prefix, suffix = b'{"images":["', b'"]}'
    raw = (bytes((seed + i) % 256 for i in range(256)) * (size // 256 + 1))[
        : (size - len(prefix) - len(suffix)) // 4 * 3
    ]
    body = prefix + base64.b64encode(raw) + suffix
    return body + b" " * (size - len(body))


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def chunks(body: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


# --- the intake: the Chalice app's note intake, played -----------------------------------


@dataclasses.dataclass
class Handoff:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def answer(self) -> bytes:
        return base64.b64decode(self.body["answer"], validate=True)


class Intake(LoopbackHTTPServer):
    """Records each hand-off; answers 202, or the next of `statuses`, after `delay` seconds."""

    def __init__(self) -> None:
        self.handoffs: list[Handoff] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        intake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                intake.handoffs.append(Handoff(self.path, dict(self.headers.items()), json.loads(body)))
                time.sleep(intake.delay)
                status = intake.statuses.pop(0) if intake.statuses else 202
                answer = b'{"state":"queued"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def reset(self) -> None:
        self.handoffs.clear()
        self.statuses.clear()
        self.delay = 0.0

    def wait_for(self, count: int, timeout: float = HANDOFF_WAIT) -> list[Handoff]:
        deadline = time.monotonic() + timeout
        while len(self.handoffs) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.handoffs)


@pytest.fixture(scope="module")
def intake() -> Iterator[Intake]:
    with Intake() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, intake: Intake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with NginxProxy(
        hosp.address, tmp_path_factory.mktemp("nginx"), tuning=PROXY_TEST_TUNING, interceptor=intake.address
    ) as running:
        yield running


@dataclasses.dataclass(frozen=True)
class Rig:
    """The stand-in, the intake and the proxy in front of both."""

    hosp: Hosp
    intake: Intake
    proxy: NginxProxy


@pytest.fixture
def rig(hosp: Hosp, intake: Intake, proxy: NginxProxy) -> Rig:
    """The module's servers, the stand-in reset (seed data, no fault) and no hand-off recorded."""
    hosp.reset()
    intake.reset()
    return Rig(hosp, intake, proxy)


def failed_handoffs(proxy: NginxProxy, wait_for: int = 0) -> list[dict[str, Any]]:
    """The lines of the failed hand-offs' log; waits (a bound) until it has `wait_for` lines."""
    path = proxy.access_log.with_name(HANDOFF_FAILED_LOG)
    deadline = time.monotonic() + HANDOFF_WAIT
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= wait_for or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def same_as_hosps(through: RawAnswer, direct: RawAnswer) -> None:
    """The nurse's answer is HOSP's: status, body, and every header HOSP sent, each as sent
    (NGINX writes Server after its own Date, as for every answer it passes on)."""
    assert (through.status, through.body) == (direct.status, direct.body)
    added = {"x-request-id", "connection", "date"}
    assert sorted((k, v) for k, v in through.headers.items() if k.lower() not in added) == sorted(
        (k, v) for k, v in direct.headers.items() if k.lower() not in added
    )
    assert through.header("Date") is not None


# --- sizes, framing, byte for byte ---------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [1024, 4_000_000, 8_000_000, MAX_BODY_BYTES - 1], ids=["1KB", "4MB", "8MB", "16MiB-1"])
def test_a_screen_of_any_size_gets_hosps_answer_and_one_handoff(size: int, chunked: bool, rig: Rig) -> None:
    body = screen_body(size, seed=size % 251)
    direct = send_raw(rig.hosp.port, "POST", "/patients/3/screen", body, {**DEMO_AUTH, **JSON})
    assert direct.status == 200, direct.body

    through = send_raw(
        rig.proxy.port, "POST", "/patients/3/screen", chunks(body) if chunked else body, {**DEMO_AUTH, **JSON}
    )

    same_as_hosps(through, direct)
    assert through.header("Connection") == "close"  # no next request of hers waits on the hand-off
    (handoff,) = rig.intake.wait_for(1)
    assert handoff.path == "/note-intake"
    assert handoff.answer == direct.body
    assert handoff.body == {
        "patient_id": "3",
        "user": "test-account",
        "request_id": through.request_id,
        "answer": base64.b64encode(direct.body).decode(),
    }
    assert "authorization" not in {name.lower() for name in handoff.headers}
    assert handoff.headers["X-Request-Id"] == through.request_id
    assert handoff.headers["Accept"] == "application/json"  # the app answers a binary type to no other
    entry = access_log_entry(rig.proxy, through.request_id)
    assert (entry["route"], entry["status"], entry["note_handoff"], entry["body_patient_id"]) == (
        "screen",
        200,
        "sent",
        "",
    )
    assert len(rig.intake.wait_for(2, NO_HANDOFF_WAIT)) == 1  # and no second one


def test_the_query_and_the_nurses_other_headers_reach_hosp_as_for_any_request(rig: Rig) -> None:
    body = screen_body(2000)
    through = send_raw(rig.proxy.port, "POST", "/patients/3/screen?model=2&x=%41", body,
                   {**DEMO_AUTH, **JSON, "Cookie": "session=secret", "Accept-Encoding": "gzip"})  # fmt: skip
    assert through.status == 200
    (handoff,) = rig.intake.wait_for(1)
    assert "Cookie" not in handoff.headers
    (seen,) = [e for e in hosp_requests(rig.hosp) if e["x_request_id"] == through.request_id]
    assert seen["path"] == "/patients/3/screen?model=2&x=%41"  # the query, as sent


def hosp_requests(hosp: Hosp) -> list[dict[str, Any]]:
    answer = send_raw(hosp.port, "GET", "/_sim/requests?limit=1000")
    return list(json.loads(answer.body))


@pytest.mark.parametrize(
    "path",
    [
        "/patients/4/screen",
        "/patients/4/screen.json",
        "/patients/4/screen.JSON",
        "/patients/4/screen/",
        "//patients//4//screen",
        "/patients/%34/screen",
        "/patients/4/./screen",
        "/patients/x/../4/screen",
        "/patients/0004/screen",
        "/patients/4/screen.xml",
    ],
)
def test_every_spelling_hosp_screens_is_handed_off(path: str, rig: Rig) -> None:
    """The path goes to HOSP as the nurse wrote it, as any request's does. Every spelling of a
    screen is caught; whichever HOSP answers with a screening (a 2xx) is handed off, and the
    others get HOSP's refusal and no hand-off."""
    body = screen_body(1500)
    direct = send_raw(rig.hosp.port, "POST", path, body, {**DEMO_AUTH, **JSON})
    through = send_raw(rig.proxy.port, "POST", path, body, {**DEMO_AUTH, **JSON})

    same_as_hosps(through, direct)
    entry = access_log_entry(rig.proxy, through.request_id)
    assert entry["route"] == "screen"
    if direct.status == 200:
        (handoff,) = rig.intake.wait_for(1)
        assert handoff.body["patient_id"].lstrip("0") == "4"
        assert handoff.answer == direct.body
        assert entry["note_handoff"] == "sent"
    else:
        assert rig.intake.wait_for(1, NO_HANDOFF_WAIT) == []
        assert entry["note_handoff"] == "not-2xx"


# --- what makes no note ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "auth", "status", "why"),
    [
        pytest.param(b"{}", True, 422, "not-2xx", id="no images: HOSP's 422"),
        pytest.param(b"not json", True, 400, "not-2xx", id="a body HOSP cannot read"),
        pytest.param(None, False, 401, "not-2xx", id="no credentials: HOSP's 401, never retried"),
    ],
)
def test_hosps_refusals_pass_through_and_make_no_handoff(
    body: bytes | None, auth: bool, status: int, why: str, rig: Rig
) -> None:
    through = send_raw(rig.proxy.port, "POST", "/patients/1/screen", body if body is not None else screen_body(1024),
                   {**(DEMO_AUTH if auth else {}), **JSON})  # fmt: skip
    assert through.status == status, through.body
    assert access_log_entry(rig.proxy, through.request_id)["note_handoff"] == why
    assert rig.intake.wait_for(1, NO_HANDOFF_WAIT) == []


def test_a_failed_first_attempt_is_retried_and_only_the_answer_is_handed_off(rig: Rig) -> None:
    rig.hosp.script("503", "reset", "ok")
    through = send_raw(rig.proxy.port, "POST", "/patients/2/screen", screen_body(3000), {**DEMO_AUTH, **JSON})
    assert through.status == 200
    entry = access_log_entry(rig.proxy, through.request_id)
    assert (entry["upstream_status"], entry["retry_budget"], entry["note_handoff"]) == (
        "503 : 502, 200",
        "PASSED",
        "sent",
    )
    (handoff,) = rig.intake.wait_for(1)
    assert json.loads(handoff.answer)["patient_id"] == 2


def test_a_screen_failing_every_try_gets_hosps_last_answer_and_no_handoff(rig: Rig) -> None:
    rig.hosp.script("503", "503", "500")
    through = send_raw(rig.proxy.port, "POST", "/patients/2/screen", screen_body(3000), {**DEMO_AUTH, **JSON})
    assert through.status == 500
    entry = access_log_entry(rig.proxy, through.request_id)
    assert (entry["upstream_status"], entry["note_handoff"]) == ("503 : 503, 500", "not-2xx")
    assert rig.intake.wait_for(1, NO_HANDOFF_WAIT) == []


def test_the_internal_listener_never_hands_off(rig: Rig) -> None:
    through = send_raw(rig.proxy.internal_port, "POST", "/patients/2/screen", screen_body(1024), {**DEMO_AUTH, **JSON})
    assert through.status == 200
    entry = access_log_entry(rig.proxy, through.request_id)
    assert (entry["route"], entry["note_handoff"]) == ("hosp", "")
    assert rig.intake.wait_for(1, NO_HANDOFF_WAIT) == []


def test_a_client_cannot_reach_the_intake_or_the_handoff_location(rig: Rig) -> None:
    forged = json.dumps({"patient_id": "1", "user": "x", "request_id": "0" * 32, "answer": "e30="}).encode()
    logged_before = failed_handoffs(rig.proxy)
    to_intake = send_raw(rig.proxy.port, "POST", "/note-intake", forged, {**DEMO_AUTH, **JSON})
    to_location = send_raw(rig.proxy.port, "POST", "/_proxy/note-handoff", forged, {**DEMO_AUTH, **JSON})
    to_failed = send_raw(rig.proxy.port, "POST", "/_proxy/note-handoff-failed", forged, {**DEMO_AUTH, **JSON})
    assert to_intake.status == 404  # HOSP's: the path went to HOSP like any other
    assert access_log_entry(rig.proxy, to_intake.request_id)["route"] == "hosp"
    assert to_location.status == 404
    assert access_log_entry(rig.proxy, to_location.request_id)["upstream_addr"] == ""  # the proxy's own 404
    assert to_failed.status == 404
    assert access_log_entry(rig.proxy, to_failed.request_id)["upstream_addr"] == ""
    assert rig.intake.wait_for(1, NO_HANDOFF_WAIT) == []
    assert failed_handoffs(rig.proxy) == logged_before  # no client can write a job into the log requeue reads


# --- hand-off failures: the nurse is answered, the job is kept ------------------------------


@pytest.mark.parametrize("failure", ["5xx", "slow", "down"])
def test_a_failed_handoff_is_written_whole_and_the_nurse_is_answered_first(
    failure: str, tmp_path: Path, rig: Rig
) -> None:
    if failure == "5xx":
        rig.intake.statuses = [503]
    elif failure == "slow":
        rig.intake.delay = HANDOFF_TIMEOUT + 1.5
    before = len(failed_handoffs(rig.proxy))
    body = screen_body(2500)
    direct = send_raw(rig.hosp.port, "POST", "/patients/5/screen", body, {**DEMO_AUTH, **JSON})

    if failure == "down":
        with NginxProxy(
            rig.hosp.address, tmp_path / "nginx", tuning=PROXY_TEST_TUNING, interceptor=f"127.0.0.1:{closed_port()}"
        ) as down:
            started = time.monotonic()
            through = send_raw(down.port, "POST", "/patients/5/screen", body, {**DEMO_AUTH, **JSON})
            answered = time.monotonic() - started
            lines = failed_handoffs(down, wait_for=1)
    else:
        started = time.monotonic()
        through = send_raw(rig.proxy.port, "POST", "/patients/5/screen", body, {**DEMO_AUTH, **JSON})
        answered = time.monotonic() - started
        lines = failed_handoffs(rig.proxy, wait_for=before + 1)[before:]

    same_as_hosps(through, direct)
    assert answered < 1.0  # she never waits on the hand-off
    if failure != "down":  # and her line says so: request_time ends with her answer's last byte
        assert access_log_entry(rig.proxy, through.request_id)["request_time"] < 1.0
    (line,) = lines
    assert line["event"] == "note_handoff_failed"
    assert line["request_id"] == through.request_id
    assert line["status"] == {"5xx": "503", "slow": "504", "down": "502"}[failure]
    assert json.loads(line["handoff"]) == {
        "patient_id": "5",
        "user": "test-account",
        "request_id": through.request_id,
        "answer": base64.b64encode(direct.body).decode(),
    }


def test_identical_resends_are_each_handed_off_with_the_same_answer(rig: Rig) -> None:
    """The intake's marker comes from the patient and the answer, so these make one note."""
    body = screen_body(4000, seed=9)
    first = send_raw(rig.proxy.port, "POST", "/patients/6/screen", body, {**DEMO_AUTH, **JSON})
    second = send_raw(rig.proxy.port, "POST", "/patients/6/screen", body, {**DEMO_AUTH, **JSON})
    other = send_raw(rig.proxy.port, "POST", "/patients/6/screen", screen_body(4000, seed=10), {**DEMO_AUTH, **JSON})
    # Each hand-off leaves as its screen's answer ends, so two can be under way at once:
    # the intake may get them in either order.
    by_request = {h.body["request_id"]: h for h in rig.intake.wait_for(3)}
    assert sorted(by_request) == sorted([first.request_id, second.request_id, other.request_id])
    assert by_request[first.request_id].answer == by_request[second.request_id].answer
    assert by_request[second.request_id].answer != by_request[other.request_id].answer


# --- answers that make no note, from a HOSP that answers as told --------------------------


class OddHosp(LoopbackHTTPServer):
    """HOSP's place, answering every request with the next of `answers`: (headers, body, bytes
    actually sent: fewer than the body's to break the answer off)."""

    def __init__(self) -> None:
        self.answers: list[tuple[dict[str, str], bytes, int | None]] = []
        odd = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers, body, sent = odd.answers.pop(0)
                self.send_response(200)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body[:sent] if sent is not None else body)
                if sent is not None:
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)


@pytest.fixture(scope="module")
def odd_proxy(intake: Intake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OddHosp, NginxProxy]]:
    run_dir = tmp_path_factory.mktemp("odd")
    with (
        OddHosp() as odd,
        NginxProxy(odd.address, run_dir, tuning=PROXY_TEST_TUNING, interceptor=intake.address) as proxy,
    ):
        yield odd, proxy


RESULT = json.dumps({"results": [{"finding": "none"}]}).encode()


@dataclasses.dataclass(frozen=True)
class OddAnswer:
    headers: dict[str, str]
    body: bytes
    sent: int | None  # bytes of the body sent before HOSP closes; None: all of them
    why: str  # the access log's note_handoff


ODD_ANSWERS = [
    pytest.param(OddAnswer({"Content-Type": "text/plain"}, b"screened", None, "not-json"), id="a 2xx that is not JSON"),
    pytest.param(
        OddAnswer({"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip_of(RESULT), None, "encoded"),
        id="an encoded answer",
    ),
    pytest.param(
        OddAnswer({"Content-Type": "application/json"}, b'{"r":"' + b"x" * (1 << 20) + b'"}', None, "too-large"),
        id="over 1 MiB",
    ),
    pytest.param(OddAnswer({"Content-Type": "application/json"}, RESULT, 10, "incomplete"), id="broken off"),
]


@pytest.mark.parametrize("odd_answer", ODD_ANSWERS)
def test_an_answer_that_cannot_be_noted_reaches_the_nurse_and_is_not_handed_off(
    odd_answer: OddAnswer, intake: Intake, odd_proxy: tuple[OddHosp, NginxProxy]
) -> None:
    headers, body, sent, why = odd_answer.headers, odd_answer.body, odd_answer.sent, odd_answer.why
    odd, proxy = odd_proxy
    intake.reset()
    odd.answers = [(headers, body, sent)]
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=RAW_CLIENT_TIMEOUT)
    connection.request("POST", "/patients/1/screen", screen_body(1024), {**DEMO_AUTH, **JSON})
    response = connection.getresponse()
    request_id = response.getheader("X-Request-Id")
    try:
        received = response.read()
    except http.client.IncompleteRead as cut:
        received = cut.partial
    connection.close()

    assert response.status == 200
    assert received == (body[:sent] if sent is not None else body)  # as HOSP sent it
    assert request_id
    assert access_log_entry(proxy, request_id)["note_handoff"] == why
    assert intake.wait_for(1, NO_HANDOFF_WAIT) == []


def test_the_nurses_user_name_is_handed_off_escaped_as_the_log_writes_it(
    intake: Intake, odd_proxy: tuple[OddHosp, NginxProxy]
) -> None:
    """Any bytes in a Basic user name reach the intake as the access log's client text: valid
    UTF-8 as it is, a backslash doubled, a byte that is not UTF-8 as \\xHH; never the password."""
    odd, proxy = odd_proxy
    intake.reset()
    odd.answers = [({"Content-Type": "application/json"}, RESULT, None)]
    auth = "Basic " + base64.b64encode("nurse-é\\x".encode() + b"\xff:secret-pw").decode()
    answer = send_raw(proxy.port, "POST", "/patients/1/screen", screen_body(1024), {"Authorization": auth, **JSON})

    assert answer.status == 200
    (handoff,) = intake.wait_for(1)
    assert handoff.body["user"] == "nurse-é\\\\x\\xff"
    assert access_log_entry(proxy, answer.request_id)["user"] == handoff.body["user"]
    assert "secret-pw" not in json.dumps(handoff.body)
    assert handoff.answer == RESULT
