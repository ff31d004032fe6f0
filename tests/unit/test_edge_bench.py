"""The edge benchmark's pure parts: what wrk is told to send, the ratios, the edge's access log, the tables.

The bench itself (bench/edge_bench.py) is not run here: it needs minutes of a quiet machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bench.clients import AUTH
from bench.edge_bench import (
    CLIENT_CLOSED,
    CPU_COLUMNS,
    TARGETS,
    EdgeLog,
    cpu_per_request_us,
    cpu_table,
    paired_rps,
    ratio,
    ratios_table,
    read_edge_log,
    results_table,
    server_cpu_seconds,
    wrk_errors,
)
from bench.overhead import DEFAULT_REQUEST, WRK_PATH, WrkRequest, WrkResult, WrkSettings, wrk_args
from local.processes import LoopbackServer

SETTINGS = WrkSettings(threads=1, connections=16, duration=5)


def run(rps: float, p50: float = 1.0, p99: float = 5.0, errors: str = "") -> WrkResult:
    return WrkResult(rps=rps, p50_ms=p50, p99_ms=p99, errors=errors)


# ------------------------------------------------------------------ what wrk sends


def test_by_default_wrk_sends_table_3s_request_with_the_credentials() -> None:
    args = wrk_args("wrk", "http://127.0.0.1:8080", SETTINGS)

    assert args == ["wrk", "-t1", "-c16", "-d5s", "--latency", "-H", f"Authorization: {AUTH['Authorization']}",
                    f"http://127.0.0.1:8080{WRK_PATH}"]  # fmt: skip
    assert wrk_args("wrk", "http://127.0.0.1:8080", SETTINGS, DEFAULT_REQUEST) == args


def test_a_targets_own_path_and_headers_follow_the_credentials() -> None:
    request = WrkRequest("/hospitals", (("Host", "hosp.localhost"), ("X-Origin-Verify", "s" * 48)))

    args = wrk_args("wrk", "https://127.0.0.1:8443", SETTINGS, request)

    assert args[-1] == "https://127.0.0.1:8443/hospitals"
    headers = [args[i + 1] for i, arg in enumerate(args) if arg == "-H"]
    assert headers == [
        f"Authorization: {AUTH['Authorization']}",
        "Host: hosp.localhost",
        "X-Origin-Verify: " + "s" * 48,
    ]


# ------------------------------------------------------------------ ratios


def test_paired_ratios_are_taken_round_by_round() -> None:
    assert paired_rps([run(90), run(50)], [run(100), run(100)]) == pytest.approx([0.9, 0.5])


def test_paired_ratios_need_as_many_rounds_on_both_sides() -> None:
    with pytest.raises(ValueError, match="zip"):
        paired_rps([run(90)], [run(100), run(100)])


def test_a_ratio_is_of_the_medians_and_the_paired_ratio_the_median_of_the_rounds() -> None:
    # Medians: numerator 100 req/s, p50 2 ms, p99 9 ms; denominator 200 req/s, p50 1 ms, p99 6 ms.
    numerator = [run(100, 2.0, 9.0), run(60, 3.0, 10.0), run(150, 1.5, 8.0)]
    denominator = [run(200, 1.0, 6.0), run(100, 1.2, 7.0), run(300, 0.8, 5.0)]

    r = ratio(numerator, denominator)

    assert (r.rps, r.p50, r.p99) == pytest.approx((0.5, 2.0, 1.5))
    assert (r.added_p50_ms, r.added_p99_ms) == pytest.approx((1.0, 3.0))
    assert r.paired_rps == pytest.approx(0.5)  # rounds 0.5, 0.6, 0.5


def test_the_paired_ratio_can_differ_from_the_ratio_of_the_medians() -> None:
    # The machine slows both targets in round 2: paired, the numerator is always at 0.9x.
    numerator = [run(90), run(45), run(99)]
    denominator = [run(100), run(50), run(110)]

    r = ratio(numerator, denominator)

    assert r.paired_rps == pytest.approx(0.9)
    assert r.rps == pytest.approx(0.9)
    uneven = ratio([run(90), run(45), run(80)], denominator)
    assert uneven.rps == pytest.approx(80 / 100)
    assert uneven.paired_rps == pytest.approx(0.9)  # rounds 0.9, 0.9, 0.727


# ------------------------------------------------------------------ the edge's access log

# Lines as local/edge/templates/logging.conf writes them.
EDGE_LOG = """\
2026-11-28T14:35:10+00:00 5f1c0a 127.0.0.1:40100 TLSv1.3 "hosp.localhost" "GET /hospitals HTTP/1.1" 200 200 0.001
2026-11-28T14:35:10+00:00 5f1c0b 127.0.0.1:40100 TLSv1.3 "hosp.localhost" "GET /hospitals HTTP/1.1" 200 200 0.000
2026-11-28T14:35:10+00:00 5f1c0c 127.0.0.1:40102 TLSv1.3 "hosp.localhost" "GET /a\\"b HTTP/1.1" 200 200 0.001
2026-11-28T14:35:12+00:00 5f1c0d 127.0.0.1:40104 TLSv1.3 "hosp.localhost" "GET /hospitals HTTP/1.1" 499 - 0.002
"""


def test_the_edge_log_gives_requests_protocols_statuses_and_connections() -> None:
    log = read_edge_log(EDGE_LOG)

    assert log.requests == 4
    assert log.protocols == {"TLSv1.3": 4}
    assert log.statuses == {"200": 3, CLIENT_CLOSED: 1}
    assert log.connections == 3
    assert log.requests_per_connection == pytest.approx(4 / 3)
    assert log.unreadable == 0
    assert log.problems(closed_allowed=16) == []


def test_plain_http_or_tls_1_2_at_the_edge_is_a_problem() -> None:
    text = EDGE_LOG + (
        '2026-11-28T14:35:13+00:00 5f1c0e 127.0.0.1:40106 TLSv1.2 "hosp.localhost" "GET / HTTP/1.1" 200 200 0.001\n'
        '2026-11-28T14:35:13+00:00 5f1c0f 127.0.0.1:40108  "hosp.localhost" "GET / HTTP/1.1" 301 - 0.000\n'
    )
    log = read_edge_log(text)

    assert log.protocols == {"TLSv1.3": 4, "TLSv1.2": 1, "-": 1}
    problems = log.problems(closed_allowed=16)
    assert any("TLSv1.2" in p and "'-': 1" in p for p in problems)
    assert any("'301': 1" in p for p in problems)


def test_more_closed_requests_than_wrk_stops_explain_is_a_problem() -> None:
    log = read_edge_log(EDGE_LOG)

    assert log.problems(closed_allowed=1) == []
    assert log.problems(closed_allowed=0) == [
        "1 requests closed by the client (499), more than wrk's stops explain (0)"
    ]


def test_an_empty_or_unreadable_log_is_a_problem() -> None:
    assert read_edge_log("").problems(closed_allowed=16) == ["the edge logged no request"]
    log = read_edge_log(EDGE_LOG + "not a log line\n")
    assert log.unreadable == 1
    assert log.problems(closed_allowed=16) == ["1 line(s) of the edge's log could not be read"]
    assert EdgeLog(0, {}, {}, 0, 0).requests_per_connection == 0.0


# ------------------------------------------------------------------ the tables


RESULTS = {
    "A": [run(20000, 0.70, 4.0), run(22000, 0.65, 3.0)],
    "B": [run(19000, 0.72, 4.2), run(21000, 0.70, 3.2)],
    "C": [run(9000, 1.60, 8.0), run(11000, 1.50, 7.0)],
}


def test_the_results_table_has_one_row_per_target_with_its_medians() -> None:
    table = results_table(RESULTS, SETTINGS, "static")

    assert "wrk -t1 -c16 -d5s GET /hospitals, static upstream" in table.title
    assert [row[:7] for row in table.rows] == [
        ["A", TARGETS["A"], "21000", "0.675", "3.500", "2", "none"],
        ["B", TARGETS["B"], "20000", "0.710", "3.700", "2", "none"],
        ["C", TARGETS["C"], "10000", "1.550", "7.500", "2", "none"],
    ]


def test_the_ratios_table_gives_b_over_a_c_over_b_and_c_over_a() -> None:
    table = ratios_table(RESULTS)

    rows = {row[0]: row[1:] for row in table.rows}
    assert list(rows) == ["B/A", "C/B", "C/A"]
    assert rows["B/A"] == ["0.95x", "0.95x", "1.05x", "1.06x", "+0.035", "+0.200"]
    # Rounds 0.474 and 0.524: their median is 0.499.
    assert rows["C/B"] == ["0.50x", "0.50x", "2.18x", "2.03x", "+0.840", "+3.800"]
    assert any("B/A 0.95, 0.95" in note for note in table.notes)
    assert "| B/A | 0.95x |" in table.markdown()


def test_any_wrk_error_is_named_with_its_target_and_run() -> None:
    results = {**RESULTS, "B": [run(100), run(100, errors="Non-2xx or 3xx responses: 7")]}

    assert wrk_errors(RESULTS) == []
    assert wrk_errors(results) == ["B run 2: Non-2xx or 3xx responses: 7"]


# ------------------------------------------------------------------ CPU per request

# A process group's leader and its child, each burning 0.2 s of CPU, saying so, then sleeping.
BURN = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\nprint(flush=True)\n"
LEADER_AND_CHILD_BURNING = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {BURN + 'time.sleep(60)'!r}])\n"
    f"{BURN}time.sleep(60)\n"
)


def test_a_servers_cpu_seconds_count_every_process_of_its_group() -> None:
    server = LoopbackServer()
    server.process = subprocess.Popen(
        [sys.executable, "-c", LEADER_AND_CHILD_BURNING], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert server.process.stdout is not None
        server.process.stdout.readline()
        server.process.stdout.readline()  # both have burnt theirs
        assert server_cpu_seconds(server) >= 0.4
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        if server.process.stdout is not None:
            server.process.stdout.close()


def test_cpu_per_request_is_each_columns_median_in_microseconds_and_their_total() -> None:
    # Run 1: 1000 req/s x 2 s = 2000 requests; run 2: 4000; run 3: 1000.
    runs = [run(1000), run(2000), run(500)]
    cpu = [
        {"upstream": 0.02, "proxy B": 0.04, "edge": 0.06, "wrk": 0.02},
        {"upstream": 0.02, "proxy B": 0.04, "edge": 0.08, "wrk": 0.04},
        {"upstream": 0.03, "proxy B": 0.02, "edge": 0.05, "wrk": 0.01, "proxy A": 0.0},
    ]

    per_request = cpu_per_request_us(cpu, runs, duration=2)

    assert per_request["upstream"] == pytest.approx(10.0)  # 10, 5, 30
    assert per_request["proxy B"] == pytest.approx(20.0)  # 20, 10, 20
    assert per_request["edge"] == pytest.approx(30.0)  # 30, 20, 50
    assert per_request["wrk"] == pytest.approx(10.0)  # 10, 10, 10
    assert per_request["proxy A"] == 0.0
    assert per_request["total"] == pytest.approx(70.0)  # 70, 45, 110: the median of the totals
    assert set(per_request) == {*CPU_COLUMNS, "total"}


def test_the_cpu_table_names_what_the_edge_adds_to_b() -> None:
    results = {"B": [run(1000)], "C": [run(500)]}
    cpu = {"B": [{"upstream": 0.01, "proxy B": 0.03, "wrk": 0.01}], "C": [{"upstream": 0.005, "proxy B": 0.015,
                                                                           "edge": 0.02, "wrk": 0.01}]}  # fmt: skip

    table = cpu_table(cpu, results, duration=1)

    assert table.headers == ["target", *CPU_COLUMNS, "total"]
    assert table.rows == [
        ["B", "10.0", "0.0", "30.0", "0.0", "10.0", "50.0"],
        ["C", "10.0", "0.0", "30.0", "40.0", "20.0", "100.0"],
    ]
    assert table.notes[0] == "C - B, total: +50.0 us per request, of which the edge 40.0 us."
