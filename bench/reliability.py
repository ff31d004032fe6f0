"""Tables 1 and 2 and the pre-flight checks: both proxies in front of the same stand-in.

Before each measured series the stand-in is reset (request index k = 0, counters zero)
and given the same seeded fault config, so both proxies face the same fault sequence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from bench.clients import ClientRun, run_clients, send_once
from bench.floor import fault_config, realized_floor
from bench.toolkit import Check
from local.hosp_standin.process import StandInProcess as StandIn
from local.hosp_standin.stats import REQUEST_LOG_SIZE  # the stand-in's log; a longer series cannot be attributed


@dataclass(frozen=True)
class Target:
    """A proxy under test."""

    name: str
    url: str


# (case, method, script, expected client status, expected upstream attempts)
CHECK_CASES: tuple[tuple[str, str, list[str], int, int], ...] = (
    ("GET after 503,503", "GET", ["503", "503"], 200, 3),
    ("GET after 503,503,503", "GET", ["503", "503", "503"], 503, 3),
    ("GET after reset,reset", "GET", ["reset", "reset"], 200, 3),
    ("GET after 500,502", "GET", ["500", "502"], 200, 3),
    ("POST after 503", "POST", ["503"], 503, 1),
    ("POST after reset", "POST", ["reset"], 502, 1),
)


def run_checks(standin: StandIn, targets: Sequence[Target], seed: int) -> list[Check]:
    """Scripted faults: 3 attempts for a GET, exactly 1 for a POST, on every proxy."""
    checks = []
    for target in targets:
        for case, method, script, status, attempts in CHECK_CASES:
            standin.reset({**fault_config(0.0, seed), "script": script})
            answer = send_once(target.url, method)
            seen_attempts = int(standin.stats()["total"])
            expected = f"{status}, {attempts} upstream"
            checks.append(Check(target.name, case, expected, f"{answer.status}, {seen_attempts} upstream"))
    return checks


@dataclass(frozen=True)
class Attribution:
    """Per client request, from the stand-in's request log grouped by X-Request-Id."""

    floor: int  # requests whose first `tries` attempts all failed: the floor of this interleaving
    short: int  # failed on every attempt, but with fewer than `tries` attempts
    extra: int  # more than `tries` attempts
    complete: bool  # False if the log could not hold the whole series (or lacked request ids)


def attribute(log: list[dict[str, Any]], total: int, tries: int) -> Attribution:
    """Classify each client request by its attempts in `log`, the stand-in's request log."""
    attempts: dict[str, list[str]] = defaultdict(list)
    for entry in log:
        attempts[str(entry.get("x_request_id") or "")].append(str(entry["outcome"]))
    tagged = "" not in attempts
    failed = [seen for seen in attempts.values() if all(outcome != "ok" for outcome in seen[:tries])]
    return Attribution(
        floor=sum(1 for seen in failed if len(seen) >= tries),
        short=sum(1 for seen in failed if len(seen) < tries),
        extra=sum(1 for seen in attempts.values() if len(seen) > tries),
        complete=tagged and total <= REQUEST_LOG_SIZE and len(log) == total,
    )


@dataclass(frozen=True)
class GetCell:
    """GET results of one or more seeded series (summed with +)."""

    sent: int = 0
    failures: int = 0
    skipped: int = 0
    seconds: float = 0.0
    upstream: int = 0
    floor: int = 0  # replay floor (bench.floor)
    floor_upstream: int = 0
    attributed_floor: int = 0
    short: int = 0
    extra: int = 0
    attributed: bool = True  # every series could be attributed

    def __add__(self, other: GetCell) -> GetCell:
        sums = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "attributed"}
        return GetCell(**sums, attributed=self.attributed and other.attributed)


@dataclass(frozen=True)
class PostCell:
    sent: int = 0
    failures: int = 0
    skipped: int = 0
    upstream: int = 0  # POSTs the stand-in received

    def __add__(self, other: PostCell) -> PostCell:
        return PostCell(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Series:
    """The bounded size of one series; a cell runs one series per seed."""

    gets: int
    posts: int
    time_limit: float
    tries: int


def measure_gets(standin: StandIn, target: Target, faults: dict[str, Any], workers: int, series: Series) -> GetCell:
    standin.reset(faults)
    run = run_clients(target.url, "GET", series.gets, workers, series.time_limit)
    total = int(standin.stats()["total"])
    attribution = attribute(standin.recent_requests(REQUEST_LOG_SIZE), total, series.tries)
    floor = realized_floor(faults, run.sent, series.tries)
    return GetCell(
        sent=run.sent,
        failures=run.failures,
        skipped=run.skipped,
        seconds=run.elapsed,
        upstream=total,
        floor=floor.failures,
        floor_upstream=floor.upstream,
        attributed_floor=attribution.floor,
        short=attribution.short,
        extra=attribution.extra,
        attributed=attribution.complete,
    )


def measure_posts(standin: StandIn, target: Target, faults: dict[str, Any], workers: int, series: Series) -> PostCell:
    standin.reset(faults)
    run = run_clients(target.url, "POST", series.posts, workers, series.time_limit)
    by_method = standin.stats()["by_method"]
    return PostCell(run.sent, run.failures, run.skipped, int(by_method.get("POST", 0)))


@dataclass(frozen=True)
class StormResult:
    run: ClientRun
    upstream: int


def measure_storm(standin: StandIn, target: Target, seed: int, clients: int, workers: int) -> StormResult:
    """A full outage: every attempt is answered 503 at once."""
    standin.reset({**fault_config(0.0, seed), "outage": True})
    run = run_clients(target.url, "GET", clients, workers, time_limit=120.0)
    return StormResult(run, int(standin.stats()["total"]))


def budget_bound(requests: int, tries: int, *, ratio: float, floor: float, window: float, seconds: float) -> float:
    """docs/proxy.md, "The retry budget": HOSP receives at most R first attempts, plus
    ratio x R retry attempts, plus the floor's floor x (W + T) (any stretch of T seconds
    meets at most 1 + T / W windows' floors), plus tries - 2 attempts of the last retry."""
    if tries == 1:
        return requests
    return requests + ratio * requests + floor * (window + seconds) + tries - 2
