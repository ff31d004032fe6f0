"""The screen benchmark's pure parts: percentiles, the order of the latency probes, the
images, the tally of notes per request id, the drain condition and the log readers.

Percentiles are checked against the standard library's own; the tally against counts
made by hand on small cases, and against the note body the worker really writes.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
from collections import Counter

import pytest

from bench.screen_bench import (
    TIMELINE,
    DrainWatch,
    count_events,
    image_for,
    interceptor_stamps,
    latency,
    log_time_ms,
    note_request_id,
    patient_for,
    percentile,
    screen_spans,
    tally,
    timeline,
)
from bench.toolkit import alternated
from chalicelib import note_jobs, note_worker

# ------------------------------------------------------------------ percentiles


def test_percentile_matches_the_standard_librarys_inclusive_quantiles() -> None:
    rng = random.Random(7)
    for size in (2, 3, 10, 101, 1000):
        values = [rng.expovariate(1 / 5) for _ in range(size)]
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for q in (1, 25, 50, 90, 99):
            assert percentile(values, q) == pytest.approx(cuts[q - 1])


def test_percentile_ends_and_small_cases() -> None:
    assert percentile([3.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5  # the mean of the two middle values
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0  # order does not matter
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_a_rank_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.100"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_gives_count_p50_p99() -> None:
    found = latency([float(v) for v in range(1, 101)])
    assert (found.count, found.p50, found.p99) == (100, 50.5, pytest.approx(99.01))


# ------------------------------------------------------------------ order, images, patients


def test_alternated_measures_each_target_once_per_step_in_a_rotating_order() -> None:
    names = ["a", "b", "c"]
    order = alternated(names, 6)
    assert order[:9] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert Counter(order) == {"a": 6, "b": 6, "c": 6}
    steps = [order[i : i + 3] for i in range(0, len(order), 3)]
    assert all(sorted(step) == names for step in steps)
    # Every name is first, second and third equally often.
    for position in range(3):
        assert Counter(step[position] for step in steps) == {"a": 2, "b": 2, "c": 2}


def test_every_screen_gets_distinct_image_bytes_of_the_given_size() -> None:
    images = {image_for("run", i) for i in range(2000)} | {image_for("other", i) for i in range(2000)}
    assert len(images) == 4000
    assert len(base64.b64decode(image_for("run", 1, size=1000))) == 1000
    assert image_for("run", 5) == image_for("run", 5)  # a pure function


def test_patients_are_screened_in_turn() -> None:
    assert [patient_for(i, 20) for i in (0, 1, 19, 20, 39)] == [1, 2, 20, 1, 20]
    assert Counter(patient_for(i, 20) for i in range(10_000)) == dict.fromkeys(range(1, 21), 500)


# ------------------------------------------------------------------ notes per request id


def test_note_request_id_reads_the_body_the_worker_writes() -> None:
    job = note_jobs.new_job(3, {"summary": {"abnormal": 0}}, "test-account", "ab" * 16, b"{}")
    assert note_request_id(note_worker.note_body(job)) == "ab" * 16


@pytest.mark.parametrize("body", [None, 5, "", "not json", "[]", '{"request_id": 5}', '{"request_id": ""}', "{}"])
def test_note_request_id_is_none_for_anything_else(body: object) -> None:
    assert note_request_id(body) is None


def test_tally_exactly_once() -> None:
    found = tally(["r1", "r2", "r3"], ["r3", "r1", "r2"])
    assert found.met
    assert (found.exactly_once, found.duplicates, found.lost, found.stray) == (3, 0, 0, 0)
    assert found.per_screen == {1: 3}


def test_tally_counts_duplicates_lost_and_stray_notes() -> None:
    succeeded = ["r1", "r2", "r3", "r4"]
    notes = ["r1", "r1", "r1", "r2", "r2", "r3", "x9", None]
    found = tally(succeeded, notes)
    assert not found.met
    assert found.successful == 4
    assert found.notes == 8
    assert found.per_screen == {0: 1, 1: 1, 2: 1, 3: 1}  # r4, r3, r2, r1
    assert found.exactly_once == 1
    assert found.duplicates == 2  # r1 and r2
    assert found.extra_notes == 3  # two more of r1, one more of r2
    assert found.lost == 1  # r4
    assert found.stray == 2  # x9, and the note that names no request id


def test_tally_duplicates_among_stray_notes_count_too() -> None:
    found = tally(["r1"], ["r1", "x", "x"])
    assert (found.duplicates, found.extra_notes, found.stray, found.lost) == (1, 1, 2, 0)
    assert not found.met


def test_tally_of_nothing_is_met() -> None:
    found = tally([], [])
    assert found.met
    assert (found.successful, found.notes, found.per_screen) == (0, 0, {})


def test_tally_counts_a_request_id_once_however_often_it_was_reported() -> None:
    assert tally(["r1", "r1"], ["r1"]).met


# ------------------------------------------------------------------ draining


def test_drain_waits_for_an_empty_queue_and_every_job() -> None:
    watch = DrainWatch(expected=10, settle=5.0)
    assert not watch.observe(0.0, in_queue=3, handled=7)
    assert not watch.observe(1.0, in_queue=0, handled=9)  # empty, one job not yet counted
    assert watch.observe(1.5, in_queue=0, handled=10)
    assert watch.complete
    assert watch.drained_at == 1.5


def test_drain_gives_up_on_missing_jobs_once_the_queue_stayed_empty() -> None:
    watch = DrainWatch(expected=10, settle=5.0)
    assert not watch.observe(0.0, in_queue=0, handled=8)
    assert not watch.observe(2.0, in_queue=1, handled=8)  # a redelivered message: not empty after all
    assert not watch.observe(3.0, in_queue=0, handled=9)
    assert not watch.observe(7.9, in_queue=0, handled=9)
    assert watch.observe(8.0, in_queue=0, handled=9)
    assert not watch.complete
    assert watch.drained_at == 3.0  # the start of the empty stretch


# ------------------------------------------------------------------ logs


def test_count_events_reads_json_lines_and_skips_the_rest() -> None:
    lines = [
        '{"event": "note_written"}',
        '{"event": "note_written", "request_id": "r"}',
        '{"event": "note_write_deferred"}',
        '{"event": "something_else"}',
        '127.0.0.1 - - [28/Nov/2026] "POST /x" 200 -',
        "[1, 2]",
        '{"_aws": {}, "NotesWritten": 1}',
    ]
    assert count_events(lines, ["note_written", "note_write_deferred", "note_job_dead_lettered"]) == {
        "note_written": 2,
        "note_write_deferred": 1,
        "note_job_dead_lettered": 0,
    }


def test_log_time_ms_reads_nginx_and_app_times() -> None:
    assert log_time_ms("2026-11-28T09:36:47.247+00:00") == pytest.approx(1795858607247)
    assert log_time_ms("2026-11-28T09:36:47.247Z") == pytest.approx(1795858607247)


def access(listener: str, request_id: str, end: str, request_time: float, path: str = "/patients/1/screen") -> str:
    time = f"2026-11-28T09:00:{end}+00:00"
    fields = {"time": time, "request_id": request_id, "method": "POST", "path": path, "listener": listener}
    return json.dumps({**fields, "request_time": request_time})


def metric(name: str, at_ms: float) -> str:
    return json.dumps({"_aws": {"Timestamp": at_ms}, name: 1})


BASE_MS = log_time_ms("2026-11-28T09:00:00.000+00:00")


def test_screen_spans_keep_screens_of_each_listener_only() -> None:
    lines = [
        access("public", "r1", "01.050", 0.050),
        access("internal", "r1", "01.020", 0.004),
        access("internal", "r2", "02.000", 0.001, path="/notes"),
        json.dumps({"method": "GET", "path": "/patients/1/screen", "listener": "public"}),
        "not json",
    ]
    spans = screen_spans(lines)
    assert set(spans["public"]) == {"r1"}
    assert set(spans["internal"]) == {"r1"}
    start, end = spans["public"]["r1"]
    assert (start - BASE_MS, end - BASE_MS) == (pytest.approx(1000), pytest.approx(1050))


def test_interceptor_stamps_pair_the_metric_times_with_the_request_id_after_them() -> None:
    lines = [
        "Serving on http://127.0.0.1:1",
        metric("ScreensIntercepted", 100),
        metric("NoteJobsQueued", 110),
        '{"event": "note_job_queued", "request_id": "r1"}',
        metric("ScreensIntercepted", 200),  # a screen that made no job (HOSP refused it)
        '{"event": "screen_not_noted", "request_id": "r2"}',
        metric("ScreensIntercepted", 300),
        metric("NoteJobsQueued", 312),
        '{"event": "note_job_queued", "request_id": "r3"}',
    ]
    assert interceptor_stamps(lines) == {"r1": (100.0, 110.0), "r3": (300.0, 312.0)}


def test_timeline_splits_an_intercepted_screen_into_parts_that_add_up() -> None:
    # Public listener 1.000-1.050 s; the interceptor starts at 1.002; its screen call on
    # the internal listener 1.004-1.008; the job is queued at 1.020.
    access_lines = [
        access("public", "r1", "01.050", 0.050),
        access("internal", "r1", "01.008", 0.004),
        access("internal", "d1", "02.003", 0.003),  # a direct screen
        access("internal", "other", "03.000", 0.002),  # not one of ours
    ]
    chalice_lines = [
        metric("ScreensIntercepted", BASE_MS + 1002),
        metric("NoteJobsQueued", BASE_MS + 1020),
        '{"event": "note_job_queued", "request_id": "r1"}',
    ]
    parts = timeline(access_lines, chalice_lines, intercepted={"r1"}, direct={"d1"})
    assert set(parts) == {key for key, _ in TIMELINE}
    expected = {"intake": 2, "to_call": 2, "call": 4, "queue": 12, "answer": 30, "total": 50, "direct": 3}
    assert {key: [round(v, 3) for v in values] for key, values in parts.items()} == {
        key: [float(v)] for key, v in expected.items()
    }
    assert sum(parts[key][0] for key in ("intake", "to_call", "call", "queue", "answer")) == pytest.approx(50)


def test_timeline_skips_requests_missing_from_a_log() -> None:
    access_lines = [access("public", "r1", "01.050", 0.050)]  # no internal line
    queued = '{"event": "note_job_queued", "request_id": "r1"}'
    chalice_lines = [metric("ScreensIntercepted", 1), metric("NoteJobsQueued", 2), queued]
    parts = timeline(access_lines, chalice_lines, intercepted={"r1"}, direct=set())
    assert all(values == [] for values in parts.values())
