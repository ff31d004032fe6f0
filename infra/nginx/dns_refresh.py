"""Reload NGINX when HOSP's load balancer changes its IP addresses.

Open-source NGINX (before 1.27.3) resolves the names in an `upstream` block
once, when it starts or reloads. An AWS load balancer's addresses change over
time, so a proxy that never reloads ends up sending every request to an
address that no longer answers. A systemd timer runs this script every 30 s:

    python3 dns_refresh.py --upstream internal-hosp.example.elb.amazonaws.com:80

It resolves the name, compares the address set with the one recorded at the
last run, and on a change runs `nginx -t` and then a graceful reload (open
connections finish on the old workers). A failed lookup changes nothing: the
running NGINX keeps the addresses it has. Standard library only.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Resolver = Callable[[str, int], list[str]]
Reloader = Callable[[], None]

DEFAULT_STATE = "/run/hosp-proxy/upstream-addresses"
DEFAULT_RELOAD = ("nginx -t -q", "systemctl reload nginx")


class RefreshError(RuntimeError):
    """The name did not resolve, or NGINX refused the reload."""


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefreshError(f"cannot resolve {host}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def refresh(upstream: str, state_file: Path, resolver: Resolver, reload: Reloader) -> bool:
    """Reload when the address set differs from the recorded one; True if it did.

    The first run only records the addresses: NGINX resolved the same name
    when it started a moment ago.
    """
    host, _, port = upstream.rpartition(":")
    if not host or not port.isdigit():
        raise RefreshError(f"upstream must be HOST:PORT, got {upstream!r}")
    addresses = sorted(set(resolver(host, int(port))))  # DNS answers come in any order
    if not addresses:
        raise RefreshError(f"{host} resolved to no address")
    current = "\n".join(addresses) + "\n"
    previous = state_file.read_text() if state_file.exists() else None
    if previous == current:
        return False
    if previous is not None:
        reload()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(current)  # only after a successful reload
    return previous is not None


def command_reloader(commands: Sequence[str]) -> Reloader:
    def run() -> None:
        for command in commands:
            done = subprocess.run(command.split(), capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RefreshError(f"`{command}` failed: {done.stderr.strip()}")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of HOSP's load balancer")
    parser.add_argument("--state-file", default=DEFAULT_STATE, help="where the last address set is kept")
    parser.add_argument(
        "--reload-command",
        action="append",
        help="command run on a change, in order (default: 'nginx -t -q' then 'systemctl reload nginx')",
    )
    args = parser.parse_args(argv)
    try:
        changed = refresh(
            args.upstream,
            Path(args.state_file),
            resolve,
            command_reloader(args.reload_command or DEFAULT_RELOAD),
        )
    except RefreshError as exc:
        print(f"dns_refresh: {exc}; NGINX keeps its current addresses", file=sys.stderr)
        return 1
    if changed:
        print(f"dns_refresh: {args.upstream} changed addresses; NGINX reloaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
