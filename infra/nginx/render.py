"""Render the retry proxy's nginx.conf from the templates beside this file.

    python3 infra/nginx/render.py --variant local --upstream 127.0.0.1:9000 \
        --output .local/nginx/nginx.conf

The output is one self-contained file (the templates' `include` lines are
inlined), runnable with `nginx -c FILE` in the foreground by an ordinary user
for the local variant. Standard library only: the EC2 user data runs this
script with the system python3.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# A placeholder alone on its line: every line of its value takes that indent.
PLACEHOLDER_LINE = re.compile(r"^(?P<indent>[ \t]*)\{\{(?P<name>\w+)\}\}[ \t]*$", re.MULTILINE)
INCLUDE = re.compile(r"^(?P<indent>[ \t]*)include (?P<name>[\w.-]+\.conf);[ \t]*$", re.MULTILINE)
HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


# The retry budget: retried requests per second and burst, per NGINX instance.
# Sized for HOSP's traffic: tens of requests per second at peak, of which up to
# a third may fail once. Raise both with the traffic (docs/proxy.md).
DEFAULT_BUDGET_RATE = 20
DEFAULT_BUDGET_BURST = 40


class RenderError(ValueError):
    """The settings cannot make a valid configuration."""


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    """Everything the templates need; times are in seconds."""

    variant: str
    upstream: str
    listen: str
    access_log: str
    error_log: str
    pid_path: str
    temp_dir: str | None
    user: str | None = None
    tries: int = 3
    connect_timeout: float = 2.0
    try_timeout: float = 10.0
    deadline: float = 30.0
    write_timeout: float = 60.0
    keepalive_timeout: float = 15.0
    access_log_buffer: str = "64k"
    host_header: str = "$http_host"
    max_open_files: int | None = None
    budget_rate: int = DEFAULT_BUDGET_RATE
    budget_burst: int = DEFAULT_BUDGET_BURST


def variant_defaults(variant: str, run_dir: Path) -> dict[str, str | None]:
    """Paths and listen address of each variant; any of them can be overridden."""
    if variant == "local":
        return {
            "listen": "127.0.0.1:8080",
            "access_log": str(run_dir / "access.json"),
            "error_log": str(run_dir / "error.log"),
            "pid_path": str(run_dir / "nginx.pid"),
            "temp_dir": str(run_dir / "tmp"),
            "max_open_files": None,  # raising it needs root
        }
    if variant == "production":
        return {
            "listen": "80",
            "access_log": "/var/log/hosp-proxy/access.json",
            "error_log": "/var/log/hosp-proxy/error.log",
            "pid_path": "/run/nginx.pid",
            "temp_dir": None,  # the distribution's own temp paths
            # Each request in flight holds two descriptors; HOSP's 20 s answers
            # keep many in flight. The default limit is often 1024.
            "max_open_files": "16384",
        }
    raise RenderError(f"unknown variant {variant!r}: use 'local' or 'production'")


def validate(s: ProxySettings) -> None:
    if not HOST_PORT.match(s.upstream):
        raise RenderError(f"upstream must be HOST:PORT (a DNS name or an address), got {s.upstream!r}")
    if not 1 <= s.tries <= 10:
        raise RenderError(f"tries must be between 1 and 10, got {s.tries}")
    for name in ("connect_timeout", "try_timeout", "deadline", "write_timeout", "keepalive_timeout"):
        if getattr(s, name) <= 0:
            raise RenderError(f"{name} must be positive")
    # NGINX reads a proxy_next_upstream_timeout of 0 as "no limit".
    if s.tries > 1 and round((s.deadline - s.try_timeout) * 1000) < 1:
        raise RenderError("deadline must be longer than one try's timeout (it bounds when retries may start)")
    if s.access_log_buffer != "off" and not re.fullmatch(r"[1-9]\d*[km]?", s.access_log_buffer):
        raise RenderError(f"access log buffer must be a size like 64k, or off; got {s.access_log_buffer!r}")
    if s.budget_rate < 1 or s.budget_burst < 0:
        raise RenderError("the retry budget needs a rate of at least 1/s and a burst of at least 0")


def render(s: ProxySettings) -> str:
    validate(s)
    retrying = s.tries > 1
    peers = max(1, s.tries - 1)  # one per retry in hosp_fresh (see upstream.conf)
    values = {
        "variant": s.variant,
        "user_directive": f"user {s.user};" if s.user else "# (no user directive: workers run as NGINX's default)",
        "pid_path": s.pid_path,
        "error_log": s.error_log,
        "access_log": s.access_log,
        "access_log_buffering": "" if s.access_log_buffer == "off" else f" buffer={s.access_log_buffer} flush=1s",
        "listen": s.listen,
        "upstream": s.upstream,
        "host_header": s.host_header,
        "rlimit_directive": f"worker_rlimit_nofile {s.max_open_files};" if s.max_open_files else "",
        "tries": str(s.tries),
        "retry_tries": str(s.tries - 1),
        "peers": str(peers),
        "upstream_servers": "\n".join(f"server {s.upstream} max_fails=0;" for _ in range(peers)),
        "keepalive_timeout": _ms(s.keepalive_timeout),
        "connect_timeout": _ms(s.connect_timeout),
        "try_timeout": _ms(s.try_timeout),
        "write_timeout": _ms(s.write_timeout),
        "retry_window": _ms(s.deadline - s.try_timeout),
        "budget_rate": str(s.budget_rate),
        "budget_burst": str(s.budget_burst),
        "first_attempt_retry": (
            (
                "proxy_intercept_errors on;\n"
                "error_page 500 502 503 504 = @hosp_retry;\n"
                "# Lets @hosp_retry's own error_page (budget spent) apply after this one.\n"
                "recursive_error_pages on;"
            )
            if retrying
            else "# tries = 1: retries are off."
        ),
        "retry_location": _read("retry-location.conf") if retrying else "",
    }
    text = _inline(_read("nginx.conf"))
    if s.temp_dir:
        text = text.replace("http {\n", "http {\n" + _temp_paths(s.temp_dir), 1)
    # Substituted twice: the retry location holds placeholders of its own.
    return _fill(_fill(text, values), values)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    defaults = variant_defaults(args.variant, run_dir)
    settings = ProxySettings(
        variant=args.variant,
        upstream=args.upstream,
        listen=args.listen or str(defaults["listen"]),
        access_log=args.access_log or str(defaults["access_log"]),
        error_log=args.error_log or str(defaults["error_log"]),
        pid_path=str(defaults["pid_path"]),
        temp_dir=defaults["temp_dir"],
        max_open_files=int(defaults["max_open_files"]) if defaults["max_open_files"] else None,
        host_header=args.host_header,
        user=args.user,
        tries=args.tries,
        connect_timeout=args.connect_timeout,
        try_timeout=args.try_timeout,
        deadline=args.deadline,
        write_timeout=args.write_timeout,
        keepalive_timeout=args.keepalive_timeout,
        access_log_buffer=args.access_log_buffer,
        budget_rate=args.retry_budget_rate,
        budget_burst=args.retry_budget_burst,
    )
    try:
        text = render(settings)
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if settings.temp_dir:
        Path(settings.temp_dir).mkdir(parents=True, exist_ok=True)
    for log in (settings.access_log, settings.error_log):
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output} ({settings.variant}: {settings.listen} -> {settings.upstream}, {settings.tries} tries)")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Render the HOSP retry proxy's nginx.conf.")
    p.add_argument("--variant", choices=("local", "production"), default="local")
    p.add_argument("--upstream", required=True, help="HOSP as HOST:PORT; HOST may be a DNS name")
    p.add_argument("--output", required=True, help="file to write")
    p.add_argument("--listen", help="listen address (local: 127.0.0.1:8080, production: 80)")
    p.add_argument("--access-log", help="JSON access log path")
    p.add_argument("--error-log", help="error log path")
    p.add_argument("--run-dir", default=".local/nginx", help="local variant: pid, temp files and default logs")
    p.add_argument("--user", help="worker user (production: the distribution's nginx user)")
    p.add_argument(
        "--host-header",
        default="$http_host",
        help="Host sent to HOSP, which builds its links from it (default: the client's, port included)",
    )
    p.add_argument("--tries", type=int, default=3, help="attempts per idempotent request, first included")
    p.add_argument("--connect-timeout", type=float, default=2.0, help="seconds to connect to HOSP")
    p.add_argument("--try-timeout", type=float, default=10.0, help="seconds one idempotent attempt may wait")
    p.add_argument("--deadline", type=float, default=30.0, help="seconds after which no retry starts")
    p.add_argument("--write-timeout", type=float, default=60.0, help="seconds a POST/PATCH may wait")
    p.add_argument(
        "--keepalive-timeout", type=float, default=15.0, help="idle upstream connection lifetime; below HOSP's"
    )
    p.add_argument("--access-log-buffer", default="64k", help="log buffer size (lines flushed within 1 s), or off")
    p.add_argument("--retry-budget-rate", type=int, default=DEFAULT_BUDGET_RATE, help="retried requests per second")
    p.add_argument(
        "--retry-budget-burst", type=int, default=DEFAULT_BUDGET_BURST, help="retried requests allowed in a burst"
    )
    return p


def _read(name: str) -> str:
    return (TEMPLATES / name).read_text()


def _inline(text: str) -> str:
    """Replace `include name.conf;` with the file's text, indented in place."""

    def expand(match: re.Match[str]) -> str:
        indent = match.group("indent")
        body = _inline(_read(match.group("name"))).rstrip("\n")
        return "\n".join(indent + line if line else line for line in body.splitlines())

    return INCLUDE.sub(expand, text)


def _fill(text: str, values: dict[str, str]) -> str:
    def value(name: str) -> str:
        if name not in values:
            raise RenderError(f"template placeholder {{{{{name}}}}} has no value")
        return values[name]

    def block(match: re.Match[str]) -> str:
        indent = match.group("indent")
        lines = value(match.group("name")).splitlines()
        return "\n".join(indent + line if line.strip() else "" for line in lines)

    text = PLACEHOLDER_LINE.sub(block, text)
    return PLACEHOLDER.sub(lambda m: value(m.group(1)), text)


def _temp_paths(temp_dir: str) -> str:
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    return "".join(f"    {kind}_temp_path {temp_dir}/{kind};\n" for kind in kinds)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


if __name__ == "__main__":
    sys.exit(main())
