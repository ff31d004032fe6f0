"""Helpers shared by the tests: the HOSP stand-in as a process, demo credentials."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import requests

from local.nginx_proxy import ROOT, free_port, wait_for_port

DEMO_USER = "test-account"
DEMO_PASSWORD = "supersecret"
DEMO_AUTH = {"Authorization": "Basic " + base64.b64encode(f"{DEMO_USER}:{DEMO_PASSWORD}".encode()).decode()}
# HOSP's idle keep-alive timeout in the tests; the proxy's must stay below it.
HOSP_IDLE_TIMEOUT = 2.0


class Hosp:
    """The HOSP stand-in, run as its own process through its command line."""

    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (run_dir / "hosp.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.hosp_standin", "--host", "127.0.0.1", "--port", str(self.port),
             "--seed", "7", "--idle-timeout", str(HOSP_IDLE_TIMEOUT)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port)

    def reset(self) -> None:
        requests.post(f"{self.url}/_sim/reset", timeout=5).raise_for_status()

    def faults(self, **update: object) -> None:
        answer = requests.put(f"{self.url}/_sim/faults", json=update, timeout=5)
        assert answer.status_code == 200, answer.text

    def script(self, *outcomes: str) -> None:
        self.faults(script=list(outcomes))

    def stats(self) -> dict[str, object]:
        answer = requests.get(f"{self.url}/_sim/stats", timeout=5)
        answer.raise_for_status()
        return dict(answer.json())

    def received(self) -> int:
        return int(self.stats()["total"])  # type: ignore[call-overload]

    def requests_seen(self, limit: int = 50) -> list[dict[str, object]]:
        answer = requests.get(f"{self.url}/_sim/requests", params={"limit": limit}, timeout=5)
        answer.raise_for_status()
        return list(answer.json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
