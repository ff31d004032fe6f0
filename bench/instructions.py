"""Instructions per GET: the rendered NGINX proxy against HAProxy, under valgrind's callgrind.

    python -m bench.instructions            # about 2 minutes
    python -m bench.instructions --gets 5000

Each proxy runs alone under `valgrind --tool=callgrind` with one worker (NGINX:
worker_processes 1, master_process off) or one thread (HAProxy: nbthread 1, -db),
in front of the bench's static upstream on 127.0.0.1. After a warm-up, its counters
are zeroed (callgrind_control -z), one client sends --gets kept-alive authenticated
`GET /patients/1`, and the counters are dumped (callgrind_control -d): the
instructions of those requests only, divided by their number. Both log every request
(NGINX its JSON access log, HAProxy its httplog). Unlike req/s, the counts do not
depend on the machine's load; they leave out the kernel's share (the system calls,
the same count for both).
"""

from __future__ import annotations

import argparse
import http.client
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.clients import AUTH
from bench.overhead import WRK_PATH
from bench.servers import BenchError, HAProxy, StaticUpstream, require_binary
from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy, nginx_binary
from local.processes import accepts_connections, free_port, release_ports

WARM_UP = 50
START_TIMEOUT = 60.0
TOTALS = re.compile(r"^(?:summary|totals): ([\d ]+)$", re.MULTILINE)
EVENTS = re.compile(r"^events: (.+)$", re.MULTILINE)
# valgrind's --branch-sim counts: conditional and indirect branches, and those it mispredicted.
MISPREDICTED = ("Bcm", "Bim")


def nginx_argv(upstream: str, run_dir: Path, port: int, access_log: bool) -> list[str]:
    """The rendered proxy with one worker in the foreground; its access log on or off."""
    proxy = NginxProxy(upstream, run_dir, port=port, internal_port=free_port(), tuning=Tuning())
    run_dir.mkdir(parents=True, exist_ok=True)
    proxy.render()
    text = proxy.config_path.read_text().replace("worker_processes auto;", "worker_processes 1;\nmaster_process off;")
    if not access_log:
        text, count = re.subn(r"access_log [^;]*hosp_json[^;]*;", "access_log off;", text)
        assert count == 2, count
    proxy.config_path.write_text(text)
    return [nginx_binary(), "-c", str(proxy.config_path), "-e", str(proxy.error_log), "-g", "daemon off;"]


def haproxy_argv(upstream: str, run_dir: Path, port: int) -> list[str]:
    haproxy = HAProxy(upstream, run_dir, threads=1, port=port)
    run_dir.mkdir(parents=True, exist_ok=True)
    haproxy.render()
    return [require_binary("haproxy"), "-f", str(haproxy.config_path), "-db"]


def wait_for(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not accepts_connections(port):
        if time.monotonic() > deadline:
            raise BenchError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT:g} s under valgrind")
        time.sleep(0.2)


def gets(connection: http.client.HTTPConnection, count: int) -> None:
    for _ in range(count):
        connection.request("GET", WRK_PATH, headers=dict(AUTH))
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise BenchError(f"GET {WRK_PATH} answered {answer.status}")


def per_get(argv: list[str], port: int, out: Path, count: int, branches: bool) -> dict[str, float]:
    """Callgrind's counts per GET of the server `argv` starts, listening on `port`: Ir (instructions), and with
    `branches` the branch simulation's (Bc, Bcm, Bi, Bim)."""
    tool = [require_binary("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}"]
    if branches:
        tool.append("--branch-sim=yes")
    log = out.with_suffix(".log")
    with log.open("w") as output:
        server = subprocess.Popen([*tool, *argv], stdout=output, stderr=subprocess.STDOUT)
    control = require_binary("callgrind_control")
    try:
        wait_for(port)
        release_ports([port])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        gets(connection, WARM_UP)
        subprocess.run([control, "-z", str(server.pid)], capture_output=True, check=True, timeout=60)
        gets(connection, count)
        subprocess.run([control, "-d", str(server.pid)], capture_output=True, check=True, timeout=60)
        connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    # The dump holds what ran between the zeroing and the dump: the measured GETs.
    dumps = sorted(out.parent.glob(out.name + ".*"))
    if not dumps:
        raise BenchError(f"callgrind wrote no dump for {argv[0]}; see {log}")
    text = dumps[0].read_text()
    totals, events = TOTALS.search(text), EVENTS.search(text)
    if totals is None or events is None:
        raise BenchError(f"no totals in {dumps[0]}")
    return {
        name: int(value) / count for name, value in zip(events.group(1).split(), totals.group(1).split(), strict=True)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=2000, help="measured GETs per proxy (default 2000)")
    parser.add_argument(
        "--branches", action="store_true", help="also simulate branch prediction: mispredicted branches per GET"
    )
    args = parser.parse_args(argv)
    if args.gets < 1:
        parser.error("--gets must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="instructions-") as tmp, StaticUpstream(Path(tmp) / "up") as up:
            rows = []
            for name, make in (
                ("nginx", lambda d, p: nginx_argv(up.address, d, p, access_log=True)),
                ("nginx, access log off", lambda d, p: nginx_argv(up.address, d, p, access_log=False)),
                ("haproxy", lambda d, p: haproxy_argv(up.address, d, p)),
            ):
                run_dir, port = Path(tmp) / name.replace(", ", "-").replace(" ", "-"), free_port()
                print(f"{name}: {args.gets} GETs under callgrind ...", file=sys.stderr, flush=True)
                out = run_dir / "callgrind.out"
                rows.append((name, per_get(make(run_dir, port), port, out, args.gets, args.branches)))
    except BenchError as exc:
        print(f"bench.instructions: {exc}", file=sys.stderr)
        return 1
    haproxy = dict(rows)["haproxy"]
    extra = " mispredicted branches per GET |" if args.branches else ""
    print(f"| target | instructions per GET | vs haproxy |{extra}\n|---|---|---|{'---|' if extra else ''}")
    for name, counts in rows:
        line = f"| {name} | {counts['Ir']:,.0f} | {counts['Ir'] / haproxy['Ir']:.2f}x |"
        if args.branches:
            line += f" {sum(counts[event] for event in MISPREDICTED):,.0f} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
