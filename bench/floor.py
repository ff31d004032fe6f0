"""Seeded faults and the "realized floor": what a perfect N-try proxy would still fail.

The stand-in gives its k-th API request (k counts arrivals from 0 after a reset) the
outcome `outcome_for(seed, k, config)`, a pure function. Replaying that sequence in
arrival order, each client request takes outcomes until one is ok or it has taken
`tries` of them; the requests that took `tries` failures are the floor. For clients
that send one request at a time this is exactly what a perfect proxy meets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.hosp_standin.faults import DEFAULT_CONFIG, RATE_KEYS, apply_update, outcome_for

# The fault rate is split evenly among HOSP's five failure kinds.
FAULT_KINDS: tuple[str, ...] = RATE_KEYS  # "500", "502", "503", "504", "reset"


def fault_config(rate: float, seed: int) -> dict[str, Any]:
    """The PUT /_sim/faults body for a total fault rate split evenly, no outage, no script."""
    share = rate / len(FAULT_KINDS)
    return {"seed": seed, "rates": dict.fromkeys(FAULT_KINDS, share), "outage": False, "script": []}


@dataclass(frozen=True)
class Floor:
    """A perfect proxy's result on the seeded sequence."""

    failures: int  # client requests whose `tries` outcomes all failed
    upstream: int  # outcomes consumed, i.e. requests HOSP would receive


def realized_floor(faults: dict[str, Any], clients: int, tries: int, method: str = "GET") -> Floor:
    """Replay the stand-in's outcomes for `clients` requests through a perfect `tries`-try proxy."""
    config = apply_update(DEFAULT_CONFIG, faults)
    k = failures = 0
    for _ in range(clients):
        for _attempt in range(tries):
            outcome = outcome_for(config.seed, k, config).for_method(method)
            k += 1
            if not outcome.is_failure:
                break
        else:
            failures += 1
    return Floor(failures=failures, upstream=k)
