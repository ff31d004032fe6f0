"""The note job's marker and time (chalicelib/note_jobs.py)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from chalicelib import note_jobs

ANSWER = b'{"screening_id":"scr_1","findings":[]}'
REQUEST_ID = "0123456789abcdef" * 2


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
