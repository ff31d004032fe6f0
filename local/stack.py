"""The whole system on one machine: `make run` (python -m local.stack).

Starts, each as a real server on loopback:
  HOSP stand-in   http://127.0.0.1:9000   (local/hosp_standin, faults off unless --faults)
  NGINX proxy     http://127.0.0.1:8080   (infra/nginx, rendered for loopback)
  chalice local   http://127.0.0.1:8000   (app.py, stage "local", HOSP through the proxy)
  local AWS       http://127.0.0.1:5000   (moto in server mode; AWS_ENDPOINT_URL)
Ctrl-C stops everything. `--smoke` starts the stack, checks one request through
each server and stops again (the integration tests use it).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import requests

from local.hosp_standin.process import StandInProcess
from local.nginx_proxy import NginxProxy
from local.processes import ROOT, CommandServer, LoopbackServer, ProcessError, free_port

DEMO_AUTH = "Basic " + base64.b64encode(b"test-account:supersecret").decode()


@dataclass(frozen=True)
class Ports:
    hosp: int
    proxy: int
    chalice: int
    aws: int


class Stack:
    def __init__(self, ports: Ports, run_dir: Path, faults: str | None, seed: int) -> None:
        self.ports = ports
        self.run_dir = run_dir
        self.faults = faults
        self.proxy = NginxProxy(upstream=f"127.0.0.1:{ports.hosp}", run_dir=run_dir / "nginx", port=ports.proxy)
        local_aws = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.aws}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any key; never a real one here
            "AWS_DEFAULT_REGION": "eu-west-2",
        }
        fault_flags = [f.strip() for f in (faults or "").split(",") if f.strip()]
        chalice = [str(Path(sys.executable).parent / "chalice"), "local", "--no-autoreload"]
        chalice += ["--host", "127.0.0.1", "--port", str(ports.chalice), "--stage", "local"]
        # In start order; stopped in reverse.
        self.servers: list[tuple[str, LoopbackServer]] = [
            (
                "local AWS (moto)",
                CommandServer(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports.aws)],
                    ports.aws,
                    run_dir / "moto.log",
                ),
            ),
            (
                "HOSP stand-in",
                StandInProcess(run_dir, seed=seed, port=ports.hosp, startup_faults=fault_flags),
            ),
            ("NGINX proxy", self.proxy),
            (
                "chalice local",
                CommandServer(
                    chalice,
                    ports.chalice,
                    run_dir / "chalice.log",
                    env={**os.environ, "HOSP_BASE_URL": self.proxy.url, **local_aws},
                ),
            ),
        ]

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, server in self.servers:
            try:
                server.start()
            except ProcessError as exc:
                raise ProcessError(f"{name} did not start: {exc}") from exc

    def describe(self) -> str:
        p = self.ports
        return "\n".join(
            [
                "hosp-reliability local stack is up:",
                f"  HOSP stand-in  http://127.0.0.1:{p.hosp}    faults: {self.faults or 'off'}",
                f"  NGINX proxy    http://127.0.0.1:{p.proxy}    log: {self.proxy.access_log}",
                f"  chalice local  http://127.0.0.1:{p.chalice}",
                f"  local AWS      http://127.0.0.1:{p.aws}    (moto server)",
                "Try:",
                f"  curl -u test-account:supersecret http://127.0.0.1:{p.proxy}/hospitals",
                f"  curl http://127.0.0.1:{p.chalice}/health",
                f"  curl http://127.0.0.1:{p.hosp}/_sim/stats",
                "Ctrl-C stops everything.",
            ]
        )

    def smoke(self) -> None:
        """One request through each server; raises on the first that fails."""
        p = self.ports
        checks = [
            ("proxy -> HOSP", f"http://127.0.0.1:{p.proxy}/hospitals", {"Authorization": DEMO_AUTH}),
            ("chalice local", f"http://127.0.0.1:{p.chalice}/health", {}),
            ("HOSP stats", f"http://127.0.0.1:{p.hosp}/_sim/stats", {}),
            ("local AWS", f"http://127.0.0.1:{p.aws}/moto-api/", {}),
        ]
        for name, url, headers in checks:
            answer = requests.get(url, headers=headers, timeout=10)
            if answer.status_code != 200:
                raise RuntimeError(f"{name}: GET {url} answered {answer.status_code}: {answer.text[:200]}")
            print(f"ok  {name:14} GET {url}")

    def first_exited(self) -> str | None:
        for name, server in self.servers:
            if server.process is not None and server.process.poll() is not None:
                return f"{name} exited with code {server.process.returncode}"
        return None

    def stop(self) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _, server in reversed(self.servers):
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole hosp-reliability stack on loopback.")
    parser.add_argument("--faults", help="HOSP faults, e.g. '503=0.1,reset=0.02,slow=0.05' (default: off)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the HOSP stand-in's faults")
    parser.add_argument("--hosp-port", type=int, default=9000)
    parser.add_argument("--proxy-port", type=int, default=8080)
    parser.add_argument("--chalice-port", type=int, default=8000)
    parser.add_argument("--aws-port", type=int, default=5000)
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead (tests)")
    parser.add_argument("--run-dir", default=str(ROOT / ".local"), help="logs and rendered configs")
    parser.add_argument("--smoke", action="store_true", help="start, check each server once, stop")
    args = parser.parse_args(argv)

    if args.free_ports:
        ports = Ports(free_port(), free_port(), free_port(), free_port())
    else:
        ports = Ports(args.hosp_port, args.proxy_port, args.chalice_port, args.aws_port)
    stack = Stack(ports, Path(args.run_dir), args.faults, args.seed)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        stack.start()
        if args.smoke:
            stack.smoke()
            return 0
        print(stack.describe(), flush=True)
        while (reason := stack.first_exited()) is None:
            time.sleep(0.5)
        print(f"stopping: {reason} (logs in {args.run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except Exception as exc:
        print(f"local stack failed: {exc} (logs in {args.run_dir})", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
