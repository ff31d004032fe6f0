"""The audit benchmark's pure parts: the generated access log, the plain COPY, the figures and verdicts.

The log is checked against the schema (chalicelib/audit/log_schema.py) line by line, and the
counts the bench checks the exports against are checked against the log itself. Small sizes,
no timing.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.audit_bench import (
    DAYS,
    EXPORT_FILTERS,
    FORMULA_AGENTS,
    RUNS,
    START,
    UNREADABLE,
    CsvFacts,
    ExportResult,
    LambdaResult,
    LogFacts,
    Series,
    _joined,
    _ms_range,
    alternated,
    csv_facts,
    expected_seconds,
    flat,
    lambda_filters,
    log_lines,
    measure,
    parse_args,
    plain_copy_sql,
    runs,
    shown,
    spread,
    targets_table,
    unreadable_slots,
    within,
    write_log,
)
from chalicelib.audit import log_schema

RECORDS = 6000


@pytest.fixture(scope="module")
def lines() -> list[tuple[int | None, str]]:
    return list(log_lines(RECORDS))


@pytest.fixture(scope="module")
def records(lines: list[tuple[int | None, str]]) -> list[dict[str, Any]]:
    return [json.loads(text) for ms, text in lines if ms is not None]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + "+00:00")


# ------------------------------------------------------------------ the generated log


def test_every_readable_line_has_exactly_the_schemas_fields_in_order_and_types(
    records: list[dict[str, Any]],
) -> None:
    types = {field.name: field.type.json for field in log_schema.FIELDS}

    for record in records:
        assert tuple(record) == log_schema.NAMES
        assert {name: log_schema.json_type_of(value) for name, value in record.items()} == types


def test_the_log_has_the_asked_number_of_lines_and_a_handful_unreadable(lines: list[tuple[int | None, str]]) -> None:
    unreadable = [text for ms, text in lines if ms is None]

    assert len(lines) == RECORDS
    assert len(unreadable) == UNREADABLE
    for text in unreadable:
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    assert lines[0][0] is not None
    assert lines[-1][0] is not None


def test_times_go_forward_over_the_days_and_both_fields_agree(
    lines: list[tuple[int | None, str]], records: list[dict[str, Any]]
) -> None:
    stamps = [ms for ms, _ in lines if ms is not None]
    moments = [at(record["logged_at"]) for record in records]

    assert stamps == sorted(stamps)
    assert START <= moments[0] < START + timedelta(hours=1)
    assert START + timedelta(days=DAYS) - timedelta(hours=1) < moments[-1] < START + timedelta(days=DAYS)
    for record, moment, ms in zip(records, moments, stamps, strict=True):
        assert datetime.fromisoformat(record["time"]) == moment
        assert moment.timestamp() * 1000 == ms


def test_the_log_has_the_variety_the_trail_query_works_on(records: list[dict[str, Any]]) -> None:
    users = Counter(record["user"] for record in records if record["listener"] == "public")
    statuses = Counter(record["status"] // 100 for record in records)
    public_ids = {record["request_id"] for record in records if record["listener"] == "public"}
    internal = [record for record in records if record["listener"] == "internal"]

    assert len([user for user in users if user]) >= 8
    assert "" in users  # unauthenticated requests
    assert statuses[4] > 0
    assert statuses[5] > 0
    assert any(record["path"].startswith("/patients/") for record in records)
    assert any(record["path"] != record["normalized_path"] for record in records)  # encoded paths
    assert any(record["method"] == "POST" and record["body_patient_id"] for record in records)
    assert any(record["path"] == "/notes" and "patient_id=" in record["query"] for record in records)
    assert any(record["user_agent"] in FORMULA_AGENTS for record in records)
    assert any(" : " in record["upstream_status"] for record in records)  # retried
    assert any(record["upstream_status"] == "" for record in records)  # answered by the proxy
    assert internal
    assert all(record["request_id"] in public_ids for record in internal)  # the screen that caused them
    assert all(record["viewer_address"] == "" for record in internal)


def test_the_same_seed_gives_the_same_log() -> None:
    assert list(log_lines(500, seed=3)) == list(log_lines(500, seed=3))
    assert list(log_lines(500, seed=3)) != list(log_lines(500, seed=4))


@pytest.mark.parametrize(("records", "expected"), [(10, 5), (6, 4), (2, 0), (1000, 5)])
def test_unreadable_lines_are_spread_and_never_first_or_last(records: int, expected: int) -> None:
    slots = unreadable_slots(records)

    assert len(slots) == expected
    assert all(0 < slot < records - 1 for slot in slots)


@pytest.mark.parametrize(
    ("shape", "values", "joined"),
    [
        ("", [], ""),
        ("200", ["a"], "a"),
        ("502 : 200", ["a", "b"], "a : b"),
        ("502 : 502, 200", ["a", "b", "c"], "a : b, c"),
    ],
)
def test_per_attempt_fields_follow_the_separators_of_upstream_status(
    shape: str, values: list[str], joined: str
) -> None:
    assert _joined(shape, values) == joined


def test_write_log_counts_the_lines_of_each_range(tmp_path: Path) -> None:
    path = tmp_path / "access.json"
    ranges = [EXPORT_FILTERS, lambda_filters(0.1), lambda_filters(1.0)]

    facts = write_log(path, 3000, ranges=ranges)

    readable = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            readable.append(at(json.loads(text)["logged_at"]))
        except ValueError:
            continue
    assert facts.records == 3000
    assert facts.unreadable == 3000 - len(readable) == UNREADABLE
    assert facts.bytes == path.stat().st_size
    for chosen in ranges:
        assert facts.rows_between(chosen) == sum(chosen.start <= moment < chosen.end for moment in readable)
    assert facts.rows_between(lambda_filters(1.0)) == len(readable)
    assert 0.09 < facts.rows_between(lambda_filters(0.1)) / len(readable) < 0.11


# ------------------------------------------------------------------ the two exports, small


def test_the_trail_export_has_the_plain_copys_rows_and_the_unreadable_ones(tmp_path: Path) -> None:
    log = tmp_path / "access.json"
    facts = write_log(log, 2000, ranges=[EXPORT_FILTERS])
    span = {"from": EXPORT_FILTERS.start.isoformat(), "to": EXPORT_FILTERS.end.isoformat()}

    found = {
        kind: measure({"kind": kind, "log": str(log), "out": str(tmp_path / f"{kind}.csv"), **span}) for kind in RUNS
    }

    trail, copy = csv_facts(tmp_path / "trail.csv"), csv_facts(tmp_path / "copy.csv")
    assert copy.rows == facts.rows_between(EXPORT_FILTERS)
    assert trail.rows == copy.rows + UNREADABLE
    assert trail.unreadable_rows == UNREADABLE
    assert (tmp_path / "copy.csv").read_text().splitlines()[0].split(",") == [
        "time", "user", "on_behalf_of", "authenticated", "client_ip", "method", "path", "patient_id", "status",
        "attempts", "request_id", "user_agent",
    ]  # fmt: skip
    for result in found.values():
        assert result["seconds"] >= 0
        assert result["peak_rss_kib"] > 0


def test_the_plain_copy_quotes_its_paths() -> None:
    sql = plain_copy_sql("/tmp/it's/access.json", "/tmp/o'k.csv")

    assert "'/tmp/it''s/access.json'" in sql
    assert "TO '/tmp/o''k.csv' (FORMAT csv, HEADER)" in sql
    assert sql.count("?") == 2
    assert "CASE" not in sql
    assert "JOIN" not in sql


# ------------------------------------------------------------------ figures and verdicts


def test_spread_and_shown_give_min_median_max() -> None:
    assert spread([3.0, 1.0, 2.0]).median == 2.0
    assert shown([2.5, 1.0, 4.0]) == "1.00 / 2.50 / 4.00"
    assert shown([1000.4, 990.6], 0) == "991 / 996 / 1000"
    with pytest.raises(ValueError, match="no values"):
        spread([])


@pytest.mark.parametrize(
    ("measured", "text"), [(1.2, "1.20x, within 1.5x"), (1.5, "1.50x, within 1.5x"), (2.104, "2.10x, over 1.5x")]
)
def test_within_says_the_ratio_and_the_verdict(measured: float, text: str) -> None:
    assert within(measured, 1.5) == text


def test_flat_allows_ten_percent() -> None:
    assert flat(100.0, 110.0)
    assert flat(100.0, 90.0)
    assert not flat(100.0, 111.0)


def test_alternated_reverses_the_order_every_other_time() -> None:
    assert alternated(["A", "B"], 3) == ["A", "B", "B", "A", "A", "B"]
    assert alternated(["10%", "100%"], 1) == ["10%", "100%"]
    assert runs(3) == "3 runs each, alternated"
    assert runs(1) == "1 run each"


def test_the_default_run_is_expected_to_take_a_few_minutes() -> None:
    full = expected_seconds(1_000_000, 3, {"export", "lambda"})

    assert 60 < full < 10 * 60
    assert expected_seconds(100_000, 3, {"export"}) < full


def result(seconds: float, rss_mib: float = 100, **more: Any) -> dict[str, Any]:
    return {"seconds": seconds, "cpu_seconds": seconds, "peak_rss_kib": rss_mib * 1024, "prepare_seconds": 0, **more}


def exports(a_seconds: list[float], b_seconds: list[float], a_rows: int, b_rows: int) -> ExportResult:
    series = Series()
    for a, b in zip(a_seconds, b_seconds, strict=True):
        series.add("trail", result(a))
        series.add("copy", result(b))
    return ExportResult(series, {"trail": CsvFacts(a_rows, UNREADABLE, 10), "copy": CsvFacts(b_rows, 0, 10)})


FACTS = LogFacts(1000, UNREADABLE, {_ms_range(EXPORT_FILTERS): 660}, 1, 0.1)


def test_the_targets_judge_the_ratio_of_the_medians() -> None:
    table, correct = targets_table(FACTS, exports([3.0, 9.0, 2.9], [2.0, 1.9, 2.1], 665, 660), None)

    assert table.rows[0][1:] == ["1.50x, within 1.5x", "yes"]
    assert table.rows[1][2] == "yes"
    assert correct

    table, correct = targets_table(FACTS, exports([4.0], [2.0], 665, 660), None)

    assert table.rows[0][1:] == ["2.00x, over 1.5x", "no"]
    assert correct  # speed is reported, not a failure of the run


def test_rows_that_do_not_add_up_fail_the_run() -> None:
    table, correct = targets_table(FACTS, exports([1.0], [1.0], 664, 660), None)

    assert table.rows[1][1:] == [f"A 664 = B 660 + {UNREADABLE}; in range 660", "no"]
    assert not correct


def lambda_result(small_mib: float, large_mib: float, sha: str = "ab") -> LambdaResult:
    series = Series()
    record = {"rows": 10, "unreadable_rows": 1, "bytes": 99, "sha256": sha, "url": "http://127.0.0.1/x"}
    series.add("10%", result(0.5, small_mib, **record))
    series.add("100%", result(1.5, large_mib, **record))
    series.add("floor", result(0.1, small_mib))
    facts = {name: CsvFacts(10, 1, 99) for name in ("10%", "100%")}
    return LambdaResult(series, facts, {"10%": "ab", "100%": "ab"}, {"10%": True, "100%": True})


def test_the_lambdas_memory_is_judged_flat_or_not() -> None:
    table, correct = targets_table(FACTS, None, lambda_result(64, 65))

    assert table.rows[0][1:] == ["64 MiB -> 65 MiB (1.02x)", "yes"]
    assert table.rows[1][1:] == ["yes, yes", "yes"]
    assert correct

    table, _ = targets_table(FACTS, None, lambda_result(64, 200))

    assert table.rows[0][2] == "no"


def test_a_record_with_another_hash_fails_the_run() -> None:
    _, correct = targets_table(FACTS, None, lambda_result(64, 64, sha="cd"))

    assert not correct


def test_the_command_line_refuses_what_it_cannot_run() -> None:
    assert isinstance(parse_args([]), argparse.Namespace)
    assert parse_args([]).records == 1_000_000
    for bad in (["--records", "5"], ["--repeats", "0"], ["--sections", "export,speed"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
