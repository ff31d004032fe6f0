"""Forwarding headers: HOSP and the Chalice app get the proxy's own, never a client's.

HOSP is a Rails app: Rack builds a request's own URL, and so every "url" in
HOSP's answers, from Forwarded, X-Forwarded-Host, -Proto, -Scheme, -Ssl and
-Port before Host. The real NGINX, rendered as production renders it (public
names and an origin secret) and as `make run` does (neither), in front of
recording servers in HOSP's and the app's places, all over loopback. Requests
are written byte for byte on a socket, so that a field can be sent twice and
in any case, as a client may send it.

The HOSP stand-in builds its links from Host alone and always writes
"http://" (local/hosp_standin/server.py): it cannot show the scheme. So these
tests check the headers HOSP receives, and `rack_base_url` computes from them
the base URL Rack would build.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from infra.nginx import render
from local.hosp_standin import parsing
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, PROXY_TEST_TUNING, Received, RecordingServer, proxy_in_front

PUBLIC_NAME = "hosp.example"
INTERNAL_NAME = "internal.hosp.example"  # the Lambdas' HospBaseUrl host (infra/network/network.yaml)
SECRET = secrets.token_urlsafe(32)
AUTHORIZATION = DEMO_AUTH["Authorization"].encode()
CLIENT_FORWARDED_FOR = "203.0.113.9"
# Every request, on either listener, through every path that leads out of the proxy.
HOSP_ROUTES = [
    (b"GET", b"/hospitals", b""),  # the first attempt, over the keep-alive pool
    (b"POST", b"/notes", b"{}"),  # @hosp_once
]
# A screen goes to HOSP (@hosp_screen) on the public listener, and its hand-off to the app.
SCREEN_ROUTE = (b"POST", b"/patients/1/screen", b'{"images": ["eA=="]}')
APP_ROUTES = [  # public listener only
    (b"GET", b"/audit", b""),  # the audit trail's API
    (b"GET", b"/audit/notes", b""),
]


def forged(proto: bytes) -> list[tuple[bytes, bytes]]:
    """A client's forwarding fields: case variants, a field sent twice, lists; `proto` is never the proxy's.

    NGINX writes its own fields first and the client's after them, and the
    recording server keeps the last value of a name (in the case it was
    sent): a client's field passed on would show.
    """
    return [
        (b"X-Forwarded-Host", b"evil.example"),
        (b"x-forwarded-host", b"evil-lower.example"),
        (b"X-FORWARDED-HOST", b"evil-upper.example"),
        (b"X-Forwarded-Host", b"evil-again.example, evil-list.example"),
        (b"Forwarded", b"host=evil.example;proto=" + proto),
        (b"forwarded", b'for=192.0.2.1;host="evil-lower.example:8443";proto=' + proto),
        (b"X-Forwarded-Proto", proto),
        (b"x-forwarded-proto", proto + b", gopher"),
        (b"X-Forwarded-Proto", proto),
        (b"X-Forwarded-Port", b"8443"),
        (b"x-FORWARDED-port", b"1"),
        (b"X-Forwarded-Port", b"8443"),
        (b"X-Forwarded-Server", b"evil.example"),
        (b"X-Forwarded-Scheme", proto),
        (b"X-Forwarded-Ssl", b"on" if proto == b"https" else b"off"),
        (b"X-Forwarded-Prefix", b"/evil"),
        # Rack reads X_Forwarded_Host as X-Forwarded-Host; NGINX drops a name with an underscore.
        (b"X_Forwarded_Host", b"evil-underscore.example"),
        (b"X-Forwarded-For", CLIENT_FORWARDED_FOR.encode()),
    ]


@dataclasses.dataclass
class Render:
    """One rendered proxy and what it must tell HOSP and the app."""

    proxy: NginxProxy
    host: bytes  # the public listener's Host
    secret: str | None
    proto: str  # the proxy's X-Forwarded-Proto
    public_port: str  # the proxy's X-Forwarded-Port, per listener
    internal_port: str
    forged_proto: bytes  # a client's, never the proxy's
    base_url: str  # the public listener's requests' URL, as Rack builds it


def send(
    port: int,
    host: bytes,
    method: bytes = b"GET",
    target: bytes = b"/hospitals",
    body: bytes = b"",
    *,
    secret: str | None = None,
    fields: Sequence[tuple[bytes, bytes]] = (),
) -> int:
    """Send one request as written and return its status; the proxy closes the connection."""
    lines = [method + b" " + target + b" HTTP/1.1"]
    if secret is not None:
        lines.append(b"X-Origin-Verify: " + secret.encode())
    lines += [b"Host: " + host, b"Connection: close", b"Authorization: " + AUTHORIZATION]
    lines += [name + b": " + value for name, value in fields]
    if body or method == b"POST":
        lines.append(b"Content-Length: %d" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1])


def forwarding(received: Received) -> list[tuple[str, str]]:
    """The forwarding fields an upstream received, as named and valued."""
    return sorted(
        (name, value)
        for name, value in received.headers.items()
        if name.lower().replace("_", "-").startswith("x-forwarded-") or name.lower() == "forwarded"
    )


def rack_base_url(headers: Mapping[str, str]) -> str:
    """The base URL a Rails HOSP builds its links from (the stand-in's model of Rack, which it uses)."""
    return parsing.rack_base_url(headers, connection_host="hosp.invalid")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def recorders(hosp_recorder: RecordingServer, app: RecordingServer) -> tuple[RecordingServer, RecordingServer]:
    hosp_recorder.reset()
    app.reset()
    return hosp_recorder, app


@pytest.fixture(scope="module")
def production(
    hosp_recorder: RecordingServer, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Render]:
    """As production renders it: public names and an origin secret."""
    with proxy_in_front(
        hosp_recorder.address,
        app,
        tmp_path_factory.mktemp("nginx-forwarded-production"),
        origin_secrets=(SECRET,),
        public_names=(PUBLIC_NAME,),
    ) as proxy:
        yield Render(
            proxy, PUBLIC_NAME.encode(), SECRET, "https", "443", "443", b"http", base_url=f"https://{PUBLIC_NAME}"
        )


@pytest.fixture(scope="module")
def local(
    hosp_recorder: RecordingServer, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Render]:
    """As `make run` renders it: no public names, no origin secret."""
    with proxy_in_front(hosp_recorder.address, app, tmp_path_factory.mktemp("nginx-forwarded-local")) as proxy:
        yield Render(
            proxy,
            f"127.0.0.1:{proxy.port}".encode(),
            None,
            "http",
            str(proxy.port),
            str(proxy.internal_port),
            b"https",
            base_url=f"http://127.0.0.1:{proxy.port}",
        )


@pytest.fixture(params=["production", "local"])
def rendered(request: pytest.FixtureRequest) -> Render:
    return request.getfixturevalue(request.param)


def expected(proto: str, port: str) -> list[tuple[str, str]]:
    return [
        ("X-Forwarded-For", f"{CLIENT_FORWARDED_FOR}, 127.0.0.1"),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", proto),
    ]


# --- a client's values never reach HOSP or the app -----------------------------------------------


def test_a_clients_forwarding_headers_reach_neither_hosp_nor_the_app_on_the_public_listener(
    rendered: Render, recorders: tuple[RecordingServer, RecordingServer]
) -> None:
    hosp, app = recorders
    fields = forged(rendered.forged_proto)
    statuses = [
        send(rendered.proxy.port, rendered.host, *route, secret=rendered.secret, fields=fields)
        for route in [*HOSP_ROUTES, SCREEN_ROUTE, *APP_ROUTES]
    ]
    hosp.statuses = [502]  # a first attempt that fails: its retry goes through @hosp_retry
    statuses.append(send(rendered.proxy.port, rendered.host, secret=rendered.secret, fields=fields))

    assert statuses == [200] * 6
    assert [(r.method, r.path) for r in hosp.received] == [
        ("GET", "/hospitals"),
        ("POST", "/notes"),
        ("POST", "/patients/1/screen"),
        ("GET", "/hospitals"),
        ("GET", "/hospitals"),
    ]
    handoffs = [r for r in app.wait_for(3) if r.path == "/note-intake"]
    from_clients = [r for r in app.received if r.path != "/note-intake"]
    assert [r.path for r in from_clients] == ["/audit", "/audit/notes"]
    for received in hosp.received + from_clients:
        assert forwarding(received) == expected(rendered.proto, rendered.public_port), received
        assert not any("evil" in value for value in received.headers.values()), received
    # The hand-off carries none of the client's headers, forged or not.
    (handoff,) = handoffs
    assert forwarding(handoff) == [], handoff
    assert not any("evil" in value for value in handoff.headers.values()), handoff
    for received in hosp.received:
        assert rack_base_url(received.headers) == rendered.base_url


def test_a_clients_forwarding_headers_never_reach_hosp_on_the_internal_listener(
    rendered: Render, recorders: tuple[RecordingServer, RecordingServer]
) -> None:
    hosp, _ = recorders
    fields = forged(rendered.forged_proto)
    statuses = [
        send(rendered.proxy.internal_port, INTERNAL_NAME.encode(), *route, fields=fields) for route in HOSP_ROUTES
    ]

    assert statuses == [200, 200]
    assert [(r.method, r.path) for r in hosp.received] == [("GET", "/hospitals"), ("POST", "/notes")]
    for received in hosp.received:
        assert forwarding(received) == expected(rendered.proto, rendered.internal_port), received
        assert received.headers["Host"] == INTERNAL_NAME


@pytest.mark.parametrize(
    "field",
    [
        pytest.param((b"X-Forwarded-Host", b"evil.example"), id="x-forwarded-host"),
        pytest.param((b"x-forwarded-host", b"evil.example"), id="x-forwarded-host-lowercase"),
        pytest.param((b"Forwarded", b"host=evil.example"), id="forwarded-host"),
        pytest.param((b"FORWARDED", b"proto=http;host=evil.example:80"), id="forwarded-uppercase"),
        pytest.param((b"X-Forwarded-Proto", b"http"), id="x-forwarded-proto"),
        pytest.param((b"X-Forwarded-Scheme", b"http"), id="x-forwarded-scheme"),
        pytest.param((b"X-Forwarded-Port", b"80"), id="x-forwarded-port"),
        pytest.param((b"X-Forwarded-Ssl", b"off"), id="x-forwarded-ssl"),
        pytest.param((b"X_Forwarded_Host", b"evil.example"), id="underscore"),
    ],
)
def test_in_production_no_single_field_changes_the_url_hosp_builds(
    production: Render, recorders: tuple[RecordingServer, RecordingServer], field: tuple[bytes, bytes]
) -> None:
    hosp, _ = recorders
    status = send(production.proxy.port, production.host, secret=production.secret, fields=[field])

    assert status == 200
    [received] = hosp.received
    assert rack_base_url(received.headers) == f"https://{PUBLIC_NAME}"
    assert forwarding(received) == [
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ]


# --- the scheme and port the proxy tells -----------------------------------------------------------


def test_in_production_hosp_and_the_app_are_told_https_on_443_on_both_listeners(
    production: Render, recorders: tuple[RecordingServer, RecordingServer]
) -> None:
    hosp, app = recorders
    public = send(production.proxy.port, b"HOSP.Example:8080", secret=SECRET)
    audit = send(production.proxy.port, b"hosp.example", b"GET", b"/audit", secret=SECRET)
    internal = send(production.proxy.internal_port, INTERNAL_NAME.encode())

    assert (public, audit, internal) == (200, 200, 200)
    [from_public, from_internal] = hosp.received
    [from_audit] = app.received
    for received in (from_public, from_audit, from_internal):
        assert (received.headers["X-Forwarded-Proto"], received.headers["X-Forwarded-Port"]) == ("https", "443")
    # What a Rails HOSP builds its links from: https and the public name, or the Lambdas' name.
    assert rack_base_url(from_public.headers) == f"https://{PUBLIC_NAME}"
    assert rack_base_url(from_internal.headers) == f"https://{INTERNAL_NAME}"


def test_locally_hosp_and_the_app_are_told_http_and_the_listeners_port(
    local: Render, recorders: tuple[RecordingServer, RecordingServer]
) -> None:
    hosp, app = recorders
    public = send(local.proxy.port, b"localhost")
    audit = send(local.proxy.port, b"localhost", b"GET", b"/audit")
    internal = send(local.proxy.internal_port, b"127.0.0.1")

    assert (public, audit, internal) == (200, 200, 200)
    [from_public, from_internal] = hosp.received
    [from_audit] = app.received
    for received, port in (
        (from_public, local.proxy.port),
        (from_audit, local.proxy.port),
        (from_internal, local.proxy.internal_port),
    ):
        assert (received.headers["X-Forwarded-Proto"], received.headers["X-Forwarded-Port"]) == ("http", str(port))
    assert rack_base_url(from_public.headers) == f"http://localhost:{local.proxy.port}"
    assert rack_base_url(from_internal.headers) == f"http://127.0.0.1:{local.proxy.internal_port}"


def test_locally_behind_the_edge_hosp_is_told_https_and_builds_links_on_the_edges_host_and_port(
    local: Render, recorders: tuple[RecordingServer, RecordingServer]
) -> None:
    """The local edge (CloudFront's stand-in) says CloudFront-Forwarded-Proto: https and passes
    the viewer's Host: a Rails HOSP then links to https://hosp.localhost:8443, not http://."""
    hosp, _ = recorders
    status = send(local.proxy.port, b"hosp.localhost:8443", fields=[(b"CloudFront-Forwarded-Proto", b"https")])

    assert status == 200
    [received] = hosp.received
    assert received.headers["X-Forwarded-Proto"] == "https"
    assert rack_base_url(received.headers) == "https://hosp.localhost:8443"


def test_rack_base_url_follows_racks_order() -> None:
    # The model the tests above rely on, against the attacks they close.
    assert rack_base_url({"Host": "hosp.example"}) == "http://hosp.example"
    assert (
        rack_base_url({"Host": "hosp.example", "X-Forwarded-Host": "a.example, evil.example"}) == "http://evil.example"
    )
    assert (
        rack_base_url({"Host": "hosp.example", "Forwarded": "host=evil.example;proto=https"}) == "https://evil.example"
    )
    assert rack_base_url({"Host": "hosp.example", "X-Forwarded-Proto": "https"}) == "https://hosp.example"
    assert rack_base_url({"Host": "hosp.example", "X-Forwarded-Ssl": "on"}) == "https://hosp.example"
    assert rack_base_url({"Host": "h.example", "X-Forwarded-Port": "8443", "X-Forwarded-Proto": "https"}) == (
        "https://h.example:8443"
    )
    assert rack_base_url({"Host": "h.example:8080", "X-Forwarded-Port": "443"}) == "http://h.example:8080"


def test_production_renders_fixed_values_and_local_the_viewers_scheme_and_listeners_port(tmp_path: Path) -> None:
    base = render.ProxySettings.for_variant(
        "local", "127.0.0.1:9000", tmp_path, PROXY_TEST_TUNING, interceptor="127.0.0.1:8000"
    )
    named = render.render(dataclasses.replace(base, public_names=(PUBLIC_NAME,)))
    plain = render.render(base)

    # Once for HOSP (the http block), once in each of the two locations that proxy clients'
    # requests to the app (the hand-off to the note intake sends no client header).
    for config, proto, port in ((named, "https", "443"), (plain, "$hosp_viewer_scheme", "$server_port")):
        assert config.count(f"proxy_set_header X-Forwarded-Proto {proto};") == 3
        assert config.count(f"proxy_set_header X-Forwarded-Port {port};") == 3
        for name in ("X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Forwarded-Ssl", "Forwarded"):
            assert config.count(f'proxy_set_header {name} "";') == 3
        # NGINX's defaults: a field name with an underscore is dropped, never passed on.
        assert not re.search(r"^\s*(underscores_in_headers|ignore_invalid_headers)\b", config, re.MULTILINE)
