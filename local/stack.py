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
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import requests

from local.nginx_proxy import NginxProxy
from local.processes import ROOT, dying_with_parent, free_port, wait_for_port

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
        self.seed = seed
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.proxy = NginxProxy(upstream=f"127.0.0.1:{ports.hosp}", run_dir=run_dir / "nginx", port=ports.proxy)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        aws_env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports.aws}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any key; never a real one here
            "AWS_DEFAULT_REGION": "eu-west-2",
        }
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.ports.aws)]
        aws = self._spawn("local AWS (moto)", moto)
        hosp = [sys.executable, "-m", "local.hosp_standin", "--host", "127.0.0.1", "--port", str(self.ports.hosp)]
        hosp += ["--seed", str(self.seed)]
        for fault in filter(None, (self.faults or "").split(",")):
            hosp += ["--fault", fault.strip()]
        wait_for_port(self.ports.hosp, process=self._spawn("HOSP stand-in", hosp))
        self.proxy.start()
        chalice = [str(Path(sys.executable).parent / "chalice"), "local", "--no-autoreload"]
        chalice += ["--host", "127.0.0.1", "--port", str(self.ports.chalice), "--stage", "local"]
        app = self._spawn("chalice local", chalice, {"HOSP_BASE_URL": self.proxy.url, **aws_env})
        wait_for_port(self.ports.aws, timeout=30, process=aws)
        wait_for_port(self.ports.chalice, timeout=30, process=app)

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
        for name, process in self.children:
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        if self.proxy.process is not None and self.proxy.process.poll() is not None:
            return "NGINX exited; see " + str(self.proxy.error_log)
        return None

    def stop(self) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.proxy.stop()
        for _, process in reversed(self.children):
            _signal_group(process, signal.SIGTERM)
        for _, process in self.children:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.children.clear()

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.run_dir / f"{name.split(maxsplit=1)[0].lower()}.log").open("ab")
        env = {**os.environ, **(extra_env or {})}
        # A process group of its own, so that stopping it stops its children too;
        # and it dies with the stack even if the stack is killed outright.
        process = subprocess.Popen(
            dying_with_parent(argv), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.children.append((name, process))
        return process


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


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
