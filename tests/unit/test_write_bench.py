"""The pure parts of the write benchmarks: bench/write_reuse.py, and table 3's writes (bench/overhead.py)."""

from __future__ import annotations

import json
import random

import pytest

from bench import overhead, write_reuse
from bench.clients import AUTH, NOTE
from bench.overhead import WRITE_REQUEST, WrkRequest, WrkSettings, fresh_writes_config, lua_string, wrk_args
from bench.write_reuse import Tally, Write, gap_schedule, pool_timeout, tally

# ------------------------------------------------------------------ write_reuse


def test_each_way_has_its_pools_idle_timeout_against_hosps() -> None:
    assert pool_timeout("fresh", 0.2) is None
    assert pool_timeout("above", 0.2) == pytest.approx(0.4)
    assert pool_timeout("below", 0.2) == pytest.approx(0.15)  # 15 s against 20 s
    assert pool_timeout("proxy", 0.2) == pytest.approx(0.15)


def test_gaps_stay_within_their_band_and_are_never_negative() -> None:
    gaps = gap_schedule(0.2, 0.005, 500, random.Random(1))
    assert len(gaps) == 500
    assert all(0.195 <= g <= 0.205 for g in gaps)
    assert gap_schedule(0.2, 0.005, 20, random.Random(1)) == gaps[:20]  # seeded
    assert min(gap_schedule(0.001, 0.005, 200, random.Random(2))) == 0.0


def test_a_tally_tells_failed_writes_hosp_never_received_from_the_others() -> None:
    writes = [Write("a", 201, 0.2), Write("b", 502, 0.2), Write("c", None, 0.2), Write("d", 502, 0.2)]
    # "d" failed after HOSP received it (an answer lost on the way back); "b" and "c" never arrived.
    assert tally(writes, ["a", "d", None, "other"], skipped=3) == Tally(
        sent=4, failed=3, failed_unreceived=2, received_twice=0, skipped=3
    )


def test_a_write_hosp_received_twice_is_counted_once_and_only_if_it_is_ours() -> None:
    writes = [Write("a", 201, 0.1), Write("b", 201, 0.1)]
    assert tally(writes, ["a", "a", "a", "b", "x", "x"]).received_twice == 1


def test_the_table_gives_failures_per_1000_and_each_gap_band() -> None:
    args = write_reuse.parse_args(["--idle", "0.2", "--band", "5"])
    rows = [
        write_reuse.Row("above", "gaps", "at HOSP's", Tally(100, 7, 7, 0, 0)),
        write_reuse.Row("below", "gaps", "at the pool's", Tally(100, 0, 0, 0, 0)),
        write_reuse.Row("fresh", "load", "8 clients", Tally(600, 0, 0, 0, 0)),
    ]
    table = write_reuse.table(rows, args)
    assert table.rows[0][:6] == [
        "above",
        "400 ms",
        "1 client, 1 write at a time",
        "200 ± 5 ms (at HOSP's)",
        "7/100",
        "70",
    ]
    assert table.rows[1][3] == "150 ± 5 ms (at the pool's)"
    assert table.rows[2][1:4] == ["none", "8 clients", "0-500 ms pauses"]


def test_a_series_larger_than_hosps_request_log_is_refused() -> None:
    with pytest.raises(SystemExit):
        write_reuse.parse_args(["--load-writes", "1001"])


# ------------------------------------------------------------------ table 3's writes


def test_a_write_is_sent_by_a_wrk_script_with_its_method_and_json_body() -> None:
    assert WRITE_REQUEST.scripted
    assert not overhead.DEFAULT_REQUEST.scripted
    script = overhead.wrk_script(WRITE_REQUEST)
    assert script == f"wrk.method = [[POST]]\nwrk.body = [[{json.dumps(NOTE)}]]\n"

    args = wrk_args("wrk", "http://127.0.0.1:8080", WrkSettings(), WRITE_REQUEST, "/tmp/w.lua")

    assert args[-3:] == ["-s", "/tmp/w.lua", "http://127.0.0.1:8080/notes"]
    headers = [args[i + 1] for i, arg in enumerate(args) if arg == "-H"]
    assert headers == [f"Authorization: {AUTH['Authorization']}", "Content-Type: application/json"]


def test_a_lua_string_holds_any_text_exactly() -> None:
    assert lua_string("") == '""'
    assert lua_string('{"a": "]]"}') == '[=[{"a": "]]"}]=]'
    assert lua_string("x]=]y]]") == "[==[x]=]y]]]==]"


def test_a_get_needs_no_script() -> None:
    args = wrk_args("wrk", "http://127.0.0.1:8080", WrkSettings(), WrkRequest("/x"))
    assert "-s" not in args


def test_haproxys_like_for_like_variant_sends_writes_to_a_backend_that_closes_after_each_answer() -> None:
    rendered = "frontend proxy\n    default_backend hosp\n\nbackend hosp\n    server hosp 127.0.0.1:1\n"

    text = fresh_writes_config(rendered, "127.0.0.1:1")

    assert (
        "    use_backend hosp_writes if METH_POST || METH_DELETE || { method PATCH }\n    default_backend hosp\n"
        in text
    )
    writes = text.split("backend hosp_writes", 1)[1]
    assert "option http-server-close" in writes
    assert "server hosp 127.0.0.1:1" in writes
    assert "retries" not in writes


def test_haproxys_variant_needs_the_default_backend_line() -> None:
    with pytest.raises(overhead.BenchError):
        fresh_writes_config("backend hosp\n", "127.0.0.1:1")
