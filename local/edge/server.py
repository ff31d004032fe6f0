"""The local edge as a server: its configuration rendered, checked with `nginx -t`, and NGINX run.

    edge = LocalEdge(origin="127.0.0.1:8080", run_dir=Path(".local/edge"), origin_secret=new_origin_secret())
    with edge:
        ...  # https://hosp.localhost:8443, trusted with --cacert edge.certificates.ca

Its own NGINX process, configuration, pid file and logs, all in `run_dir`,
beside the CA and the certificates.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from infra.nginx import render
from local.edge import cloudfront
from local.edge.certificates import PRIVATE, EdgeCertificates
from local.nginx_proxy import NginxError, NginxProcess, unprivileged_user
from local.processes import free_port

TEMPLATES = Path(__file__).resolve().parent / "templates"
NJS_DIR = Path(__file__).resolve().parent / "njs"
REDIRECT_MODULE = "cloudfront_redirect.js"  # the name viewer_request.js imports
# The local names: *.localhost is loopback to curl and browsers (RFC 6761), and
# no one else's name, so an HSTS a browser keeps for them harms nothing else.
NEW_NAME = "hosp.localhost"
OLD_NAME = "old-hosp.localhost"
EXTRA_DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1",)
HTTPS_PORT = 8443
HTTP_PORT = 8088
# As CloudFront's origin secret (distribution.yaml): 48 characters of A-Z, a-z, 0-9,
# which render.py --origin-secret-file accepts.
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRET_LENGTH = 48
REQUEST_TIMEOUT = 10.0


def new_origin_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def write_private(path: Path, text: str) -> None:
    """`text` in a file only its owner may read, whatever the umask and whatever was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    os.fchmod(descriptor, PRIVATE)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


@dataclass
class LocalEdge(NginxProcess):
    """One NGINX playing CloudFront: HTTPS on `port`, plain HTTP on `http_port`, in front of `origin`."""

    origin: str  # HOST:PORT of the proxy's public listener
    run_dir: Path
    origin_secret: str = field(repr=False)
    port: int = 0  # HTTPS; 0: a free port
    http_port: int = 0  # plain HTTP, answered with 301 to HTTPS; 0: a free port
    new_name: str = NEW_NAME
    old_names: tuple[str, ...] = (OLD_NAME,)
    modules: tuple[str, ...] = (render.DEBIAN_NJS_MODULE,)
    WORKER_TEMP_PREFIX = "hosp-edge-"

    @property
    def listen_ports(self) -> tuple[int, ...]:
        return (self.port, self.http_port)

    @property
    def certificates(self) -> EdgeCertificates:
        return EdgeCertificates(self.run_dir)

    @property
    def secret_path(self) -> Path:
        """The origin secret, one line, as render.py --origin-secret-file reads it."""
        return self.run_dir / "origin-secret"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "access.log"

    @property
    def https_url(self) -> str:
        return f"https://{self.new_name}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def host(self, name: str | None = None) -> str:
        """The Host a viewer sends for `name` (the new name by default) on the HTTPS port."""
        return f"{name or self.new_name}:{self.port}"

    def dns_names(self) -> tuple[str, ...]:
        return (self.new_name, *self.old_names, *EXTRA_DNS_NAMES)

    def values(self) -> dict[str, str]:
        source = cloudfront.distribution()
        https_suffix = "" if self.port == 443 else f":{self.port}"
        running_as_root = os.geteuid() == 0
        return {
            "njs_module": render.DEBIAN_NJS_MODULE,
            "njs_dir": str(NJS_DIR),
            "run_dir": str(self.run_dir),
            "pid_path": str(self.run_dir / "nginx.pid"),
            "error_log": str(self.error_log),
            "access_log": str(self.access_log),
            "user": " ".join(unprivileged_user()) if running_as_root else "",
            "temp_dir": str(self._temp_dir()),
            "new_name": self.new_name,
            "https_listen": self.address,
            "http_listen": f"127.0.0.1:{self.http_port}",
            "https_port_suffix": https_suffix,
            "certificate": str(self.certificates.certificate),
            "certificate_key": str(self.certificates.key),
            "security_policy": source.security_policy,
            "ssl_protocols": " ".join(source.protocols),
            "ssl_ciphers": ":".join(source.ciphers),
            "origin": self.origin,
            "origin_secret": self.origin_secret,
            "origin_read_timeout": str(source.origin_read_timeout),
            "origin_keepalive_timeout": str(source.origin_keepalive_timeout),
        }

    def render(self) -> None:
        """The certificates (where needed), the function module, the secret file and nginx.conf."""
        if not render.ORIGIN_SECRET.fullmatch(self.origin_secret):
            raise NginxError("the origin secret must be 32 or more characters of A-Z, a-z, 0-9, _ and -")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.certificates.ensure(self.dns_names(), IP_ADDRESSES)
        new_host = self.new_name if self.port == 443 else self.host()
        module = cloudfront.redirect_module(list(self.old_names), new_host)
        (self.run_dir / REDIRECT_MODULE).write_text(module, encoding="utf-8")
        write_private(self.secret_path, self.origin_secret + "\n")
        copies = {"optional/worker-user.conf": int(os.geteuid() == 0)}
        self._write_generated()
        text = render.render_template(TEMPLATES / "nginx.conf", self.values(), copies, search=[self.run_dir])
        write_private(self.config_path, text)  # the secret is in it

    def _write_generated(self) -> None:
        """The parts of the configuration made from distribution.yaml and the names, as files to include."""
        source = cloudfront.distribution()
        names = dict.fromkeys(name.lower() for name in (*self.dns_names(), *IP_ADDRESSES))
        generated = {
            "security-headers.conf": _security_headers(source),
            "security-header-maps.conf": _security_header_maps(source),
            "https-host-names.conf": "\n".join(f"{name} {name};" for name in names),
        }
        directory = self.run_dir / "generated"
        directory.mkdir(exist_ok=True)
        for name, text in generated.items():
            (directory / name).write_text(f"# Generated by local/edge/server.py.\n{text}\n")

    def _pick_ports(self) -> None:
        self.port = self.port or free_port()
        self.http_port = self.http_port or free_port()

    def healthy(self) -> bool:
        """Both listeners accept connections and TLS completes with a certificate the local CA signed."""
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                pass
            with self.tls_connection(self.new_name, timeout=1):
                return True
        except (OSError, ssl.SSLError):
            return False

    # --- a client that trusts the local CA ----------------------------------------------------------

    def client_context(self) -> ssl.SSLContext:
        """Verifies the edge's certificate against the local CA, and the name, like curl --cacert."""
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def tls_connection(self, name: str, timeout: float = REQUEST_TIMEOUT) -> ssl.SSLSocket:
        """A TLS connection to the HTTPS port, for `name` (SNI and the certificate check)."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            return self.client_context().wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise

    def request(
        self,
        method: str,
        target: str,
        name: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One HTTPS request for `name` (the new name by default): (status, headers, body). `target` is ASCII.

        Connects to 127.0.0.1 itself: few resolvers other than curl's and the
        browsers' know that *.localhost is loopback.
        """
        name = name or self.new_name
        connection = _Connection(self, name)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", self.host(name))
            for key, value in (headers or {}).items():
                connection.putheader(key, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            answer = connection.getresponse()
            return answer.status, answer.headers, answer.read()
        finally:
            connection.close()

    def _temp_dir(self) -> Path:
        return self._worker_temp_dir() if os.geteuid() == 0 else self.run_dir / "tmp"


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the edge on 127.0.0.1 for a name (SNI and certificate check), whatever the resolver knows."""

    def __init__(self, edge: LocalEdge, name: str) -> None:
        super().__init__("127.0.0.1", edge.port, timeout=REQUEST_TIMEOUT, context=edge.client_context())
        self._edge = edge
        self._name = name

    def connect(self) -> None:
        self.sock = self._edge.tls_connection(self._name, timeout=REQUEST_TIMEOUT)


def _security_headers(source: cloudfront.Distribution) -> str:
    lines = []
    for header in source.headers:
        if header.override:
            lines.append(f"proxy_hide_header {header.name};")
            lines.append(f'add_header {header.name} "{header.value}" always;')
        else:
            lines.append(f"add_header {header.name} $hosp_edge_{_variable(header.name)} always;")
    lines += [f"proxy_hide_header {name};" for name in source.removed_headers]
    return "\n".join(lines)


def _security_header_maps(source: cloudfront.Distribution) -> str:
    maps = []
    for header in source.headers:
        if not header.override:
            variable = _variable(header.name)
            maps.append(
                f'map $upstream_http_{variable} $hosp_edge_{variable} {{\n    "" "{header.value}";\n    default "";\n}}'
            )
    return "\n".join(maps)


def _variable(header: str) -> str:
    return header.lower().replace("-", "_")
