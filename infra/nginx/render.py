"""Render the retry proxy's nginx.conf from the templates beside this file.

    python3 infra/nginx/render.py --variant local --upstream 127.0.0.1:9000 \
        --output /tmp/hosp-proxy/nginx.conf

Every NGINX directive lives in templates/; this script only chooses. It
inlines each `include NAME.conf;` (so the output is one self-contained file,
runnable with `nginx -c FILE`), decides how many copies of each included file
go in (the files under optional/ are in or out, the retry peer is repeated
once per retry), and then fills the `{{name}}` placeholders with values, in
one pass. Standard library only: the fleet's bootstrap (infra/ec2/bundle/) runs this script with the
system python3.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from secrets import token_hex

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The access log's njs script (logging.conf): NGINX reads it from here when it
# loads the configuration, so it ships with render.py (the EC2 proxy bundle).
NJS_DIR = Path(__file__).resolve().parent / "njs"
# The retry budget's Lua module (retry-policy.conf), read from beside this file too.
LUA_DIR = Path(__file__).resolve().parent / "lua"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
INCLUDE = re.compile(r"^(?P<indent>[ \t]*)include (?P<name>[\w./-]+\.conf);[ \t]*$", re.MULTILINE)
HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")

# The methods HOSP's API uses; the proxy answers any other with 405.
API_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# The first segments of HOSP's API paths (docs/hosp-api.yaml), every one of which HOSP
# answers only to credentials it accepts: a success on one makes a user name's
# credentials known to the retry budget (docs/proxy.md, "Who is a user").
AUTHENTICATED_API: tuple[str, ...] = ("hospitals", "patients", "staffs", "notes")
# The one request-body limit of the whole system (docs/proxy.md): the proxy
# refuses larger bodies with 413, and the HOSP stand-in accepts exactly this.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The longest client-supplied text the access log writes, in bytes of its
# escaped text (docs/access-log.md, "Client text"): longer text is cut there.
LOG_TEXT_LIMIT = 2048
# The proxy's slowest answer must come this much before CloudFront gives up.
ORIGIN_MARGIN = 5.0
# A screen's hand-off to the note intake (screen-locations.conf): its connect
# and answer timeouts. The nurse already has her answer; these bound how long
# her connection stays open after it, and how soon a failed hand-off is logged.
HANDOFF_CONNECT_TIMEOUT = 1.0
HANDOFF_TIMEOUT = 2.0
# The failed hand-offs' log, beside the access log.
HANDOFF_FAILED_LOG = "note-handoff-failed.json"
# Where the production variant finds the CA certificates (Debian 12, as the fleet runs).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# NGINX's dynamic modules, from Debian 12's packages everywhere: the tests, the
# local stack and the fleet install the same versions (infra/nginx/debian-packages.txt).
# The JavaScript module (libnginx-mod-http-js): the access log and the screens'
# hand-off. Lua (libnginx-mod-http-lua): the retry budget's counters, shared by
# the workers. set-misc (libnginx-mod-http-set-misc): the request id's MD5. Both
# need the development kit, libnginx-mod-http-ndk, loaded first.
MODULES_DIR = "/usr/lib/nginx/modules"
NGINX_MODULES = (
    "ndk_http_module.so",
    "ngx_http_set_misc_module.so",
    "ngx_http_lua_module.so",
    "ngx_http_js_module.so",
)
DEBIAN_NJS_MODULE = f"{MODULES_DIR}/ngx_http_js_module.so"
# CloudFront's secret origin header (origin-policy.conf): the values the public
# listener accepts, the current one and, during a rotation, the previous one.
# The alphabet and length of infra/cloudfront/distribution.yaml's OriginSecret,
# which also keep a value safe to write in a regular expression unescaped.
MAX_ORIGIN_SECRETS = 2
ORIGIN_SECRET = re.compile(r"[A-Za-z0-9_-]{32,}")
# The names the public listener answers (host-policy.conf): lowercase DNS
# names, each label 1-63 letters, digits and hyphens, not starting or ending
# with a hyphen, 253 characters at most, no final dot. They are written in a
# regular expression with only their dots escaped.
DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
PUBLIC_NAME = re.compile(rf"(?=.{{1,253}}\Z){DNS_LABEL}(?:\.{DNS_LABEL})*")
# The scheme and port HOSP and the app are told the viewer used
# (forwarded-headers.conf), never the client's own X-Forwarded-*. With public
# names (production) both listeners are reached only through a load balancer's
# HTTPS listener on 443: the public one by CloudFront's VPC origin, the internal
# one by the Lambdas (the network stack's HospBaseUrl is https). Without them
# (local), the listener's own port, and its scheme unless the local edge says
# the viewer used https (proxy.conf's $hosp_viewer_scheme).
VIEWER_SCHEME, VIEWER_PORT = "https", "443"
LISTENER_SCHEME, LISTENER_PORT = "$hosp_viewer_scheme", "$server_port"


PRODUCTION_NEEDS = (
    "the production variant needs --public-name (at least one) and --origin-secret-file: in production the "
    "public listener always checks both CloudFront's secret origin header and the Host (docs/proxy.md)"
)


class RenderError(ValueError):
    """The settings cannot make a valid configuration."""


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How the proxy behaves, the same in every variant; times are in seconds.

    These defaults are the only ones: the command line shows and takes them.
    """

    tries: int = 3
    connect_timeout: float = 2.0
    try_timeout: float = 10.0
    deadline: float = 30.0
    write_timeout: float = 50.0
    keepalive_timeout: float = 15.0
    client_timeout: float = 10.0
    origin_timeout: float = 60.0
    # API Gateway gives up on the app after 29 s.
    interceptor_timeout: float = 30.0
    access_log_buffer: str = "64k"
    # auto: one worker per core, NGINX's own advice (docs/benchmarks.md has what one worker changes).
    worker_processes: str = "auto"
    host_header: str = "$http_host"
    # The retry budget (docs/proxy.md): retry attempts per first attempt, plus
    # a floor per second, over a window; each user gets the ratio of its own
    # traffic and an equal share of the floor. 0.3 lets every retry of a 20%
    # failure rate through (0.24 attempts per request with 3 tries) at any
    # traffic, and bounds a full outage at 1.3 attempts per request + the floor.
    retry_budget_ratio: float = 0.3
    retry_budget_floor: float = 10.0
    retry_budget_window: float = 10.0
    retry_budget_memory: str = "10m"
    # A Basic user name is a user of its own in the budget once HOSP has
    # answered one of its requests on its API with a success, for about this
    # long after the last one (a shift and more); until then its requests
    # count as their address's, so that made-up names share one user's part
    # (docs/proxy.md, "Who is a user").
    retry_budget_known_for: float = 43200.0
    # The largest write body whose patient_id the access log reads; bodies up
    # to it stay in NGINX's memory (docs/access-log.md).
    body_scan_limit: int = 1024 * 1024


TUNING_HELP: dict[str, str] = {
    "tries": "attempts per retryable request, the first included",
    "connect_timeout": "seconds to connect to HOSP",
    "try_timeout": "seconds one retryable attempt may wait for HOSP",
    "deadline": "seconds after which no retry starts",
    "write_timeout": "seconds a request that is not retried (POST, PATCH, DELETE) may wait for HOSP",
    "keepalive_timeout": "idle upstream connection lifetime; below HOSP's own idle timeout",
    "client_timeout": "longest silence allowed from a client: header, each body read, each answer write",
    "origin_timeout": "the seconds CloudFront waits for this proxy; the slowest answer must fit in it",
    "interceptor_timeout": "seconds the Chalice app (the audit trail's API) may take to answer",
    "access_log_buffer": "access log buffer size (lines written within 1 s), or off",
    "worker_processes": "NGINX worker processes: auto (one per core) or a number",
    "host_header": "Host sent to HOSP, which builds its links from it; $http_host is the client's, port included",
    "retry_budget_ratio": "retry attempts allowed per first attempt, over the budget's window",
    "retry_budget_floor": "retry attempts allowed per second whatever the traffic, shared equally by the users",
    "retry_budget_window": "seconds over which the budget counts first attempts and retries",
    "retry_budget_memory": "shared memory for the budget's counters (about 1.5 KiB per user asking)",
    "retry_budget_known_for": "seconds a name stays a budget user after HOSP last answered its credentials 2xx",
    "body_scan_limit": "bytes: the largest write body kept in memory and read for the access log's body_patient_id",
}


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    """Where this NGINX runs (paths, user, limits) and how it behaves (tuning)."""

    variant: str
    upstream: str
    listen: str
    internal_listen: str  # the Lambdas' listener (docs/screen.md)
    interceptor: str  # HOST:PORT of the screen interceptor
    interceptor_tls: bool  # HTTPS to the interceptor (API Gateway), with its certificate checked
    interceptor_prefix: str  # path before /patients/..., e.g. API Gateway's stage "/api"
    ca_bundle: str  # CA certificates that check the interceptor's; "" without TLS
    modules_dir: str  # where load_module finds NGINX_MODULES
    access_log: str
    error_log: str
    pid_path: str
    temp_dir: str | None  # None: the distribution's own temp paths
    user: str | None = None  # None: no user directive (NGINX started by an ordinary user)
    max_open_files: int | None = None  # None: the system's limit
    # The accepted X-Origin-Verify values, current first; (): no check (the local default).
    origin_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    # What the request ids are drawn from besides the request (server-common.conf):
    # random, a new one each render, and secret like the origin's.
    request_id_salt: str = dataclasses.field(default_factory=lambda: token_hex(16), repr=False, compare=False)
    # The Host names the public listener answers, the new domain first; (): any (the local default).
    public_names: tuple[str, ...] = ()
    tuning: Tuning = Tuning()

    @classmethod
    def for_variant(
        cls, variant: str, upstream: str, run_dir: Path, tuning: Tuning = Tuning(), **changes: object
    ) -> ProxySettings:
        """The variant's paths and limits, with `changes` (e.g. listen=, user=) applied."""
        if variant == "local":
            base = cls(
                variant,
                upstream,
                listen="127.0.0.1:8080",
                internal_listen="127.0.0.1:8081",
                interceptor="127.0.0.1:8000",
                interceptor_tls=False,
                interceptor_prefix="",
                ca_bundle="",
                modules_dir=MODULES_DIR,
                access_log=str(run_dir / "access.json"),
                error_log=str(run_dir / "error.log"),
                pid_path=str(run_dir / "nginx.pid"),
                temp_dir=str(run_dir / "tmp"),
                tuning=tuning,
            )
        elif variant == "production":
            base = cls(
                variant,
                upstream,
                listen="80",
                internal_listen="8081",
                interceptor="",  # required: API Gateway's host name, :443
                interceptor_tls=True,
                interceptor_prefix="/api",
                ca_bundle=SYSTEM_CA_BUNDLE,
                modules_dir=MODULES_DIR,
                access_log="/var/log/hosp-proxy/access.json",
                error_log="/var/log/hosp-proxy/error.log",
                pid_path="/run/nginx.pid",
                temp_dir=None,
                max_open_files=16384,
                tuning=tuning,
            )
        else:
            raise RenderError(f"unknown variant {variant!r}: use 'local' or 'production'")
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def worst_case(t: Tuning) -> float:
    """Seconds the slowest answer can take, over every method (docs/proxy.md).

    Retryable: each attempt waits at most connect + try; the retries start
    after the first attempt and none starts once deadline - try has passed
    since, so the last one ends by deadline + 2 x connect + try. Not retried:
    connect + write. An audit request: connect + the app's timeout. A screen
    is retryable (its hand-off to the note intake starts once the nurse has
    her answer, and does not count). The request body is buffered by NGINX first and goes to HOSP over the
    internal network, so its sending is not counted.
    """
    attempt = t.connect_timeout + t.try_timeout
    retryable = attempt if t.tries == 1 else min(t.tries * attempt, t.deadline + t.connect_timeout + attempt)
    return max(retryable, t.connect_timeout + t.write_timeout, t.connect_timeout + t.interceptor_timeout)


def validate(s: ProxySettings) -> None:
    t = s.tuning
    if not HOST_PORT.match(s.upstream):
        raise RenderError(f"upstream must be HOST:PORT (a DNS name or an address), got {s.upstream!r}")
    if not HOST_PORT.match(s.interceptor):
        raise RenderError(f"interceptor must be HOST:PORT (API Gateway's host name:443), got {s.interceptor!r}")
    if _port(s.listen) == _port(s.internal_listen):
        raise RenderError(
            f"the public and internal listeners need different ports, got {s.listen} and {s.internal_listen}"
        )
    if s.interceptor_tls and not s.ca_bundle:
        raise RenderError("HTTPS to the interceptor needs a CA bundle to check its certificate")
    if s.interceptor_prefix and not re.fullmatch(r"(/[A-Za-z0-9_-]+)+", s.interceptor_prefix):
        raise RenderError(f"interceptor prefix must be a path like /api, got {s.interceptor_prefix!r}")
    if not 1 <= t.tries <= 10:
        raise RenderError(f"tries must be between 1 and 10, got {t.tries}")
    for field in dataclasses.fields(Tuning):
        if (field.name.endswith("_timeout") or field.name == "deadline") and getattr(t, field.name) <= 0:
            raise RenderError(f"{field.name} must be positive")
    # NGINX reads a proxy_next_upstream_timeout of 0 as "no limit".
    if t.tries > 1 and round((t.deadline - t.try_timeout) * 1000) < 1:
        raise RenderError("deadline must be longer than one try's timeout (it bounds when retries may start)")
    _validate_workers(t)
    _validate_logging(t)
    _validate_origin_secrets(s.origin_secrets)
    _validate_public_names(s.public_names, t.host_header)
    _validate_budget(t)
    slowest = worst_case(t)
    if slowest + ORIGIN_MARGIN > t.origin_timeout:
        raise RenderError(
            f"the slowest answer can take {slowest:g} s, which with a {ORIGIN_MARGIN:g} s margin exceeds the "
            f"origin timeout of {t.origin_timeout:g} s: CloudFront would give up first. Lower write_timeout, "
            "deadline, tries or the timeouts per try (docs/proxy.md, 'Timeouts and the deadline')"
        )
    if s.variant == "production" and not (s.public_names and s.origin_secrets):
        raise RenderError(PRODUCTION_NEEDS)


def copies(s: ProxySettings) -> dict[str, int]:
    """How many copies of each included file go in; a file not listed goes in once."""
    retrying = s.tuning.tries > 1
    buffered = s.tuning.access_log_buffer != "off"
    return {
        "optional/worker-user.conf": int(s.user is not None),
        "optional/open-file-limit.conf": int(s.max_open_files is not None),
        "optional/temp-paths.conf": int(s.temp_dir is not None),
        "optional/access-log-buffered.conf": int(buffered),
        "optional/access-log-unbuffered.conf": int(not buffered),
        "optional/retry-on-failure.conf": int(retrying),
        "optional/retry-location.conf": int(retrying),
        "optional/retries-off.conf": int(not retrying),
        "optional/interceptor-tls.conf": int(s.interceptor_tls),
        "optional/origin-secret-current.conf": int(len(s.origin_secrets) >= 1),
        "optional/origin-secret-previous.conf": int(len(s.origin_secrets) >= 2),
        "optional/origin-open.conf": int(not s.origin_secrets),
        "optional/public-names.conf": int(bool(s.public_names)),
        "optional/public-names-checked.conf": int(bool(s.public_names)),
        "optional/public-host.conf": int(bool(s.public_names)),
        "hosp-retry-peer.conf": _retry_peers(s.tuning),
    }


def values(s: ProxySettings) -> dict[str, str]:
    """The value of every placeholder the templates may hold."""
    t = s.tuning
    secrets = (*s.origin_secrets, "", "")
    return {
        "variant": s.variant,
        "upstream": s.upstream,
        "listen": s.listen,
        "internal_listen": s.internal_listen,
        "internal_port": _port(s.internal_listen),
        "interceptor": s.interceptor,
        "interceptor_host": s.interceptor.rsplit(":", 1)[0],
        "interceptor_scheme": "https" if s.interceptor_tls else "http",
        "interceptor_prefix": s.interceptor_prefix,
        "interceptor_timeout": _ms(t.interceptor_timeout),
        "trusted_certificates": s.ca_bundle,
        "load_modules": "\n".join(f"load_module {s.modules_dir}/{name};" for name in NGINX_MODULES),
        "request_id_salt": s.request_id_salt,
        "origin_secret_current": secrets[0],
        "origin_secret_previous": secrets[1],
        "public_names_regex": "|".join(name.replace(".", r"\.") for name in s.public_names),
        "njs_dir": str(NJS_DIR),
        "body_scan_limit": str(t.body_scan_limit),
        "log_text_limit": str(LOG_TEXT_LIMIT),
        "access_log": s.access_log,
        "handoff_failed_log": str(Path(s.access_log).with_name(HANDOFF_FAILED_LOG)),
        "handoff_connect_timeout": _ms(HANDOFF_CONNECT_TIMEOUT),
        "handoff_timeout": _ms(HANDOFF_TIMEOUT),
        "error_log": s.error_log,
        "pid_path": s.pid_path,
        "temp_dir": s.temp_dir or "",
        "user": s.user or "",
        "max_open_files": str(s.max_open_files or ""),
        "access_log_buffer": t.access_log_buffer,
        "worker_processes": t.worker_processes,
        # With public names, HOSP's Host is the name matched (optional/public-host.conf).
        "host_header": "$hosp_public_host_header" if s.public_names else t.host_header,
        "forwarded_proto": VIEWER_SCHEME if s.public_names else LISTENER_SCHEME,
        "forwarded_port": VIEWER_PORT if s.public_names else LISTENER_PORT,
        "tries": str(t.tries),
        "retry_tries": str(t.tries - 1),
        "peers": str(_retry_peers(t)),
        "keepalive_timeout": _ms(t.keepalive_timeout),
        "connect_timeout": _ms(t.connect_timeout),
        "try_timeout": _ms(t.try_timeout),
        "write_timeout": _ms(t.write_timeout),
        "client_timeout": _ms(t.client_timeout),
        "retry_window": _ms(t.deadline - t.try_timeout),
        "budget_ratio": f"{t.retry_budget_ratio:g}",
        "budget_floor": f"{t.retry_budget_floor:g}",
        "budget_window": f"{t.retry_budget_window:g}",
        "budget_memory": t.retry_budget_memory,
        "budget_known_for": f"{t.retry_budget_known_for:g}",
        # CloudFront-Viewer-Address is CloudFront's only where the origin header is checked
        # (the public listener, with origin secrets).
        "budget_viewer_header": "true" if s.origin_secrets else "false",
        "api_paths": "|".join(AUTHENTICATED_API),
        "lua_dir": str(LUA_DIR),
        "max_body_bytes": str(MAX_BODY_BYTES),
        "api_methods": ", ".join(API_METHODS),
    }


def render(s: ProxySettings) -> str:
    validate(s)
    return render_template(TEMPLATES / "nginx.conf", values(s), copies(s))


def render_template(
    path: Path, values: Mapping[str, str], copies: Mapping[str, int] | None = None, search: Iterable[Path] = ()
) -> str:
    """A template with its includes inlined and its placeholders filled.

    Includes are looked up beside `path`, then in `search`, then in TEMPLATES.
    Also used for the benchmark's configurations, so the project has one
    template mechanism.
    """
    directories = [path.parent, *search, TEMPLATES]
    return fill(_inline(path.read_text(), directories, copies or {}), values)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Every {{name}} replaced by values[name]; a name without a value is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise RenderError(f"template placeholder {{{{{name}}}}} has no value")
        return values[name]

    return PLACEHOLDER.sub(value, text)


def write(s: ProxySettings, output: Path) -> None:
    """Render to `output`, creating the directories the configuration names."""
    text = render(s)
    output.parent.mkdir(parents=True, exist_ok=True)
    if s.temp_dir:
        Path(s.temp_dir).mkdir(parents=True, exist_ok=True)
    for log in (s.access_log, s.error_log):
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    if not s.origin_secrets:
        output.write_text(text)
        return
    # The origin secrets are in it: readable by its owner only (root in
    # production, whose NGINX master reads it; the workers do not).
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def read_origin_secrets(path: Path) -> tuple[str, ...]:
    """The accepted origin secrets from a file: one a line, the current one first.

    Errors never quote a value. A file without any value is refused: an
    --origin-secret-file that turned the check off would open the origin.
    """
    try:
        lines = tuple(path.read_text().splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"cannot read the origin secret file {path}: {exc.__class__.__name__}") from exc
    if not lines:
        raise RenderError(f"the origin secret file {path} holds no value")
    _validate_origin_secrets(lines)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.variant == "production" and not (args.public_name and args.origin_secret_file is not None):
        parser.error(PRODUCTION_NEEDS)  # exits 2
    tuning = Tuning(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Tuning)})
    names = (
        "listen",
        "internal_listen",
        "interceptor",
        "interceptor_prefix",
        "ca_bundle",
        "modules_dir",
        "access_log",
        "error_log",
        "user",
    )
    paths: dict[str, object] = {name: getattr(args, name) for name in names}
    if args.public_name:
        paths["public_names"] = tuple(args.public_name)
    try:
        if args.origin_secret_file is not None:
            paths["origin_secrets"] = read_origin_secrets(Path(args.origin_secret_file))
        settings = ProxySettings.for_variant(
            args.variant,
            args.upstream,
            Path(args.run_dir).resolve(),
            tuning,
            **{name: value for name, value in paths.items() if value is not None},
        )
        write(settings, Path(args.output))
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output} ({settings.variant}: {settings.listen} -> {settings.upstream}, {tuning.tries} tries; "
        f"screens -> {settings.interceptor}; internal {settings.internal_listen}; "
        f"origin header {'checked' if settings.origin_secrets else 'not checked'}; "
        f"public names {', '.join(settings.public_names) if settings.public_names else 'not checked'})"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Render the HOSP retry proxy's nginx.conf.")
    p.add_argument("--variant", choices=("local", "production"), default="local")
    p.add_argument("--upstream", required=True, help="HOSP as HOST:PORT; HOST may be a DNS name")
    p.add_argument("--output", required=True, help="file to write")
    p.add_argument("--listen", help="listen address (local: 127.0.0.1:8080, production: 80)")
    p.add_argument("--internal-listen", help="the Lambdas' listen address (local: 127.0.0.1:8081, production: 8081)")
    p.add_argument("--interceptor", help="screen interceptor as HOST:PORT (production: API Gateway's host name:443)")
    p.add_argument("--interceptor-prefix", help="path before /patients/... at the interceptor (production: /api)")
    p.add_argument("--ca-bundle", help=f"CA certificates for the interceptor's TLS (production: {SYSTEM_CA_BUNDLE})")
    p.add_argument(
        "--modules-dir", help=f"where NGINX's modules are ({', '.join(NGINX_MODULES)}; default: {MODULES_DIR})"
    )
    p.add_argument("--access-log", help="JSON access log path")
    p.add_argument("--error-log", help="error log path")
    p.add_argument("--run-dir", default=".local/nginx", help="local variant: pid, temp files and default logs")
    p.add_argument("--user", help="worker user (production: the distribution's nginx user)")
    p.add_argument(
        "--origin-secret-file",
        help="file of the X-Origin-Verify values the public listener accepts, one a line: the current one, then "
        "the previous one during a rotation; the output is then readable by its owner only (default: no check)",
    )
    p.add_argument(
        "--public-name",
        action="append",
        metavar="NAME",
        help="a Host name the public listener answers, lowercase (repeat for each; the new domain first); any "
        "other gets 421, and HOSP gets the name matched as Host, with X-Forwarded-Proto https and X-Forwarded-Port "
        "443 on both listeners. Required in production (default: any name; the listener's own scheme and port)",
    )
    defaults = Tuning()
    for field in dataclasses.fields(Tuning):
        default = getattr(defaults, field.name)
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{TUNING_HELP[field.name]} (default: {default})".replace("%", "%%"),
        )
    return p


def _validate_workers(t: Tuning) -> None:
    if t.worker_processes != "auto" and not re.fullmatch(r"[1-9]\d{0,2}", t.worker_processes):
        raise RenderError(f"worker processes must be auto or a number from 1 to 999; got {t.worker_processes!r}")


def _validate_logging(t: Tuning) -> None:
    if t.access_log_buffer != "off" and not re.fullmatch(r"[1-9]\d*[km]?", t.access_log_buffer):
        raise RenderError(f"access log buffer must be a size like 64k, or off; got {t.access_log_buffer!r}")
    if not 1 <= t.body_scan_limit <= MAX_BODY_BYTES:
        raise RenderError(f"body scan limit must be between 1 and {MAX_BODY_BYTES} bytes, got {t.body_scan_limit}")


def _validate_budget(t: Tuning) -> None:
    if not 0 <= t.retry_budget_ratio <= 10 or not 0 <= t.retry_budget_floor <= 100_000:
        raise RenderError(
            "the retry budget's ratio must be between 0 and 10 and its floor between 0 and 100000 per second"
        )
    if t.retry_budget_ratio == 0 and t.retry_budget_floor == 0:
        raise RenderError("a retry budget of ratio 0 and floor 0 allows no retry: set --tries 1 instead")
    if not 1 <= t.retry_budget_window <= 3600:
        raise RenderError(f"the retry budget's window must be 1 to 3600 seconds, got {t.retry_budget_window:g}")
    if not 1 <= t.retry_budget_known_for <= 7 * 86400:
        raise RenderError(
            f"a known user's time in the retry budget must be 1 s to 7 days, got {t.retry_budget_known_for:g}"
        )
    if not re.fullmatch(r"[1-9]\d*[km]", t.retry_budget_memory) or _bytes(t.retry_budget_memory) < 256 * 1024:
        raise RenderError(
            f"the retry budget's memory must be a size like 10m, at least 256k; got {t.retry_budget_memory!r}"
        )


def _bytes(size: str) -> int:
    return int(size[:-1]) * {"k": 1024, "m": 1024 * 1024}[size[-1]]


def _validate_origin_secrets(secrets: tuple[str, ...]) -> None:
    if len(secrets) > MAX_ORIGIN_SECRETS:
        raise RenderError(
            f"at most {MAX_ORIGIN_SECRETS} origin secrets (the current one and the previous one), got {len(secrets)}"
        )
    for position, secret in enumerate(secrets, 1):
        if not secret:
            raise RenderError(f"origin secret {position} is empty")
        if not ORIGIN_SECRET.fullmatch(secret):
            # Never quote the value: render.py's errors end up in logs.
            raise RenderError(
                f"origin secret {position} must be at least 32 characters of A-Z, a-z, 0-9, _ and - "
                "(infra/cloudfront/distribution.yaml's OriginSecret)"
            )


def _validate_public_names(names: tuple[str, ...], host_header: str) -> None:
    if names and host_header != Tuning().host_header:
        raise RenderError(
            "--host-header and --public-name both decide the Host HOSP gets: with public names HOSP gets the "
            "name each request matched; leave --host-header out"
        )
    for name in names:
        if not PUBLIC_NAME.fullmatch(name):
            raise RenderError(
                f"public name {name!r} must be a lowercase DNS name: labels of a-z, 0-9 and -, joined by dots, "
                "no final dot, no port"
            )
        if re.fullmatch(r"[0-9.]+", name):
            raise RenderError(f"public name {name!r} is an address, not a name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RenderError(f"public name(s) given more than once: {', '.join(repeated)}")


def _port(listen: str) -> str:
    """The port of a listen value: "127.0.0.1:8081" or "8081"."""
    return listen.rsplit(":", 1)[-1]


def _retry_peers(t: Tuning) -> int:
    # NGINX never sends one request to the same peer twice: HOSP is listed once
    # per retry in hosp_fresh (upstream.conf), and once when there is none.
    return max(1, t.tries - 1)


def _inline(text: str, directories: list[Path], copies: Mapping[str, int]) -> str:
    """Replace `include name.conf;` with the file's text, indented in place, copies[name] times."""

    def expand(match: re.Match[str]) -> str:
        indent, name = match.group("indent"), match.group("name")
        count = copies.get(name, 1)
        if count == 0:
            return f"{indent}# not included: {name}"
        body = _inline(_find(name, directories).read_text(), directories, copies).rstrip("\n")
        lines = "\n".join(indent + line if line else line for line in body.splitlines())
        return "\n".join([lines] * count)

    return INCLUDE.sub(expand, text)


def _find(name: str, directories: list[Path]) -> Path:
    for directory in directories:
        if (directory / name).is_file():
            return directory / name
    raise RenderError(f"included file {name} is in none of {', '.join(map(str, directories))}")


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


if __name__ == "__main__":
    sys.exit(main())
