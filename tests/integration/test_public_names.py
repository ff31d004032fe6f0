"""Host names: with public names the public listener answers only them and HOSP gets the name; no Host never leaks.

The real NGINX rendered with public names (render.py --public-name;
ProxySettings.public_names) and an origin secret, as production renders it,
in front of the real HOSP stand-in (which builds its answers' "url" fields
from Host) and, to see the exact headers HOSP receives, of a recording server
in HOSP's place; and the proxy as `make run` renders it, without public names.
All over loopback; the odd requests are written byte for byte on a socket.

The stand-in writes every link as "http://" + Host: it reads no
X-Forwarded-Proto (local/hosp_standin/server.py), so its links show the host
HOSP was given, never the scheme. HOSP itself (Rails) takes the scheme and
port from X-Forwarded-Proto and X-Forwarded-Port: the recording server shows
that a production render sends https and 443 (tests/integration/
test_forwarded_headers.py covers a client's own forwarding headers).
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.nginx import render
from local.nginx_proxy import NginxProxy, nginx_binary, unprivileged_user
from tests.support import DEMO_AUTH, Hosp, RecordingServer, access_log_entry, proxy_in_front

NEW_NAME = "hosp.example"  # the new domain: first
OLD_NAME = "old-hosp.example"
PUBLIC_NAMES = (NEW_NAME, OLD_NAME)
SECRET = secrets.token_urlsafe(32)
# The proxy as production renders it: public names and an origin secret.
AS_PRODUCTION = {"origin_secrets": (SECRET,), "public_names": PUBLIC_NAMES}
AUTHORIZATION = DEMO_AUTH["Authorization"].encode()
MISDIRECTED = "misdirected request: the host it names is not one this proxy serves"
NO_HOST = "the request has no valid Host header"


@dataclasses.dataclass
class Answer:
    status: int
    head: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        match = re.search(rf"^{name}: (.*?)\r?$", self.head, re.MULTILINE | re.IGNORECASE)
        assert match, f"no {name} in {self.head!r}"
        return match.group(1)


def exchange(port: int, data: bytes) -> Answer:
    """Send bytes as they are; read until the proxy closes (every request here closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    return Answer(int(text.split(" ", 2)[1]), text, body)


def request(
    port: int,
    host: bytes | None,
    target: bytes = b"/hospitals",
    *,
    version: bytes = b"HTTP/1.1",
    method: bytes = b"GET",
    secret: str | None = SECRET,
    body: bytes = b"",
) -> Answer:
    lines = [method + b" " + target + b" " + version]
    # The secret first: NGINX reads no header after a Host it refuses as invalid.
    if secret is not None:
        lines.append(b"X-Origin-Verify: " + secret.encode())
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [b"Connection: close", b"Authorization: " + AUTHORIZATION]
    if body or method in (b"POST", b"PUT", b"PATCH"):
        lines.append(b"Content-Length: %d" % len(body))
    return exchange(port, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def assert_refused(proxy: NginxProxy, answer: Answer, status: int, message: str, listener: str = "public") -> None:
    """The proxy's JSON error, logged as route host-refused, that reached no upstream."""
    assert answer.status == status, answer
    assert answer.header("Content-Type") == "application/json"
    request_id = answer.header("X-Request-Id")
    assert answer.json() == {"error": message, "status": status, "request_id": request_id}
    entry = access_log_entry(proxy, request_id)
    assert (entry["route"], entry["status"], entry["listener"]) == ("host-refused", status, listener)
    assert (entry["upstream_addr"], entry["upstream_status"]) == ("", "")


def hosp_link_hosts(answer: Answer, scheme: str = "https") -> set[str]:
    """The host (and port) of every "url" in the stand-in's listing, each of `scheme`. The
    stand-in builds its links as Rails does, from the proxy's forwarding headers: https with
    public names (port 443 left out), the listener's http without."""
    assert answer.status == 200, answer
    links = [item["url"] for item in answer.json()]
    assert all(link.startswith(f"{scheme}://") for link in links), links
    return {re.sub(r"^[a-z]+://([^/]*)/.*$", r"\1", link) for link in links}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def recorder(hosp_recorder: RecordingServer) -> RecordingServer:
    hosp_recorder.reset()
    return hosp_recorder


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """As production renders it: public names and an origin secret, in front of the HOSP stand-in."""
    with proxy_in_front(hosp.address, app, tmp_path_factory.mktemp("nginx-names"), **AS_PRODUCTION) as running:
        yield running


@pytest.fixture(scope="module")
def recording_proxy(
    hosp_recorder: RecordingServer, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxProxy]:
    """The same, with a recording server in HOSP's place: the Host HOSP receives, as it arrives."""
    with proxy_in_front(
        hosp_recorder.address, app, tmp_path_factory.mktemp("nginx-names-recording"), **AS_PRODUCTION
    ) as running:
        yield running


@pytest.fixture(scope="module")
def open_proxy(hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """As `make run` renders it: no public names, no origin secret."""
    with proxy_in_front(hosp.address, app, tmp_path_factory.mktemp("nginx-open")) as running:
        yield running


@pytest.fixture(scope="module")
def open_recording_proxy(
    hosp_recorder: RecordingServer, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxProxy]:
    with proxy_in_front(hosp_recorder.address, app, tmp_path_factory.mktemp("nginx-open-recording")) as running:
        yield running


# --- the public names are answered, and HOSP gets the name ----------------------------------------


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"hosp.example", NEW_NAME),
        (b"HOSP.Example", NEW_NAME),  # host names are case-insensitive
        (b"hosp.example:443", NEW_NAME),  # a port is ignored
        (b"Hosp.EXAMPLE:8080", NEW_NAME),
        (b"hosp.example.", NEW_NAME),  # the same name, fully qualified
        (b"old-hosp.example", OLD_NAME),
        (b"OLD-HOSP.EXAMPLE:80", OLD_NAME),
    ],
)
def test_each_public_name_is_answered_and_hosp_builds_its_links_from_the_name(
    proxy: NginxProxy, fresh_hosp: Hosp, host: bytes, name: str
) -> None:
    answer = request(proxy.port, host)

    assert hosp_link_hosts(answer) == {name}
    assert fresh_hosp.received() == 1
    entry = access_log_entry(proxy, answer.header("X-Request-Id"))
    assert (entry["route"], entry["status"], entry["listener"]) == ("hosp", 200, "public")


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"hosp.example", NEW_NAME),
        (b"HOSP.EXAMPLE:8443", NEW_NAME),
        (b"Old-Hosp.Example.", OLD_NAME),
    ],
)
def test_hosp_receives_the_matched_name_lowercase_without_a_port_never_the_clients_text(
    recording_proxy: NginxProxy, recorder: RecordingServer, host: bytes, name: str
) -> None:
    answers = [
        request(recording_proxy.port, host),  # the first attempt, over the keep-alive pool
        request(recording_proxy.port, host, b"/notes", method=b"POST", body=b"{}"),  # @hosp_once
    ]
    recorder.statuses = [502]
    answers.append(request(recording_proxy.port, host))  # a first attempt that fails, then @hosp_retry

    assert [answer.status for answer in answers] == [200, 200, 200]
    assert [(r.method, r.path) for r in recorder.received] == [
        ("GET", "/hospitals"),
        ("POST", "/notes"),
        ("GET", "/hospitals"),
        ("GET", "/hospitals"),
    ]
    assert [r.headers["Host"] for r in recorder.received] == [name] * 4
    # With the scheme and port of CloudFront's viewer, fixed: a Rails HOSP builds https://{name}/...
    for received in recorder.received:
        assert (received.headers["X-Forwarded-Proto"], received.headers["X-Forwarded-Port"]) == ("https", "443")
        assert "X-Forwarded-Host" not in received.headers
        assert "Forwarded" not in received.headers


def test_an_absolute_form_request_is_judged_by_its_target_not_its_host_header(
    recording_proxy: NginxProxy, recorder: RecordingServer
) -> None:
    # RFC 9112, 3.2.2: with a target in absolute form, the target's host is the request's.
    accepted = request(recording_proxy.port, b"evil.example", b"http://HOSP.example:8080/hospitals")
    refused = request(recording_proxy.port, b"hosp.example", b"http://evil.example/hospitals")

    assert accepted.status == 200, accepted
    assert_refused(recording_proxy, refused, 421, MISDIRECTED)
    assert [(r.path, r.headers["Host"]) for r in recorder.received] == [("/hospitals", NEW_NAME)]


def test_screens_and_the_audit_api_are_answered_on_a_public_name(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer
) -> None:
    screen = request(proxy.port, b"Hosp.Example", b"/patients/1/screen", method=b"POST", body=b'{"images": ["eA=="]}')
    audit = request(proxy.port, b"old-hosp.example:443", b"/audit")

    assert (screen.status, audit.status) == (200, 200)
    assert sorted(r.path for r in fresh_app.wait_for(2)) == ["/audit", "/note-intake"]
    assert access_log_entry(proxy, screen.header("X-Request-Id"))["route"] == "screen"
    assert access_log_entry(proxy, audit.header("X-Request-Id"))["route"] == "audit"


# --- any other host is refused --------------------------------------------------------------------

OTHER_HOSTS = [
    pytest.param(b"evil.example", id="another-name"),
    pytest.param(b'evil.example"><script>', id="html-injection"),
    pytest.param(b"evil.example'><img\xa0src=x\xa0onerror=alert(1)>", id="html-injection-attribute"),
    pytest.param(b"127.0.0.1", id="ip"),
    pytest.param(b"127.0.0.1:80", id="ip-and-port"),
    pytest.param(b"[::1]:80", id="ipv6"),
    pytest.param(b"sub.hosp.example", id="subdomain"),
    pytest.param(b"hosp.example.evil.example", id="public-name-as-prefix"),
    pytest.param(b"xhosp.example", id="public-name-as-suffix"),
    pytest.param(b"hosp-example", id="dot-as-any-character"),
    pytest.param(b"hosp.example\\", id="backslash"),
    pytest.param("h\u00f6sp.example".encode(), id="unicode"),
    pytest.param(b"hosp.example\xff", id="non-utf8-byte"),
    pytest.param(b"hosp.examp\xc4\xbbe", id="lookalike"),
    pytest.param(b"hosp.example%2e", id="percent-encoded"),
    pytest.param(b"hosp.example,hosp.example", id="two-names"),
    pytest.param(b"xn--hsp-sna.example", id="punycode"),
]


@pytest.mark.parametrize("host", OTHER_HOSTS)
def test_any_other_host_gets_a_json_421_and_never_reaches_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, host: bytes
) -> None:
    answer = request(proxy.port, host)

    assert_refused(proxy, answer, 421, MISDIRECTED)
    assert fresh_hosp.received() == 0
    assert host not in answer.body  # the refusal never repeats the client's text
    assert b"<script>" not in answer.body


@pytest.mark.parametrize("host", [b"evil.example", b'evil.example"><script>'])
@pytest.mark.parametrize(
    "sent",
    [
        (b"GET", b"/hospitals", b""),
        (b"POST", b"/notes", b'{"patient_id": 1, "text": "x"}'),
        (b"POST", b"/patients/1/screen", b'{"images": []}'),  # a screen
        (b"POST", b"/patients/x/screen", b"{}"),  # the proxy's own 404
        (b"GET", b"/audit", b""),  # the audit trail's API
        (b"PROPFIND", b"/hospitals", b""),  # a method the API does not use: the Host is checked first
    ],
)
def test_no_route_is_reached_on_another_host(
    recording_proxy: NginxProxy,
    recorder: RecordingServer,
    fresh_app: RecordingServer,
    host: bytes,
    sent: tuple[bytes, bytes, bytes],
) -> None:
    method, target, body = sent
    answer = request(recording_proxy.port, host, target, method=method, body=body)

    assert_refused(recording_proxy, answer, 421, MISDIRECTED)
    assert recorder.received == []
    assert fresh_app.received == []


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"GET /hospitals HTTP/1.0\r\n", id="http-1.0-without-host"),
        pytest.param(b"GET http://hosp.example/hospitals HTTP/1.0\r\n", id="http-1.0-absolute-form-without-host"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nConnection: close\r\n", id="http-1.1-without-host"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost:\r\nConnection: close\r\n", id="http-1.1-empty-host"),
        # NGINX itself refuses a Host with a path separator, such as a closing tag's "/".
        pytest.param(
            b'GET /hospitals HTTP/1.1\r\nHost: evil.example"><script>alert(1)</script>\r\nConnection: close\r\n',
            id="html-injection-with-a-slash",
        ),
        # And one with a space, a control character or an empty label.
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: hosp.example x\r\nConnection: close\r\n", id="space"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: hosp.example\tx\r\nConnection: close\r\n", id="tab"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: hosp.example\x7f\r\nConnection: close\r\n", id="delete"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: hosp.example..\r\nConnection: close\r\n", id="two-final-dots"),
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: hosp..example\r\nConnection: close\r\n", id="empty-label"),
    ],
)
def test_a_request_without_a_valid_host_gets_a_json_400_and_never_reaches_hosp(
    recording_proxy: NginxProxy, recorder: RecordingServer, sent: bytes
) -> None:
    line, _, headers = sent.partition(b"\r\n")
    answer = exchange(
        recording_proxy.port, line + b"\r\nX-Origin-Verify: " + SECRET.encode() + b"\r\n" + headers + b"\r\n"
    )

    assert_refused(recording_proxy, answer, 400, NO_HOST)
    assert recorder.received == []
    assert b"<script>" not in answer.body


# --- order, health and the internal listener -------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"GET /hospitals HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n", id="another-host"),
        pytest.param(b"GET /hospitals HTTP/1.0\r\n", id="no-host"),
    ],
)
def test_the_origin_secret_is_checked_first(
    recording_proxy: NginxProxy, recorder: RecordingServer, sent: bytes
) -> None:
    # A request without CloudFront's secret learns nothing about the names.
    answer = exchange(recording_proxy.port, sent + b"\r\n")

    assert answer.status == 403, answer
    assert answer.json()["error"] == "missing or wrong origin header"
    entry = access_log_entry(recording_proxy, answer.header("X-Request-Id"))
    assert (entry["route"], entry["status"]) == ("origin-refused", 403)
    assert recorder.received == []


@pytest.mark.parametrize(
    "sent",
    [b"GET /_proxy/health HTTP/1.1\r\nHost: 10.0.1.23:80\r\n", b"GET /_proxy/health HTTP/1.0\r\n"],
    ids=["load-balancer-address", "no-host"],
)
def test_the_health_answer_needs_no_public_name(proxy: NginxProxy, sent: bytes) -> None:
    # A load balancer's health check names the instance's address; neither secret nor name is needed.
    answer = exchange(proxy.port, sent + b"Connection: close\r\n\r\n")

    assert (answer.status, answer.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("host", [b"internal-hosp-proxy.example.internal", b"127.0.0.1:8081", b"evil.example"])
def test_the_internal_listener_answers_any_host_and_passes_it_on(
    recording_proxy: NginxProxy, recorder: RecordingServer, host: bytes
) -> None:
    answer = request(recording_proxy.internal_port, host, secret=None)

    assert answer.status == 200, answer
    assert [r.headers["Host"] for r in recorder.received] == [host.decode()]
    entry = access_log_entry(recording_proxy, answer.header("X-Request-Id"))
    assert (entry["route"], entry["listener"]) == ("hosp", "internal")


def test_the_internal_listener_refuses_a_request_without_a_host(
    recording_proxy: NginxProxy, recorder: RecordingServer
) -> None:
    answer = exchange(
        recording_proxy.internal_port, b"GET /hospitals HTTP/1.0\r\nAuthorization: " + AUTHORIZATION + b"\r\n\r\n"
    )

    assert_refused(recording_proxy, answer, 400, NO_HOST, listener="internal")
    assert recorder.received == []


# --- without public names (make run): any host, as before, but never no host ------------------------


def test_without_public_names_hosp_gets_the_clients_host_as_before(
    open_recording_proxy: NginxProxy, recorder: RecordingServer
) -> None:
    answer = request(open_recording_proxy.port, b"Anything.Example:8080", secret=None)

    assert answer.status == 200, answer
    assert [r.headers["Host"] for r in recorder.received] == ["Anything.Example:8080"]
    [received] = recorder.received
    port = str(open_recording_proxy.port)
    assert (received.headers["X-Forwarded-Proto"], received.headers["X-Forwarded-Port"]) == ("http", port)


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"GET /hospitals HTTP/1.0\r\n", id="http-1.0"),
        pytest.param(b"GET http://127.0.0.1/hospitals HTTP/1.0\r\n", id="http-1.0-absolute-form"),
    ],
)
def test_without_public_names_a_request_without_a_host_never_learns_hosps_address(
    open_proxy: NginxProxy, fresh_hosp: Hosp, sent: bytes
) -> None:
    # Before: HOSP got no Host and built every "url" from its own address, which the answer carried.
    answer = exchange(open_proxy.port, sent + b"Authorization: " + AUTHORIZATION + b"\r\n\r\n")

    assert_refused(open_proxy, answer, 400, NO_HOST)
    assert fresh_hosp.received() == 0
    assert fresh_hosp.address.encode() not in answer.body
    assert str(fresh_hosp.port).encode() not in answer.head.encode() + answer.body


def test_an_http_0_9_request_names_no_host_and_gets_only_the_json_body(
    open_proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    # HTTP/0.9: a request line without a version, an answer without a status line or headers.
    with socket.create_connection(("127.0.0.1", open_proxy.port), timeout=10) as connection:
        connection.sendall(b"GET /hospitals\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk

    answer = json.loads(received)
    assert (answer["status"], answer["error"]) == (400, NO_HOST)
    assert access_log_entry(open_proxy, answer["request_id"])["route"] == "host-refused"
    assert fresh_hosp.received() == 0


def test_without_public_names_hosp_links_carry_the_clients_host(open_proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = request(open_proxy.port, b"127.0.0.1:8080", secret=None)

    assert hosp_link_hosts(answer, "http") == {"127.0.0.1:8080"}


# --- production: rendered with both checks, or not at all -------------------------------------------


def test_a_production_render_with_public_names_and_a_secret_passes_nginx_t(tmp_path: Path) -> None:
    secret_file = tmp_path / "origin-secrets"
    secret_file.write_text(SECRET + "\n")
    output = tmp_path / "nginx.conf"
    args = ["--variant", "production", "--upstream", "localhost:9000", "--user", " ".join(unprivileged_user())]
    # NGINX resolves the interceptor's name at start; the logs are in tmp_path.
    args += ["--interceptor", "localhost:443", "--access-log", str(tmp_path / "access.json")]
    args += ["--error-log", str(tmp_path / "error.log"), "--output", str(output)]
    args += ["--origin-secret-file", str(secret_file), "--public-name", NEW_NAME, "--public-name", OLD_NAME]

    assert render.main(args) == 0
    config = output.read_text().replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    output.write_text(config)
    checked = subprocess.run(
        [nginx_binary(), "-t", "-c", str(output), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert checked.returncode == 0, checked.stderr
    assert r'"~^public:(?<hosp_matched_name>hosp\.example|old-hosp\.example)\z"' in config
    assert '"~^public:"  misdirected;' in config
    assert "proxy_set_header Host $hosp_public_host_header;" in config
    assert "proxy_set_header X-Forwarded-Proto https;" in config
    assert "proxy_set_header X-Forwarded-Port 443;" in config
    assert "proxy_set_header X-Forwarded-Proto $scheme;" not in config


@pytest.mark.parametrize(
    "given",
    [[], ["--public-name", NEW_NAME], ["--origin-secret-file", "SECRET_FILE"]],
    ids=["neither", "names-only", "secret-only"],
)
def test_production_is_not_rendered_without_both_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: list[str]
) -> None:
    secret_file = tmp_path / "origin-secrets"
    secret_file.write_text(SECRET + "\n")
    output = tmp_path / "nginx.conf"
    args = ["--variant", "production", "--upstream", "hosp.internal:80", "--interceptor", "api.example:443"]
    args += [str(secret_file) if word == "SECRET_FILE" else word for word in given]

    with pytest.raises(SystemExit) as exited:
        render.main([*args, "--output", str(output)])

    assert exited.value.code == 2
    assert (
        "the production variant needs --public-name (at least one) and --origin-secret-file" in capsys.readouterr().err
    )
    assert not output.exists()
