"""The HOSP stand-in as a process of its own, and a client of its /_sim control API.

Tests and benchmarks run the stand-in exactly as `make run` does, through its
command line, so that its startup and shutdown are exercised too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self

import requests

from local.processes import ROOT, dying_with_parent, free_port, stop_process, wait_for_port

CONTROL_TIMEOUT = 5.0


@dataclass
class StandInProcess:
    """`python -m local.hosp_standin` on 127.0.0.1, its output in run_dir/standin.log."""

    run_dir: Path
    seed: int = 1
    port: int = 0
    idle_timeout: float | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: BinaryIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.port = self.port or free_port()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.run_dir / "standin.log").open("wb")
        args = [sys.executable, "-m", "local.hosp_standin", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--seed", str(self.seed)]
        if self.idle_timeout is not None:
            args += ["--idle-timeout", str(self.idle_timeout)]
        self.process = subprocess.Popen(dying_with_parent(args), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, process=self.process)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, faults: Mapping[str, Any] | None = None) -> None:
        """Seed data, zeroed counters, request index k = 0; then `faults`, if given."""
        requests.post(f"{self.url}/_sim/reset", timeout=CONTROL_TIMEOUT).raise_for_status()
        if faults:
            self.set_faults(faults)

    def set_faults(self, update: Mapping[str, Any]) -> None:
        answer = requests.put(f"{self.url}/_sim/faults", json=dict(update), timeout=CONTROL_TIMEOUT)
        if answer.status_code != 200:
            raise ValueError(f"the stand-in refused the fault config {dict(update)}: {answer.text}")

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/_sim/stats", timeout=CONTROL_TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json())

    def recent_requests(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The stand-in's log of its last `limit` API requests (it keeps at most 1000)."""
        answer = requests.get(f"{self.url}/_sim/requests", params={"limit": limit}, timeout=CONTROL_TIMEOUT)
        answer.raise_for_status()
        return list(answer.json())
