"""The access log's audit_user: the caller the audit app names in X-Audit-User, logged on the audit route only.

One loopback server plays both HOSP and the Chalice app behind the real NGINX, and
answers each request with the X-Audit-User the test asks for (in X-Test-Caller),
so that what the proxy logs and passes on is seen for any value.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from chalicelib.audit import route
from local.nginx_proxy import NginxProxy
from tests.support import PROXY_TEST_TUNING, access_log_entry


class NamingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"error": "refused", "status": 403, "request_id": "00000000000000000000000000000001"}'
        self.send_response(403)
        if "X-Test-Caller" in self.headers:
            self.send_header(route.CALLER_HEADER, self.headers["X-Test-Caller"])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NamingHandler)
    server.daemon_threads = True
    address = f"127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_dir = tmp_path_factory.mktemp("nginx")
        with NginxProxy(address, run_dir, tuning=PROXY_TEST_TUNING, interceptor=address) as running:
            yield running
    finally:
        server.shutdown()
        server.server_close()


def logged(proxy: NginxProxy, path: str, caller: str | None) -> tuple[requests.Response, dict[str, Any]]:
    headers = {} if caller is None else {"X-Test-Caller": caller}
    answer = requests.get(proxy.url + path, headers=headers, timeout=10)
    return answer, access_log_entry(proxy, answer.headers["X-Request-Id"])


@pytest.mark.parametrize("path", ["/audit", "/audit/0b9a4b5e-7d3c-4c47-9b8e-2f7d0e6c1a11", "/%61udit"])
def test_the_caller_the_app_names_is_logged_and_not_passed_to_the_client(proxy: NginxProxy, path: str) -> None:
    answer, line = logged(proxy, path, "audit-viewer")

    assert answer.status_code == 403
    assert route.CALLER_HEADER not in answer.headers
    assert (line["route"], line["audit_user"]) == ("audit", "audit-viewer")


@pytest.mark.parametrize(
    ("named", "logged_as"),
    [
        (None, ""),
        ("jos%C3%A9%20o%27brien", "jos%C3%A9%20o%27brien"),
        ("a" * 1536, "a" * 1536),
        ("a" * 1537, "?"),
        ("two words", "?"),
        ('a"b\\c', "?"),
    ],
)
def test_only_the_apps_encoding_is_logged_as_it_is(proxy: NginxProxy, named: str | None, logged_as: str) -> None:
    _, line = logged(proxy, "/audit", named)

    assert line["audit_user"] == logged_as


def test_the_header_from_hosp_is_not_a_caller(proxy: NginxProxy) -> None:
    _, line = logged(proxy, "/hospitals", "audit-admin")

    assert (line["route"], line["audit_user"]) == ("hosp", "")
