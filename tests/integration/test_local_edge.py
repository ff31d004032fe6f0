"""The local edge (local/edge) plays CloudFront in front of the proxy, checked with real TLS clients.

The real NGINX with the edge's rendered configuration, on free loopback ports,
in front of a recording server (to see exactly what reaches the origin) or of
the real proxy rendered with the edge's origin secret, in front of the real
HOSP stand-in. The clients are Python's ssl module (one protocol version at a
time), curl and node (the CloudFront Function run from its file, to compare
its answers with the edge's).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests
from cryptography import x509

from infra.nginx import render
from infra.nginx.render import Tuning
from local.edge import certificates, cloudfront
from local.edge.certificates import EdgeCertificates
from local.edge.server import IP_ADDRESSES, NEW_NAME, OLD_NAME, REDIRECT_MODULE, LocalEdge, new_origin_secret
from local.nginx_proxy import NginxProxy
from local.processes import ROOT, free_port
from tests.support import DEMO_AUTH, HOSP_IDLE_TIMEOUT, Hosp, RecordingServer

NODE_HARNESS = ROOT / "tests" / "infra" / "run_cloudfront_function.js"
MISSING_NODE = "node is needed to run infra/cloudfront/redirect.js: apt-get install nodejs (make test does so as root)"
MISSING_CURL = "curl is needed for the edge's HTTP/2 and --cacert checks: apt-get install curl"
SECURITY_POLICY_CIPHERS = set(cloudfront.SECURITY_POLICIES["TLSv1.2_2021"][1])
# CloudFront's limit on a URL is 8,192 bytes: queries just under it.
LONG_QUERY = "&".join(f"k{i}={'v' * 60}%20" for i in range(110))
# 1,500 distinct keys, from the last to the first, bare, with an empty value and with a
# value in turn, and one key again at the end. njs 0.7.9 lists an object of more than 10
# keys in its hash order: the redirect keeps this order because it takes the raw query.
MANY_KEYS_QUERY = (
    "&".join(f"{i:x}" if i % 3 == 0 else f"{i:x}=" if i % 3 == 2 else f"{i:x}={i % 7}" for i in range(1499, -1, -1))
    + "&5db=again"
)
# The methods CloudFront lets through (distribution.yaml's AllowedMethods).
SAFE_METHODS = ["GET", "HEAD"]
UNSAFE_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def edge(origin: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEdge]:
    """The edge in front of a server that records what reaches the origin."""
    run_dir = tmp_path_factory.mktemp("edge")
    with LocalEdge(origin=origin.address, run_dir=run_dir, origin_secret=new_origin_secret()) as running:
        yield running


@pytest.fixture
def fresh_origin(origin: RecordingServer) -> RecordingServer:
    origin.reset()
    return origin


def context(
    edge: LocalEdge, version: ssl.TLSVersion | None = None, ciphers: str | None = None, verify: bool = True
) -> ssl.SSLContext:
    """A client context for exactly one protocol version (None: any), trusting the local CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=str(edge.certificates.ca))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1, which is what these tests ask for on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(port: int, ctx: ssl.SSLContext, name: str = NEW_NAME) -> tuple[str | None, str | None]:
    """(protocol, cipher) of a completed handshake with 127.0.0.1:port for `name`."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None


def raw_request(edge: LocalEdge, request: bytes, name: str = NEW_NAME) -> tuple[int, dict[str, str], bytes, int]:
    """Bytes sent as they are over TLS (for targets http.client would refuse): (status, headers, body, client port)."""
    with edge.tls_connection(name) as tls:
        client_port = tls.getsockname()[1]
        tls.sendall(request)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body, client_port


def get_raw(edge: LocalEdge, target: bytes, name: str = NEW_NAME, method: bytes = b"GET") -> tuple[int, dict[str, str]]:
    host = edge.host(name).encode()
    status, headers, _, _ = raw_request(
        edge, method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n", name
    )
    return status, headers


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("curl")
    assert found, MISSING_CURL
    return subprocess.run([found, "-sS", *args], capture_output=True, text=True, timeout=30, check=False)


# --- TLS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_tls_1_2_and_1_3_are_accepted(edge: LocalEdge, version: ssl.TLSVersion) -> None:
    protocol, cipher = handshake(edge.port, context(edge, version))

    assert protocol == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    if version == ssl.TLSVersion.TLSv1_2:
        assert cipher in SECURITY_POLICY_CIPHERS  # TLSv1.2_2021's, from distribution.yaml's policy


@contextlib.contextmanager
def permissive_tls_server(edge: LocalEdge) -> Iterator[tuple[int, list[str]]]:
    """A loopback TLS server with the edge's certificate that accepts TLS 1.0 to 1.3: (port, versions seen)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(edge.certificates.certificate), str(edge.certificates.key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    seen: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with server.wrap_socket(connection, server_side=True) as tls:
                seen.append(str(tls.version()))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        thread.join(timeout=10)
        listener.close()


@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")], ids=["1.0", "1.1"]
)
def test_tls_1_0_and_1_1_are_refused_by_the_edge(edge: LocalEdge, version: ssl.TLSVersion, name: str) -> None:
    # The client offers only this version, with ciphers its OpenSSL would otherwise
    # refuse itself (@SECLEVEL=0), so the refusal proven is the server's.
    client = context(edge, version, ciphers="DEFAULT:@SECLEVEL=0")
    # The same client completes the handshake with a server that allows the version:
    # it really can speak it.
    with permissive_tls_server(edge) as (port, seen):
        assert handshake(port, client)[0] == name
    assert seen == [name]

    with pytest.raises(ssl.SSLError) as refused:
        handshake(edge.port, client)

    # The server's alert, received by the client: protocol_version (RFC 8446 6.2).
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_tls_1_2_with_a_cipher_outside_the_security_policy_is_refused(edge: LocalEdge) -> None:
    client = context(edge, ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    with permissive_tls_server(edge) as (port, _):
        assert handshake(port, client) == ("TLSv1.2", "ECDHE-ECDSA-AES128-SHA")

    with pytest.raises(ssl.SSLError) as refused:
        handshake(edge.port, client)

    assert refused.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", refused.value


def test_http2_is_offered(edge: LocalEdge) -> None:
    done = curl("--http2", "--cacert", str(edge.certificates.ca), "-o", "/dev/null", "-w", "%{http_version}",
                f"{edge.https_url}/hospitals")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2"


# --- the certificate --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NEW_NAME, OLD_NAME, "localhost", "127.0.0.1"])
def test_the_certificate_verifies_against_the_local_ca_for_each_local_name(edge: LocalEdge, name: str) -> None:
    assert handshake(edge.port, context(edge), name)[0] in ("TLSv1.2", "TLSv1.3")


def test_curl_trusts_the_edge_with_the_local_ca_and_only_with_it(edge: LocalEdge) -> None:
    url = f"https://{edge.host(OLD_NAME)}/hospitals"
    trusted = curl("--cacert", str(edge.certificates.ca), "-o", "/dev/null", "-w", "%{http_code}", url)
    untrusted = curl("-o", "/dev/null", url)  # the system's CAs only

    assert (trusted.returncode, trusted.stdout) == (0, "301"), trusted.stderr
    assert untrusted.returncode == 60, untrusted.stderr  # CURLE_PEER_FAILED_VERIFICATION


def test_the_certificate_names_no_other_host(edge: LocalEdge) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(edge.port, context(edge), "elsewhere.localhost")


def test_the_keys_are_readable_by_their_owner_only(edge: LocalEdge) -> None:
    for private in (edge.certificates.key, edge.certificates.ca_key, edge.secret_path, edge.config_path):
        assert private.stat().st_mode & 0o777 == 0o600, private


NAMES = (NEW_NAME, OLD_NAME, "localhost")


def serials(certs: EdgeCertificates) -> tuple[int, int]:
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    server = x509.load_pem_x509_certificate(certs.certificate.read_bytes())
    return ca.serial_number, server.serial_number


def test_certificates_are_kept_across_runs_and_made_again_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = EdgeCertificates(tmp_path)
    certs.ensure(NAMES, IP_ADDRESSES)
    ca, server = serials(certs)

    certs.ensure(NAMES, IP_ADDRESSES)
    assert serials(certs) == (ca, server)  # kept: the developer trusts the CA once

    certs.ensure((*NAMES, "more.localhost"), IP_ADDRESSES)
    assert serials(certs)[0] == ca
    assert serials(certs)[1] != server  # another name: a new server certificate from the same CA
    server = serials(certs)[1]

    certs.key.unlink()
    certs.ensure((*NAMES, "more.localhost"), IP_ADDRESSES)
    assert serials(certs)[0] == ca
    assert serials(certs)[1] != server

    # Close to expiring (every certificate is, when renewal starts this early): both made again.
    monkeypatch.setattr(certificates, "RENEW_BEFORE", certificates.CA_LIFETIME + datetime.timedelta(days=1))
    certs.ensure(NAMES, IP_ADDRESSES)
    assert serials(certs)[0] != ca
    assert certs.ca_key.stat().st_mode & 0o777 == 0o600


def test_the_local_ca_cannot_vouch_for_a_real_domain(tmp_path: Path) -> None:
    """A developer trusts the local CA (README): even with its key, a certificate it signs for
    another name does not verify, by OpenSSL's own name-constraint check."""
    certs = EdgeCertificates(tmp_path)
    certs.ensure(NAMES, IP_ADDRESSES)
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = certificates.serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    for names, verifies in ((("hosp.localhost",), True), (("bank.example",), False), (("localhost.example",), False)):
        cert, _ = certificates._new_server(ca, ca_key, names, (), now)  # type: ignore[arg-type]
        path = tmp_path / f"{names[0]}.pem"
        path.write_bytes(cert.public_bytes(certificates.serialization.Encoding.PEM))
        result = subprocess.run(
            ["openssl", "verify", "-CAfile", str(certs.ca), str(path)], capture_output=True, text=True, check=False
        )
        assert (result.returncode == 0) is verifies, (names, result.stdout, result.stderr)
        if not verifies:
            assert "permitted subtree violation" in result.stdout + result.stderr

    with pytest.raises(ValueError, match="loopback names only"):
        certs.ensure(("hosp.example.org",), IP_ADDRESSES)


# --- plain HTTP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
@pytest.mark.parametrize(
    "target",
    ["/", "/hospitals", "/notes?patient_id=1&x", "/a%2Fb/caf%C3%A9?q=%20%26&q=2", f"/hospitals?{LONG_QUERY}"],
    ids=["root", "path", "query", "encoded", "long-query"],
)
def test_plain_http_is_moved_to_https_with_path_and_query_kept(
    edge: LocalEdge, fresh_origin: RecordingServer, method: str, target: str
) -> None:
    answer = requests.request(
        method, edge.http_url + target, headers={"Host": f"{NEW_NAME}:{edge.http_port}"}, allow_redirects=False,
        timeout=10,
    )  # fmt: skip

    assert answer.status_code == 301
    assert answer.headers["Location"] == f"https://{NEW_NAME}:{edge.port}{target}"
    assert fresh_origin.received == []


@pytest.mark.parametrize(
    ("host", "to"),
    [(OLD_NAME, OLD_NAME), ("127.0.0.1", "127.0.0.1"), ("elsewhere.example", NEW_NAME), (None, NEW_NAME)],
)
def test_plain_http_keeps_a_local_name_and_sends_any_other_to_the_new_one(
    edge: LocalEdge, host: str | None, to: str
) -> None:
    with socket.create_connection(("127.0.0.1", edge.http_port), timeout=10) as plain:
        host_line = f"Host: {host}\r\n" if host else ""
        plain.sendall(f"GET /x?y=1 HTTP/1.{1 if host else 0}\r\n{host_line}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := plain.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 301 ")
    assert f"\r\nLocation: https://{to}:{edge.port}/x?y=1\r\n".encode() in answer


# --- the old name -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", SAFE_METHODS + UNSAFE_METHODS)
def test_the_old_name_is_redirected_301_for_get_and_head_and_308_for_the_rest(
    edge: LocalEdge, fresh_origin: RecordingServer, method: str
) -> None:
    body = b'{"patient_id": 1}' if method in ("POST", "PUT", "PATCH") else None
    target = "/notes?patient_id=1&flag=&&patient_id=2&x"
    status, headers, _ = edge.request(method, target, name=OLD_NAME, body=body)

    assert status == (301 if method in SAFE_METHODS else 308)
    assert headers["Location"] == f"https://{NEW_NAME}:{edge.port}{target}"
    assert headers["Cache-Control"] == "max-age=3600"  # the function's own header
    assert fresh_origin.received == []  # answered at the edge


@pytest.mark.parametrize(
    ("target", "location"),
    [
        (b"/caf\xc3\xa9/\xc5\x81ukasz?name=\xc3\x96", "/caf%C3%A9/%C5%81ukasz?name=%C3%96"),  # raw UTF-8
        (b"/caf%C3%A9/a%2Fb?q=%C3%A9%20%26%3D", "/caf%C3%A9/a%2Fb?q=%C3%A9%20%26%3D"),  # kept as sent
        (b"/bytes/\xff\xfe?x=\xff", "/bytes/%FF%FE?x=%FF"),  # not UTF-8
        (b"/notes", "/notes"),  # no "?": none
        (b"/notes?", "/notes?"),  # a "?" with nothing after it: kept
        (b"/notes?a=&b", "/notes?a=&b"),
        (b"/notes?&&", "/notes?&&"),
        (b"/notes?a=1&b=2&a=3", "/notes?a=1&b=2&a=3"),
        (b"/notes?tag=x&tag=y&flag&a=", "/notes?tag=x&tag=y&flag&a="),
        (b"/notes??x=1;y&=v", "/notes??x=1;y&=v"),
        (b"/notes?next=%0d%0aSet-Cookie:%20x=1", "/notes?next=%0d%0aSet-Cookie:%20x=1"),
        (b"/hospitals?" + LONG_QUERY.encode(), f"/hospitals?{LONG_QUERY}"),
        (b"//double/slash/", "//double/slash/"),
    ],
    ids=[
        "unicode", "percent-encoded", "not-utf8", "no-query", "empty-query", "empty-value-and-bare-key",
        "empty-pairs", "interleaved-keys", "repeated-keys", "question-mark-in-query", "encoded-crlf", "long-query",
        "double-slash",
    ],
)  # fmt: skip
def test_the_old_name_keeps_the_path_and_the_query(edge: LocalEdge, target: bytes, location: str) -> None:
    status, headers = get_raw(edge, target, name=OLD_NAME)

    assert status == 301
    assert headers["location"] == f"https://{NEW_NAME}:{edge.port}{location}"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_1500_keys_keep_their_order_exactly(edge: LocalEdge, method: str) -> None:
    """The query is the raw one, not rebuilt from the object njs lists in its hash order."""
    assert len(MANY_KEYS_QUERY) < 8192
    status, headers = get_raw(edge, b"/hospitals?" + MANY_KEYS_QUERY.encode(), name=OLD_NAME, method=method.encode())

    assert status == (301 if method == "GET" else 308)
    assert headers["location"] == f"https://{NEW_NAME}:{edge.port}/hospitals?{MANY_KEYS_QUERY}"


@pytest.mark.parametrize("host", [OLD_NAME.upper(), f"{OLD_NAME}.", OLD_NAME])
def test_the_old_name_is_recognised_in_any_case_and_with_a_final_dot(edge: LocalEdge, host: str) -> None:
    request = f"GET /hospitals HTTP/1.1\r\nHost: {host}:{edge.port}\r\nConnection: close\r\n\r\n".encode()
    status, headers, _, _ = raw_request(edge, request, name=OLD_NAME)

    assert status == 301
    assert headers["location"] == f"https://{NEW_NAME}:{edge.port}/hospitals"


def node_answer(function: Path, request: dict[str, object]) -> dict[str, object]:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, MISSING_NODE
    event = {"version": "1.0", "context": {"eventType": "viewer-request"}, "viewer": {"ip": "127.0.0.1"},
             "request": request}  # fmt: skip
    done = subprocess.run(
        [node, str(NODE_HARNESS), str(function)], input=json.dumps(event), capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


@pytest.mark.parametrize(
    "case",
    [
        ("GET", "/caf%C3%A9", {"q": {"value": "%20"}}, "q=%20"),
        ("POST", "/notes", {"a": {"value": "1", "multiValue": [{"value": "1"}, {"value": "2"}]}}, "a=1&a=2"),
        ("PUT", "/notes", {"a": {"value": ""}, "b": {"value": ""}}, "a=&b"),
        ("GET", "/notes", {"a": {"value": "1", "multiValue": [{"value": "1"}, {"value": "3"}]}, "b": {"value": "2"}},
         "a=1&b=2&a=3"),
        ("HEAD", "/notes", {}, "&&"),
        ("PATCH", "/notes", {}, ""),
        ("DELETE", "/notes/9", {}, None),
    ],
    ids=["one", "multi-value", "empty-value-and-bare-key", "interleaved-keys", "empty-pairs", "empty-query",
         "no-query"],
)  # fmt: skip
def test_the_edge_answers_as_the_function_does_in_node(
    edge: LocalEdge, tmp_path: Path, case: tuple[str, str, dict[str, object], str | None]
) -> None:
    """The same file, in node (as the CloudFront tests run it, with runtime 2.0's
    rawQueryString()) and behind the edge: the same redirect, the query as sent."""
    method, uri, querystring, query = case
    function = tmp_path / "redirect.js"
    # The module the edge imports, without the export line node's script context cannot parse.
    module = (edge.run_dir / REDIRECT_MODULE).read_text()
    function.write_text(module[: module.rindex("// Added by local/edge")])
    host = {"value": edge.host(OLD_NAME)}
    expected = node_answer(function, {"method": method, "uri": uri, "querystring": querystring,
                                      "rawQueryString": query, "headers": {"host": host}, "cookies": {}})  # fmt: skip
    target = uri + ("" if query is None else f"?{query}")

    status, headers, _ = edge.request(method, target, name=OLD_NAME)

    assert status == expected["statusCode"]
    assert headers["Location"] == expected["headers"]["location"]["value"]  # type: ignore[index]
    assert headers["Location"] == f"https://{NEW_NAME}:{edge.port}{target}"


def test_the_function_runs_from_its_own_file_with_only_the_names_filled(edge: LocalEdge) -> None:
    original = cloudfront.REDIRECT_FUNCTION.read_text().splitlines()
    module = (edge.run_dir / REDIRECT_MODULE).read_text().splitlines()
    names = re.compile(r"^var (OLD_HOSTS|NEW_HOST) = ")

    assert [line for line in module if names.match(line)] == [
        f"var OLD_HOSTS = {json.dumps([OLD_NAME])};",
        f"var NEW_HOST = {json.dumps(edge.host())};",
    ]
    unchanged = [line for line in original if not names.match(line)]
    assert [line for line in module if not names.match(line)][: len(unchanged)] == unchanged
    assert module[len(original) :] == [
        "",
        "// Added by local/edge: the handler, for njs's import.",
        "export default { handler: handler };",
    ]


# --- the new name: passed on ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_the_new_name_passes_through_with_the_secret_and_the_viewer_address(
    edge: LocalEdge, fresh_origin: RecordingServer, method: str
) -> None:
    body = b'{"patient_id": 1, "text": "x"}'
    request = (
        f"{method} /notes/caf%C3%A9?patient_id=1&q=%20&q=2&flag HTTP/1.1\r\nHost: {edge.host()}\r\n"
        "X-Origin-Verify: forged-by-the-viewer\r\nCloudFront-Viewer-Address: 203.0.113.9:1\r\n"
        f"Authorization: {DEMO_AUTH['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    status, _, answer, client_port = raw_request(edge, request)

    assert (status, answer) == (200, RecordingServer.ANSWER)
    [received] = fresh_origin.received
    assert (received.method, received.path) == (method, "/notes/caf%C3%A9?patient_id=1&q=%20&q=2&flag")
    assert received.body == body
    assert received.headers["Host"] == edge.host()
    assert received.headers["Authorization"] == DEMO_AUTH["Authorization"]
    assert received.headers["X-Origin-Verify"] == edge.origin_secret
    assert received.headers["CloudFront-Viewer-Address"] == f"127.0.0.1:{client_port}"
    assert edge.origin_secret.encode() not in edge.access_log.read_bytes() + edge.error_log.read_bytes()


def test_a_raw_unicode_target_reaches_the_origin_byte_for_byte(edge: LocalEdge, fresh_origin: RecordingServer) -> None:
    target = b"/notes/caf\xc3\xa9?name=\xc5\x81ukasz&x=%2F"
    status, _ = get_raw(edge, target)

    assert status == 200
    assert fresh_origin.received[0].path.encode("latin-1") == target


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_other_names_of_the_certificate_pass_through_too(
    edge: LocalEdge, fresh_origin: RecordingServer, host: str
) -> None:
    status, _, _ = edge.request("GET", "/hospitals", name=host)

    assert status == 200
    assert fresh_origin.received[0].headers["Host"] == f"{host}:{edge.port}"


def test_http2_passes_the_host_and_adds_the_secret(edge: LocalEdge, fresh_origin: RecordingServer) -> None:
    done = curl("--http2", "--cacert", str(edge.certificates.ca), "-o", "/dev/null", "-w", "%{http_code}",
                f"{edge.https_url}/hospitals?a=1")  # fmt: skip

    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    [received] = fresh_origin.received
    assert (received.path, received.headers["Host"]) == ("/hospitals?a=1", edge.host())
    assert received.headers["X-Origin-Verify"] == edge.origin_secret


# --- response headers -------------------------------------------------------------------------------

EXPECTED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-XSS-Protection": "1; mode=block",
}


@pytest.mark.parametrize(
    ("name", "method", "target"),
    [(NEW_NAME, "GET", "/hospitals"), (OLD_NAME, "GET", "/hospitals"), (OLD_NAME, "POST", "/notes")],
    ids=["passed-on", "redirect-301", "redirect-308"],
)
def test_every_https_answer_carries_hsts_and_the_security_headers(
    edge: LocalEdge, name: str, method: str, target: str
) -> None:
    _, headers, _ = edge.request(method, target, name=name)

    hsts = headers["Strict-Transport-Security"]
    max_age = re.search(r"(?:^|;)\s*max-age=(\d+)\s*(?:;|$)", hsts)
    assert max_age, hsts
    assert int(max_age[1]) >= 31536000
    assert "includesubdomains" in [part.strip().lower() for part in hsts.split(";")]
    for header, value in EXPECTED_HEADERS.items():
        assert headers.get_all(header) == [value], header
    # Every header of distribution.yaml's policy, each once.
    for policy_header in cloudfront.distribution().headers:
        assert headers.get_all(policy_header.name) == [policy_header.value]


def test_the_policy_headers_replace_the_origins_own(tmp_path: Path) -> None:
    """Override: true in the policy: the origin's X-Frame-Options is hidden, the policy's sent."""

    class OwnHeaders(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("X-Frame-Options", "ALLOWALL")
            self.send_header("Strict-Transport-Security", "max-age=0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OwnHeaders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        with LocalEdge(origin=address, run_dir=tmp_path, origin_secret=new_origin_secret()) as edge:
            status, headers, _ = edge.request("GET", "/")
    finally:
        server.shutdown()
        server.server_close()

    assert status == 200
    assert headers.get_all("X-Frame-Options") == ["DENY"]
    assert headers.get_all("Strict-Transport-Security") == ["max-age=31536000; includeSubDomains"]


# --- the secret, enforced by a proxy rendered with it ---------------------------------------------------


class Guarded(NamedTuple):
    edge: LocalEdge
    proxy: NginxProxy


@pytest.fixture(scope="module")
def guarded(hosp: Hosp, origin: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """The edge in front of the real proxy, which accepts only the secret in the edge's secret file."""
    proxy_port = free_port()
    edge = LocalEdge(
        origin=f"127.0.0.1:{proxy_port}", run_dir=tmp_path_factory.mktemp("edge"), origin_secret=new_origin_secret()
    )
    edge.render()  # writes the secret file, which the proxy reads as render.py --origin-secret-file does
    secrets = render.read_origin_secrets(edge.secret_path)
    assert secrets == (edge.origin_secret,)
    tuning = Tuning(keepalive_timeout=HOSP_IDLE_TIMEOUT / 2, access_log_buffer="off")
    with NginxProxy(
        hosp.address, tmp_path_factory.mktemp("nginx"), port=proxy_port, tuning=tuning,
        interceptor=origin.address, origin_secrets=secrets,
    ) as proxy, edge:  # fmt: skip
        yield Guarded(edge, proxy)


def test_render_py_takes_the_edges_secret_file(guarded: Guarded, tmp_path: Path) -> None:
    output = tmp_path / "nginx.conf"
    done = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "nginx" / "render.py"), "--upstream", "127.0.0.1:9000",
         "--run-dir", str(tmp_path), "--output", str(output), "--origin-secret-file", str(guarded.edge.secret_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "origin header checked" in done.stdout
    assert guarded.edge.origin_secret in output.read_text()


def test_through_the_edge_the_proxy_answers_and_directly_it_refuses(guarded: Guarded, fresh_hosp: Hosp) -> None:
    edge, proxy = guarded

    through_edge, _, body = edge.request("GET", "/hospitals", headers=DEMO_AUTH)
    direct = requests.get(f"{proxy.url}/hospitals", headers=DEMO_AUTH, timeout=10)
    wrong = requests.get(
        f"{proxy.url}/hospitals", headers={**DEMO_AUTH, "X-Origin-Verify": new_origin_secret()}, timeout=10
    )

    assert through_edge == 200, body
    assert isinstance(json.loads(body), list)
    assert fresh_hosp.received() == 1  # only the request through the edge reached HOSP
    for refused in (direct, wrong):
        assert refused.status_code == 403
        assert refused.json()["error"] == "missing or wrong origin header"


def test_through_the_edge_hosps_links_are_https_on_the_edges_name_and_port(guarded: Guarded) -> None:
    """HOSP builds its links from the forwarding headers (a Rails app: X-Forwarded-Proto, then
    Host): behind the edge they must be followable, https on the name and port the viewer used."""
    status, _, body = guarded.edge.request("GET", "/hospitals", headers=DEMO_AUTH)

    assert status == 200, body
    urls = [hospital["url"] for hospital in json.loads(body)]
    assert urls
    assert all(url.startswith(f"https://{NEW_NAME}:{guarded.edge.port}/hospitals/") for url in urls), urls


def test_the_edges_redirects_need_no_origin(guarded: Guarded, fresh_hosp: Hosp) -> None:
    status, headers, _ = guarded.edge.request("POST", "/notes", name=OLD_NAME, body=b"{}")

    assert status == 308
    assert headers["Location"] == f"https://{NEW_NAME}:{guarded.edge.port}/notes"
    assert fresh_hosp.received() == 0
