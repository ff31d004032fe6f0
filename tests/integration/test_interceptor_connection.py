"""A screen sent into a kept-alive connection the interceptor has just closed is sent again, not lost.

A raw interceptor answers the first request of each connection, and closes the
connection unanswered when a second one arrives on it: a server whose idle
timeout ends just as NGINX reuses the connection. The screen then fails on a
reused connection before it is answered, and must reach the interceptor again
over a new one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, Hosp

ANSWER = b'{"screening_id":"scr_1"}'


class ClosingInterceptor:
    """Answers the first request of a connection, drops the next; counts both."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.answered = 0
        self.dropped = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection:
            if not self.read_request(connection):
                return
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER)
            self.answered += 1
            if self.read_request(connection):
                self.dropped += 1  # closed unanswered

    @staticmethod
    def read_request(connection: socket.socket) -> bool:
        """Read up to the end of a request head; False if the peer closed first."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            data += chunk
        return True

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def interceptor() -> Iterator[ClosingInterceptor]:
    server = ClosingInterceptor()
    yield server
    server.close()


def test_a_screen_into_a_connection_the_interceptor_closed_is_sent_again(
    interceptor: ClosingInterceptor, fresh_hosp: Hosp, tmp_path: Path
) -> None:
    with NginxProxy(fresh_hosp.address, tmp_path / "nginx", interceptor=f"127.0.0.1:{interceptor.port}") as proxy:
        answers = [
            requests.post(proxy.url + "/patients/1/screen", data=b"{}", headers=DEMO_AUTH, timeout=10) for _ in range(3)
        ]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.content for a in answers] == [ANSWER] * 3
    assert interceptor.answered == 3
    assert interceptor.dropped >= 1  # the case under test did happen
