"""The screen benchmark's pure parts: percentiles and the per-round comparison, the order of
the probes, the sizes and bodies of screens, the tally of notes per result, the access
log's hand-off states, /proc's memory fields, the drain condition and the log counter.

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
    DIRECT,
    FRONT,
    MIB,
    MIN_BODY_BYTES,
    PLAIN,
    DrainWatch,
    Latency,
    MemoryResult,
    Snapshot,
    WorkerMemory,
    answer_key,
    chunks,
    count_events,
    differences,
    failed_statuses,
    flat,
    handoff_states,
    is_handoff,
    latency,
    median_of,
    memory_flat,
    note_key,
    notes_plan,
    paired,
    parse_size,
    parse_sizes,
    patient_for,
    percentile,
    ratios,
    screen_body,
    size_label,
    status_kib,
    tally,
)
from bench.toolkit import alternated
from chalicelib import note_jobs, note_worker
from infra.nginx.render import MAX_BODY_BYTES
from local.hosp_standin.api import screen_images

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


# ------------------------------------------------------------------ rounds compared


ROUNDS = [
    {FRONT: Latency(10, 1.5, 4.0), DIRECT: Latency(10, 1.0, 3.0)},
    {FRONT: Latency(10, 2.4, 9.0), DIRECT: Latency(10, 2.0, 3.5)},
    {FRONT: Latency(10, 1.2, 3.0), DIRECT: Latency(10, 1.2, 3.2)},
    {DIRECT: Latency(10, 9.0, 9.0)},  # every front door screen failed: no comparison
]


def test_differences_and_ratios_are_taken_round_by_round() -> None:
    assert differences(ROUNDS, "p50") == pytest.approx([0.5, 0.4, 0.0])
    assert differences(ROUNDS, "p99") == pytest.approx([1.0, 5.5, -0.2])
    assert ratios(ROUNDS) == pytest.approx([1.5, 1.2, 1.0])
    assert ratios(ROUNDS, "p99") == pytest.approx([4 / 3, 9 / 3.5, 3 / 3.2])


def test_the_median_of_the_differences_is_not_the_difference_of_the_medians() -> None:
    # Same round, same noise: the per-round difference is what the targets are read from.
    assert statistics.median(differences(ROUNDS, "p50")) == pytest.approx(0.4)
    assert median_of(ROUNDS[:3], FRONT, "p50") - median_of(ROUNDS[:3], DIRECT, "p50") == pytest.approx(0.3)
    assert median_of(ROUNDS, DIRECT, "p50") == pytest.approx(1.6)  # every round that has it


def test_paired_takes_the_median_of_each_steps_difference_and_ratio() -> None:
    pairs = [(11.0, 10.0), (30.0, 20.0), (9.0, 10.0), (100.0, 10.0)]
    assert paired(pairs) == (pytest.approx(5.5), pytest.approx(1.3))
    assert paired([(2.0, 1.0)]) == (1.0, 2.0)
    with pytest.raises(ValueError, match="no pairs"):
        paired([])


# ------------------------------------------------------------------ order, sizes, bodies, patients


def test_alternated_takes_the_two_paths_in_turns_a_b_then_b_a() -> None:
    order = alternated([FRONT, DIRECT], 4)
    steps = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert steps == [[FRONT, DIRECT], [DIRECT, FRONT], [FRONT, DIRECT], [DIRECT, FRONT]]


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("1KiB", 1024), ("4MiB", 4 * MIB), ("8MiB", 8 * MIB), ("16MiB-1", MAX_BODY_BYTES - 1),
     (" 16MiB ", MAX_BODY_BYTES), ("19", MIN_BODY_BYTES)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1 KiB", "1kib", "1KB", "4M", "-1", "16MiB+1", "17MiB", "16MiB-0x1", "18"])
def test_parse_size_refuses_other_text_and_sizes_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|bytes"):
        parse_size(text)


def test_parse_sizes_reads_a_list_in_order() -> None:
    assert parse_sizes("1KiB,4MiB,8MiB,16MiB-1") == [1024, 4 * MIB, 8 * MIB, MAX_BODY_BYTES - 1]
    assert parse_sizes("8MiB, 1KiB,") == [8 * MIB, 1024]
    with pytest.raises(ValueError, match="no size"):
        parse_sizes(" , ")


@pytest.mark.parametrize(
    ("size", "label"),
    [(1024, "1 KiB"), (4 * MIB, "4 MiB"), (MAX_BODY_BYTES - 1, "16 MiB - 1"), (1023, "1 KiB - 1"),
     (1000, "1,000 bytes"), (3 * MIB + 1024, "3073 KiB")],
)  # fmt: skip
def test_size_label(size: int, label: str) -> None:
    assert size_label(size) == label


@pytest.mark.parametrize("size", [MIN_BODY_BYTES, 20, 21, 22, 23, 1024, 4 * MIB + 1, MAX_BODY_BYTES - 1])
def test_a_screen_body_has_exactly_its_size_and_is_a_screen_the_stand_in_takes(size: int) -> None:
    body = screen_body("run", 3, size)
    assert len(body) == size
    images = json.loads(body)["images"]
    assert len(images) == 1
    image = base64.b64decode(images[0], validate=True)
    assert len(images[0]) % 4 == 0
    assert len(image) == (size - MIN_BODY_BYTES + 4) // 4 * 3
    assert screen_body("run", 3, size) == body  # a pure function


def test_a_screen_body_below_the_smallest_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        screen_body("run", 0, MIN_BODY_BYTES - 1)


def test_every_screen_gets_its_own_image_and_so_its_own_result() -> None:
    bodies = {screen_body(tag, i, 1024) for tag in ("run", "other") for i in range(500)}
    assert len(bodies) == 1000
    results = {
        screen_images(patient_for(i, 20), [base64.b64decode(json.loads(screen_body("run", i, 1024))["images"][0])])[
            "screening_id"
        ]
        for i in range(200)
    }
    assert len(results) == 200


def test_chunks_cut_a_body_into_pieces_of_the_size_and_a_last_one() -> None:
    body = bytes(range(256)) * 10
    pieces = list(chunks(body, 1000))
    assert [len(p) for p in pieces] == [1000, 1000, 560]
    assert b"".join(pieces) == body
    assert list(chunks(b"", 1000)) == []


def test_patients_are_screened_in_turn() -> None:
    assert [patient_for(i, 20) for i in (0, 1, 19, 20, 39)] == [1, 2, 20, 1, 20]
    assert Counter(patient_for(i, 20) for i in range(10_000)) == dict.fromkeys(range(1, 21), 500)


def test_the_notes_plan_gives_each_screen_its_own_image_but_the_re_sends() -> None:
    sizes = [1024, 4 * MIB]
    plan = notes_plan(sizes, per_size=3, resends=4, seed=1)
    assert len(plan) == 2 * 2 * 3 + 2 * 4
    distinct = [p for p in plan if not p.resend]
    assert len({p.image for p in distinct}) == len(distinct)
    assert Counter((p.size, p.chunked) for p in distinct) == {(s, c): 3 for s in sizes for c in (False, True)}
    resent = [p for p in plan if p.resend]
    assert Counter((p.size, p.image) for p in resent) == {(1024, 12): 4, (4 * MIB, 13): 4}
    assert Counter(p.chunked for p in resent) == {False: 4, True: 4}
    assert notes_plan(sizes, 3, 4, seed=1) == plan  # the seed decides the order
    assert notes_plan(sizes, 3, 4, seed=2) != plan
    assert sorted(notes_plan(sizes, 3, 4, seed=2), key=lambda p: (p.image, p.chunked)) == sorted(
        plan, key=lambda p: (p.image, p.chunked)
    )


# ------------------------------------------------------------------ notes per result


RESULTS = {"summary": {"abnormal": 0}, "screening_id": "scr_abc"}


def test_note_key_reads_the_body_the_worker_writes() -> None:
    job = note_jobs.new_job(3, RESULTS, "test-account", "ab" * 16, b"{}")
    assert note_key(note_worker.note_body(job)) == ("scr_abc", "ab" * 16)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (None, (None, None)),
        (5, (None, None)),
        ("", (None, None)),
        ("not json", (None, None)),
        ("[]", (None, None)),
        ("{}", (None, None)),
        ('{"request_id": 5, "results": []}', (None, None)),
        ('{"request_id": "", "results": {"screening_id": ""}}', (None, None)),
        ('{"request_id": "r1", "results": {"screening_id": 7}}', (None, "r1")),
        ('{"results": {"screening_id": "s1"}}', ("s1", None)),
    ],
)
def test_note_key_is_none_for_what_a_note_lacks(body: object, key: tuple[str | None, str | None]) -> None:
    assert note_key(body) == key


def test_answer_key_reads_the_stand_ins_screening_answer() -> None:
    answer = json.dumps(screen_images(4, [b"image"])).encode()
    assert answer_key(answer) == screen_images(4, [b"image"])["screening_id"]
    assert answer_key(answer) != answer_key(json.dumps(screen_images(5, [b"image"])).encode())
    for other in (b"", b"not json", b"[]", b'{"screening_id": 1}', b'{"error": "x"}'):
        assert answer_key(other) is None


def test_tally_exactly_once() -> None:
    found = tally([("s1", "r1"), ("s2", "r2"), ("s3", "r3")], [("s3", "r3"), ("s1", "r1"), ("s2", "r2")])
    assert found.met
    assert (found.screens, found.results, found.exactly_once, found.duplicates, found.lost, found.stray) == (
        3, 3, 3, 0, 0, 0,
    )  # fmt: skip
    assert found.per_result == {1: 3}


def test_tally_counts_duplicates_lost_and_stray_notes() -> None:
    successes = [("s1", "r1"), ("s2", "r2"), ("s3", "r3"), ("s4", "r4")]
    notes = [("s1", "r1"), ("s1", "r1"), ("s1", "r1"), ("s2", "r2"), ("s2", "r2"), ("s3", "r3"), ("x9", "r9"),
             (None, None)]  # fmt: skip
    found = tally(successes, notes)
    assert not found.met
    assert (found.screens, found.results, found.notes) == (4, 4, 8)
    assert found.per_result == {0: 1, 1: 1, 2: 1, 3: 1}  # s4, s3, s2, s1
    assert found.exactly_once == 1
    assert found.duplicates == 2  # s1 and s2
    assert found.extra_notes == 3  # two more of s1, one more of s2
    assert found.lost == 1  # s4
    assert found.stray == 2  # x9, and the note that names no result
    assert found.misattributed == 0


def test_identical_re_sends_are_one_result_and_want_one_note_naming_one_of_them() -> None:
    resent = [("s1", "r1"), ("s1", "r2"), ("s1", "r3")]
    found = tally(resent, [("s1", "r2")])
    assert found.met
    assert (found.screens, found.results, found.per_result) == (3, 1, {1: 1})
    twice = tally(resent, [("s1", "r1"), ("s1", "r3")])  # a note per send: what the marker must prevent
    assert not twice.met
    assert (twice.duplicates, twice.extra_notes, twice.lost) == (1, 1, 0)


def test_a_note_naming_another_screens_request_id_is_misattributed() -> None:
    found = tally([("s1", "r1"), ("s2", "r2")], [("s1", "r2"), ("s2", None)])
    assert (found.exactly_once, found.misattributed, found.stray) == (2, 2, 0)
    assert not found.met


def test_tally_duplicates_among_stray_notes_count_too() -> None:
    found = tally([("s1", "r1")], [("s1", "r1"), ("x", "rx"), ("x", "rx")])
    assert (found.duplicates, found.extra_notes, found.stray, found.lost) == (1, 1, 2, 0)
    assert not found.met


def test_tally_of_nothing_is_met() -> None:
    found = tally([], [])
    assert found.met
    assert (found.screens, found.results, found.notes, found.per_result) == (0, 0, 0, {})


def test_tally_counts_a_screen_once_however_often_it_was_reported() -> None:
    found = tally([("s1", "r1"), ("s1", "r1")], [("s1", "r1")])
    assert found.met
    assert (found.screens, found.results) == (1, 1)


# ------------------------------------------------------------------ hand-offs


def access(request_id: str, state: str, route: str = "screen") -> str:
    return json.dumps({"request_id": request_id, "route": route, "status": 200, "note_handoff": state})


def test_handoff_states_count_the_access_logs_field_for_the_given_requests() -> None:
    lines = [
        access("r1", "sent"),
        access("r2", "sent"),
        access("r3", "not-2xx"),
        access("r4", "incomplete"),
        access("other", "sent"),  # not one of ours
        access("r1", "", route="hosp"),  # the note worker's call for r1's note, on the internal listener
        json.dumps({"request_id": "r5", "route": "screen"}),  # no field: "-"
        access("r6", "", route="hosp"),  # only a line of another route
        "not json",
        "[1]",
    ]
    assert handoff_states(lines, ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]) == {
        "sent": 2,
        "not-2xx": 1,
        "incomplete": 1,
        "-": 1,
        "no line": 2,  # r6, r7
    }
    assert handoff_states(lines, []) == {}


def test_failed_statuses_count_the_proxys_failed_hand_offs_by_status() -> None:
    lines = [
        json.dumps({"event": "note_handoff_failed", "request_id": "r1", "status": "400", "handoff": "{}"}),
        json.dumps({"event": "note_handoff_failed", "request_id": "r2", "status": "502", "handoff": "{}"}),
        json.dumps({"event": "note_handoff_failed", "request_id": "r3", "status": "400", "handoff": "{}"}),
        json.dumps({"event": "note_handoff_failed", "request_id": "r4", "handoff": "{}"}),
        json.dumps({"event": "something_else"}),
        "not json",
    ]
    assert failed_statuses(lines) == {"400": 2, "502": 1, "-": 1, "unreadable": 2}
    assert failed_statuses([]) == {}


def handoff(**changes: object) -> bytes:
    answer = base64.b64encode(b'{"a":1}').decode()
    fields = {"patient_id": "4", "user": "nurse", "request_id": "ab" * 16, "answer": answer}
    return json.dumps({**fields, **changes}).encode()


def test_is_handoff_takes_what_the_front_door_posts() -> None:
    assert is_handoff(handoff())
    assert is_handoff(handoff(extra=1))  # unknown keys are no matter


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        handoff(patient_id=4),
        handoff(answer="not base64!"),
        handoff(answer=base64.b64encode(b"not json").decode()),
        handoff(answer=base64.b64encode(b"\xff\xfe").decode()),
        json.dumps({"patient_id": "4", "user": "nurse", "request_id": "ab" * 16}).encode(),
    ],
)
def test_is_handoff_refuses_anything_else(body: bytes) -> None:
    assert not is_handoff(body)


# ------------------------------------------------------------------ memory


STATUS = """Name:\tnginx
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t   60724 kB
VmHWM:\t    8312 kB
VmRSS:\t    7964 kB
Threads:\t1
"""


def test_status_kib_reads_a_field_of_proc_status() -> None:
    assert status_kib(STATUS, "VmHWM") == 8312
    assert status_kib(STATUS, "VmRSS") == 7964
    assert status_kib(STATUS, "VmSwap") is None
    assert status_kib(STATUS, "Threads") is None  # not in kB
    assert status_kib(STATUS, "Vm") is None


def shot(screens: int, size: int, *workers: tuple[int, int, float]) -> Snapshot:
    return Snapshot(screens, size, tuple(WorkerMemory(100 + i, *w) for i, w in enumerate(workers)))


def test_a_snapshot_sums_rss_and_cpu_and_takes_the_largest_peak() -> None:
    found = shot(100, MIB, (8000, 9000, 1.5), (7000, 9500, 0.25))
    assert (found.rss_kib, found.largest_rss_kib, found.hwm_kib, found.cpu_seconds) == (15000, 8000, 9500, 1.75)
    assert shot(0, 0).hwm_kib == 0


def test_memory_is_flat_while_peak_and_rss_grow_less_than_half_a_body() -> None:
    before = shot(100, 1024, (8000, 9000, 1.0), (8000, 9000, 1.0))
    body = 8 * MIB  # half a body: 4096 KiB
    assert flat(before, shot(100, body, (8800, 10_000, 2.0), (8100, 9100, 2.0)), body)
    assert not flat(before, shot(100, body, (8000, 13_096, 2.0), (8000, 9000, 2.0)), body)  # one worker's peak
    assert not flat(before, shot(100, body, (10_048, 9000, 2.0), (10_048, 9000, 2.0)), body)  # the RSS, summed


def test_memory_flat_compares_each_batch_of_screens_with_the_one_before_and_leaves_the_baseline_out() -> None:
    snapshots = [
        shot(0, 0, (8000, 8000, 0.0)),
        shot(100, 1024, (10_000, 10_400, 0.1)),
        shot(100, 8 * MIB, (10_500, 11_400, 1.0)),
        Snapshot(100, 8 * MIB, (WorkerMemory(100, 30_000, 30_000, 2.0),), PLAIN),  # not a screen: no matter
    ]
    result = MemoryResult(snapshots, [0, 0, 0], [0.1, 30.0, 20.0], 0, Counter())
    assert memory_flat(result) == [(8 * MIB, 1000, 500, True)]


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
