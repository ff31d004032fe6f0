"""The note job's marker and time, and the log lines `requeue` reads jobs from (chalicelib/note_jobs.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib import note_intake, note_jobs, requeue
from chalicelib.note_intake import parse_handoff

ANSWER = b'{"screening_id":"scr_1","findings":[]}'
REQUEST_ID = "0123456789abcdef" * 2


def body(**change: Any) -> str:
    """A hand-off's body as the proxy posts it."""
    answer = base64.b64encode(ANSWER).decode()
    return json.dumps({"patient_id": "7", "user": "nurse-joy", "request_id": REQUEST_ID, "answer": answer, **change})


# ------------------------------------------------------------------ marker


def test_the_marker_is_of_the_patient_and_the_answers_bytes_and_nothing_else() -> None:
    expected = "xray-" + hashlib.sha256(b"xray-note-v2\n7\n" + ANSWER).hexdigest()[:40]

    assert note_jobs.marker(7, ANSWER) == expected
    assert note_jobs.marker(7, ANSWER + b" ") != expected
    assert note_jobs.marker(8, ANSWER) != expected


def test_two_screens_of_one_result_make_jobs_with_one_marker() -> None:
    first = note_jobs.new_job(7, {}, "a", "1" * 32, ANSWER)
    second = note_jobs.new_job(7, {}, "b", "2" * 32, ANSWER)

    assert first.marker == second.marker
    assert first.request_id != second.request_id


def test_a_job_asked_at_a_given_time_says_it_in_utc() -> None:
    asked = datetime.fromisoformat("2026-12-07T11:00:00.5+01:00")

    job = note_jobs.new_job(7, {}, "a", "1" * 32, ANSWER, requested_at=asked)

    assert job.requested_at == "2026-12-07T10:00:00.500Z"
    assert note_jobs.NoteJob.from_json(job.to_json()) == job


# ------------------------------------------------------------------ requeue's lines


def proxy_line(handoff: Any, **fields: Any) -> str:
    record = {
        "time": "2026-12-07T10:00:00+00:00",
        "event": "note_handoff_failed",
        "request_id": REQUEST_ID,
        "status": "502",
        "upstream_status": "502",
        "handoff": handoff,
        **fields,
    }
    return json.dumps(record)


def test_a_proxys_failed_hand_off_line_makes_the_job_the_intake_would() -> None:
    (job,), unreadable = requeue.jobs_in_log([proxy_line(body())])

    assert unreadable == 0
    assert job == note_intake.job_of(parse_handoff(body()), datetime(2026, 12, 7, 10, tzinfo=UTC))
    assert job.requested_at == "2026-12-07T10:00:00.000Z"


def test_a_proxy_line_without_a_readable_time_is_asked_now() -> None:
    (job,), _ = requeue.jobs_in_log([proxy_line(body(), time="yesterday")])

    assert job.requested_at.startswith(datetime.now(UTC).strftime("%Y-%m-%d"))


def test_the_apps_not_queued_line_gives_back_its_job() -> None:
    job = note_jobs.new_job(7, {"a": 1}, "nurse-joy", REQUEST_ID, ANSWER)
    line = json.dumps(
        {"level": "ERROR", "event": "note_job_not_queued", "reason": "down", "job": json.loads(job.to_json())}
    )

    assert requeue.jobs_in_log([line]) == ([job], 0)


@pytest.mark.parametrize(
    "line",
    [
        proxy_line(body())[:-30],  # cut short
        proxy_line(body(answer="!!")),  # a hand-off the intake refuses
        proxy_line(json.loads(body())),  # an object, not a JSON string
        proxy_line(None),
        '{"event":"note_handoff_failed"}',  # no hand-off
        '{"event":"note_job_not_queued"}',  # no job
        '{"event":"note_job_not_queued","job":{"version":1}}',
        '["note_job_not_queued"]',
    ],
)
def test_a_line_naming_either_event_that_holds_no_job_is_counted(line: str) -> None:
    assert requeue.jobs_in_log([line]) == ([], 1)


@pytest.mark.parametrize(
    "line", ["", "plain text", '{"event":"note_written"}', '{"event":"note_handoff_refused","reason":"x"}']
)
def test_other_lines_are_skipped(line: str) -> None:
    assert requeue.jobs_in_log([line]) == ([], 0)
