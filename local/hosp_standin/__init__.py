"""A local stand-in for HOSP, the vendor's veterinary hospital API, with fault injection.

Used by the local stack, by the tests (functional ones alone, integration ones with
real NGINX in front of it) and by the benchmarks.
Start it with `python -m local.hosp_standin` or, from Python, `start_server()`.
The API it implements is documented in docs/hosp-api.yaml.
"""

from __future__ import annotations

from local.hosp_standin.faults import FaultConfig, Outcome, outcome_for
from local.hosp_standin.server import DEFAULT_IDLE_TIMEOUT, RunningServer, start_server

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "FaultConfig",
    "Outcome",
    "RunningServer",
    "outcome_for",
    "start_server",
]
