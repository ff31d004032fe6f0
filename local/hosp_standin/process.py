"""The HOSP stand-in as a process of its own, and a client of its /_sim control API.

The local stack (`make run`), the tests and the benchmarks all start the stand-in
through this class, that is through its command line (`python -m local.hosp_standin`),
so that its startup and shutdown are exercised too. The lifecycle (a free port, its
own process group, stopped on exit) is LoopbackServer's, in local/processes.py.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import requests

from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.processes import LoopbackServer, free_port

CONTROL_TIMEOUT = 5.0


@dataclass
class StandInProcess(LoopbackServer):
    """`python -m local.hosp_standin` on 127.0.0.1, its output in run_dir/standin.log."""

    run_dir: Path
    seed: int = 1
    port: int = 0
    idle_timeout: float | None = None
    startup_faults: list[str] = field(default_factory=list)  # `--fault NAME=RATE` values

    def start(self) -> Self:
        self.port = self.port or free_port()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "local.hosp_standin", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--seed", str(self.seed)]
        if self.idle_timeout is not None:
            args += ["--idle-timeout", str(self.idle_timeout)]
        for fault in self.startup_faults:
            args += ["--fault", fault]
        self._launch(args, output=self.run_dir / "standin.log")
        return self

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

    def recent_requests(self, limit: int = REQUEST_LOG_SIZE) -> list[dict[str, Any]]:
        """The stand-in's log of its last `limit` API requests (it keeps REQUEST_LOG_SIZE)."""
        answer = requests.get(f"{self.url}/_sim/requests", params={"limit": limit}, timeout=CONTROL_TIMEOUT)
        answer.raise_for_status()
        return list(answer.json())
