"""The Lambdas' HOSP client (the note worker's) against a HOSP that answers at the byte level.

A one-connection-at-a-time raw HTTP server plays HOSP, so that a test sees the
request exactly as it arrived, and can answer as no well-behaved server would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from chalicelib import constants, hosp

HTML_500 = b"<html><body><h1>We're sorry, but something went wrong.</h1></body></html>\n\xff"


class RawHosp:
    """Answers each request with the next of `answers` (raw bytes), then closes; records what it got."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        for answer in self.answers:
            connection, _ = self.server.accept()
            with connection:
                connection.settimeout(5)
                self.requests.append(self.read_request(connection))
                connection.sendall(answer)

    @staticmethod
    def read_request(connection: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            body += connection.recv(65536)
        return head

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def raw_hosp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[RawHosp]:
    server = RawHosp(request.param)
    monkeypatch.setenv(constants.HOSP_BASE_URL, server.url)
    yield server
    server.close()


def answer(status: str, headers: list[str], body: bytes, declared: int | None = None) -> bytes:
    length = len(body) if declared is None else declared
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers, f"Content-Length: {length}", "Connection: close", "", ""])
    return head.encode() + body


@pytest.mark.parametrize("raw_hosp", [[answer("200 OK", ["Content-Type: application/json"], b"{}")]], indirect=True)
def test_hosp_is_asked_for_an_unencoded_answer_and_gets_only_the_callers_headers(raw_hosp: RawHosp) -> None:
    hosp.call("GET", raw_hosp.url + "/notes", {"Authorization": "Basic eDp5"})

    head = raw_hosp.requests[0].decode().lower()
    assert "accept-encoding: identity" in head
    assert "python-requests" not in head
    assert "gzip" not in head


@pytest.mark.parametrize(
    "raw_hosp", [[answer("500 Internal Server Error", ["Content-Type: text/html"], HTML_500)]], indirect=True
)
def test_a_non_json_error_page_is_read_as_its_bytes_and_is_no_json(raw_hosp: RawHosp) -> None:
    got = hosp.call("POST", raw_hosp.url + "/notes", {"Content-Type": "application/json"}, b"{}")

    assert got.status == 500
    assert got.body == HTML_500  # not valid UTF-8 either: bytes, not text
    assert ("Content-Type", "text/html") in got.headers
    assert hosp.json_of(got) is None


@pytest.mark.parametrize(
    "raw_hosp", [[answer("200 OK", ["Content-Type: application/json"], b'{"id":', declared=500)]], indirect=True
)
def test_an_answer_that_breaks_off_is_no_answer(raw_hosp: RawHosp) -> None:
    """The worker takes it for HOSP unreachable (a transient failure), never for a note's answer."""
    with pytest.raises(hosp.HospUnreachable, match="GET /notes"):
        hosp.call("GET", raw_hosp.url + "/notes", {}, timeout=5)
