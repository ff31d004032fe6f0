"""The benchmark's pure parts: the realized floor, the attribution of the stand-in's log,
the retry-budget bound and the parsing of wrk's output.

Each is checked against an independent account of the same thing: the stand-in's own
fault state and request log, the retry budget's rule in an outage, wrk's documented units.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

import psutil
import pytest

from bench.floor import FAULT_KINDS, fault_config, realized_floor
from bench.overhead import WrkResult, parse_wrk, percentile_ms, pin, summarize
from bench.proxy_bench import p99_by_split
from bench.reliability import Attribution, attribute, budget_bound
from bench.servers import BenchError
from local.hosp_standin.faults import DEFAULT_CONFIG, FaultState, Outcome, apply_update, outcome_for
from local.hosp_standin.stats import Stats

SEEDS = (1, 7, 2024)


def failing_draws(faults: dict[str, object], count: int, method: str = "GET") -> int:
    """How many of the stand-in's first `count` random outcomes refuse the client an answer."""
    config = apply_update(DEFAULT_CONFIG, faults)
    return sum(outcome_for(config.seed, k, config).for_method(method).is_failure for k in range(count))


# ------------------------------------------------------------------ fault config


def test_fault_config_splits_the_rate_evenly_and_the_stand_in_accepts_it() -> None:
    faults = fault_config(0.3, seed=5)
    config = apply_update(DEFAULT_CONFIG, faults)
    assert set(config.rates) == set(FAULT_KINDS)
    assert sum(config.rates.values()) == pytest.approx(0.3)
    assert len(set(config.rates.values())) == 1
    assert (config.seed, config.outage, config.script) == (5, False, ())


# ------------------------------------------------------------------ realized floor


@pytest.mark.parametrize("tries", [1, 2, 3])
def test_no_faults_no_floor(tries: int) -> None:
    floor = realized_floor(fault_config(0.0, seed=1), clients=200, tries=tries)
    assert (floor.failures, floor.upstream) == (0, 200)


@pytest.mark.parametrize("seed", SEEDS)
def test_with_one_try_the_floor_is_every_failing_draw(seed: int) -> None:
    faults = fault_config(0.3, seed)
    floor = realized_floor(faults, clients=500, tries=1)
    assert floor.failures == failing_draws(faults, 500)
    assert floor.upstream == 500


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tries", [2, 3, 4])
def test_every_draw_is_a_failed_attempt_or_ends_a_request(seed: int, tries: int) -> None:
    """A request takes draws until one is ok or `tries` have failed, so the draws consumed
    are the failed ones plus one per request that got its answer."""
    faults = fault_config(0.4, seed)
    floor = realized_floor(faults, clients=500, tries=tries)
    assert floor.upstream == failing_draws(faults, floor.upstream) + (500 - floor.failures)
    assert 500 <= floor.upstream <= 500 * tries


@pytest.mark.parametrize("seed", SEEDS)
def test_more_tries_never_raise_the_floor(seed: int) -> None:
    faults = fault_config(0.5, seed)
    failures = [realized_floor(faults, clients=400, tries=tries).failures for tries in range(1, 6)]
    assert failures == sorted(failures, reverse=True)
    assert failures[0] > failures[-1]


def test_when_every_draw_fails_every_request_uses_all_its_tries() -> None:
    floor = realized_floor(fault_config(1.0, seed=3), clients=50, tries=3)
    assert (floor.failures, floor.upstream) == (50, 150)


def test_the_floor_follows_the_method_commit_then_fail_only_fails_writes() -> None:
    faults = {"seed": 2, "commit_then_fail": {"rate": 1.0}}
    assert realized_floor(faults, clients=20, tries=3, method="GET").failures == 0
    assert realized_floor(faults, clients=20, tries=3, method="POST").failures == 20


def test_a_slow_answer_is_not_a_failure() -> None:
    assert realized_floor({"seed": 2, "slow": {"rate": 1.0}}, clients=20, tries=1).failures == 0


# --------------------------------------------------------- attribution of the log


@dataclass
class StandInLog:
    """The stand-in's own request counter and log, fed the attempts a proxy makes."""

    stats: Stats

    def attempt(self, request_id: str | None, outcome: Outcome) -> None:
        index = int(self.stats.snapshot({})["total"])
        self.stats.record_arrival(
            index=index,
            method="GET",
            path="/patients/1",
            route="GET /patients/{id}",
            user="test-account",
            request_id=request_id,
            patient_id=None,
            outcome=outcome,
        )

    def attribute(self, tries: int) -> Attribution:
        total = int(self.stats.snapshot({})["total"])
        return attribute(self.stats.recent(1000), total, tries)


def stand_in_log(log_size: int = 1000) -> StandInLog:
    return StandInLog(Stats(log_size))


FAILED = Outcome("503")
RESET = Outcome("reset")
OK = Outcome("ok")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tries", [1, 3])
def test_a_perfect_sequential_proxy_is_attributed_exactly_the_realized_floor(seed: int, tries: int) -> None:
    """One request at a time through a proxy that makes exactly `tries` attempts: the
    stand-in's fault state decides each attempt, and the floor computed from its log
    is the floor bench.floor predicts from the seed alone."""
    faults = fault_config(0.4, seed)
    state = FaultState()
    state.update(faults)
    log = stand_in_log()
    for request in range(300):
        for _ in range(tries):
            _, outcome = state.next_outcome("GET")
            log.attempt(f"req-{request}", outcome)
            if not outcome.is_failure:
                break

    predicted = realized_floor(faults, clients=300, tries=tries)
    assert log.attribute(tries) == Attribution(floor=predicted.failures, short=0, extra=0, complete=True)
    assert log.stats.snapshot({})["total"] == predicted.upstream


def test_attempts_are_grouped_by_request_id_however_they_interleave() -> None:
    """Concurrent requests: each keeps its own attempts, whatever arrived in between."""
    attempts = {
        "all-failed": [FAILED, RESET, FAILED],
        "third-try-ok": [FAILED, FAILED, OK],
        "first-try-ok": [OK],
        "also-all-failed": [RESET, RESET, RESET],
    }
    log = stand_in_log()
    pending = {request: list(outcomes) for request, outcomes in attempts.items()}
    while pending:  # round robin: one attempt of each request in turn
        for request in list(pending):
            log.attempt(request, pending[request].pop(0))
            if not pending[request]:
                del pending[request]
    assert log.attribute(tries=3) == Attribution(floor=2, short=0, extra=0, complete=True)


def test_a_proxy_that_gives_up_early_or_tries_too_often_is_told_apart_from_the_floor() -> None:
    log = stand_in_log()
    for outcome in (FAILED, FAILED):  # given up after 2 of 3 tries (e.g. the retry budget)
        log.attempt("gave-up", outcome)
    # A 4th attempt breaks the bound; that it succeeded does not take the request out
    # of the floor, which a proxy keeping the bound would have met.
    for outcome in (FAILED, FAILED, FAILED, OK):
        log.attempt("fourth-try", outcome)
    for outcome in (FAILED, FAILED, OK, OK):  # answered on the 3rd try, then sent again
        log.attempt("ok-then-again", outcome)
    assert log.attribute(tries=3) == Attribution(floor=1, short=1, extra=2, complete=True)


def test_attempts_without_a_request_id_make_the_series_unattributable() -> None:
    log = stand_in_log()
    log.attempt("req-1", OK)
    log.attempt(None, FAILED)  # the proxy did not forward X-Request-Id
    assert log.attribute(tries=3).complete is False


def test_a_series_longer_than_the_stand_ins_log_is_unattributable() -> None:
    log = stand_in_log(log_size=4)
    for request in range(6):
        log.attempt(f"req-{request}", OK)
    assert log.attribute(tries=3).complete is False


def test_the_bench_reads_the_whole_log_the_stand_in_keeps() -> None:
    log = stand_in_log()
    for request in range(1000):
        log.attempt(f"req-{request}", OK)
    assert log.attribute(tries=3).complete is True
    log.attempt("one-too-many", OK)
    assert log.attribute(tries=3).complete is False


# --------------------------------------------------------------- budget bound


def outage_upstream(requests: int, tries: int, ratio: float, floor_attempts: float) -> int:
    """What HOSP receives when every attempt fails and one user sends `requests` one after
    another within one window: docs/proxy.md's rule, the lone user's half of the floor."""
    retried = 0
    for sent in range(1, requests + 1):
        if retried * (tries - 1) + 1 <= ratio * sent + floor_attempts / 2:
            retried += 1
    return requests + (tries - 1) * retried


def test_one_try_means_no_retries_whatever_the_budget() -> None:
    assert budget_bound(500, tries=1, ratio=0.3, floor=10, window=10, seconds=30) == 500


@pytest.mark.parametrize(("ratio", "floor"), [(0.3, 10.0), (0.0, 1.0), (1.0, 0.0), (0.05, 3.0)])
@pytest.mark.parametrize("requests", [1, 7, 300, 5000])
def test_no_outage_sends_hosp_more_than_the_bound(ratio: float, floor: float, requests: int) -> None:
    window = 10.0
    sent = outage_upstream(requests, 3, ratio, floor * window)
    assert sent <= budget_bound(requests, 3, ratio=ratio, floor=floor, window=window, seconds=1.0)


def test_the_bound_is_close_for_a_long_outage() -> None:
    """Thousands of requests: the floor's share is small, and the ratio's part of the bound is met."""
    requests, ratio = 5000, 0.3
    sent = outage_upstream(requests, 3, ratio, 100.0)
    assert budget_bound(requests, 3, ratio=ratio, floor=10, window=10, seconds=1.0) - sent < 100 + 2


# ---------------------------------------------------------------- wrk output

# `wrk -t1 -c16 -d5s --latency URL` (wrk 4.x): latencies print with two decimals and
# a unit, right-aligned; a one-letter unit ("s") leaves a trailing space (\x20 below).
WRK_FAST = """\
Running 5s test @ http://127.0.0.1:40123/patients/1
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.35us  120.07us   5.21ms   89.12%
    Req/Sec    38.12k     1.21k   40.02k    72.00%
  Latency Distribution
     50%  390.00us
     75%  450.00us
     90%  520.00us
     99%    1.02ms
  189663 requests in 5.00s, 29.38MB read
Requests/sec:  37932.61
Transfer/sec:      5.88MB
"""

WRK_SLOW_WITH_ERRORS = """\
Running 5s test @ http://127.0.0.1:40123/patients/1
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    25.41ms  180.33ms   1.99s    98.75%
    Req/Sec     1.43k   310.12     1.90k    70.00%
  Latency Distribution
     50%    8.10ms
     75%   10.25ms
     90%   14.90ms
     99%    1.20s\x20
  7012 requests in 5.01s, 1.05MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 41
Requests/sec:   1399.72
Transfer/sec:    214.65KB
"""

# Without --latency wrk prints no distribution.
WRK_WITHOUT_LATENCY = """\
Running 5s test @ http://127.0.0.1:40123/patients/1
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.35us  120.07us   5.21ms   89.12%
    Req/Sec    38.12k     1.21k   40.02k    72.00%
  189663 requests in 5.00s, 29.38MB read
Requests/sec:  37932.61
Transfer/sec:      5.88MB
"""


@pytest.mark.parametrize(
    ("output", "percent", "milliseconds"),
    [
        (WRK_FAST, 50, 0.390),  # us
        (WRK_FAST, 99, 1.02),  # ms
        (WRK_SLOW_WITH_ERRORS, 90, 14.9),
        (WRK_SLOW_WITH_ERRORS, 99, 1200.0),  # s, trailing space
    ],
)
def test_percentiles_are_read_from_the_distribution_in_milliseconds(
    output: str, percent: int, milliseconds: float
) -> None:
    assert percentile_ms(output, percent) == pytest.approx(milliseconds)


def test_a_clean_run_reports_its_rate_and_no_errors() -> None:
    result = parse_wrk(WRK_FAST)
    assert (result.rps, result.p50_ms, result.p99_ms) == pytest.approx((37932.61, 0.39, 1.02))
    assert result.errors == ""


def test_socket_errors_and_non_2xx_answers_are_reported() -> None:
    result = parse_wrk(WRK_SLOW_WITH_ERRORS)
    assert result.rps == pytest.approx(1399.72)
    assert "Non-2xx or 3xx responses: 41" in result.errors
    assert "read 12" in result.errors
    assert "timeout 3" in result.errors


def test_output_without_the_latency_distribution_is_refused() -> None:
    with pytest.raises(BenchError, match="50%"):
        parse_wrk(WRK_WITHOUT_LATENCY)


def test_output_without_a_request_rate_is_refused() -> None:
    with pytest.raises(BenchError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:40123 Connection refused\n")


def test_summaries_are_medians_per_column_and_keep_every_error() -> None:
    results = [
        WrkResult(rps=100.0, p50_ms=3.0, p99_ms=9.0, errors=""),
        WrkResult(rps=300.0, p50_ms=1.0, p99_ms=7.0, errors="Non-2xx or 3xx responses: 2"),
        WrkResult(rps=200.0, p50_ms=2.0, p99_ms=8.0, errors=""),
    ]
    summary = summarize(results)
    assert (summary.rps, summary.p50_ms, summary.p99_ms, summary.runs) == (200.0, 2.0, 8.0, 3)
    assert summary.errors == ["Non-2xx or 3xx responses: 2"]


def test_p99s_are_listed_from_the_most_even_split_of_the_connections_to_all_on_one_worker() -> None:
    results = [WrkResult(rps=1.0, p50_ms=0.5, p99_ms=p99, errors="") for p99 in (4.43, 1.85, 2.05, 2.61)]
    splits = ["connections 13+3", "connections 16", "connections 9+7", "connections 8+8"]
    assert p99_by_split(results, splits) == "8+8: 2.61 ms, 9+7: 2.05 ms, 13+3: 4.43 ms, 16: 1.85 ms"


def test_pin_keeps_a_process_its_threads_and_its_children_on_the_cpus_given() -> None:
    cpus = frozenset({max(os.sched_getaffinity(0))})
    with subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30"]) as parent:
        try:
            deadline = time.monotonic() + 10
            while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
                time.sleep(0.01)
            family = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
            assert len(family) >= 2

            pin(parent.pid, cpus)

            assert {frozenset(os.sched_getaffinity(p.pid)) for p in family} == {cpus}
        finally:
            for process in psutil.Process(parent.pid).children(recursive=True):
                process.kill()
            parent.kill()
