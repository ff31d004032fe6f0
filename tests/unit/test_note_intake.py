"""The note intake's reading of a hand-off (note_intake.parse_handoff): pure, without the app or AWS."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chalicelib import note_intake, note_jobs
from chalicelib.note_intake import RefusedHandoff, parse_handoff

ANSWER = b'{"screening_id":"scr_1","findings":[]}'
REQUEST_ID = "0123456789abcdef" * 2


def body(**change: Any) -> str:
    answer = base64.b64encode(ANSWER).decode()
    return json.dumps({"patient_id": "7", "user": "nurse-joy", "request_id": REQUEST_ID, "answer": answer, **change})


# ------------------------------------------------------------------ parse_handoff


def test_a_hand_off_is_read_whole_from_bytes_or_text() -> None:
    read = parse_handoff(body(patient_id="007"))

    assert read == parse_handoff(body(patient_id="007").encode())
    assert read.patient_id == 7
    assert read.user == "nurse-joy"
    assert read.request_id == REQUEST_ID
    assert read.answer == ANSWER
    assert read.results == {"screening_id": "scr_1", "findings": []}
    job = note_intake.job_of(read)
    assert (job.patient_id, job.requested_by, job.request_id) == (7, "nurse-joy", REQUEST_ID)
    assert job.marker == note_jobs.marker(7, ANSWER)


@pytest.mark.parametrize(
    ("patient", "read"),
    [("1", 1), ("0001", 1), ("9" * 18, 10**18 - 1), ("0" * 50 + "9" * 18, 10**18 - 1), ("100", 100)],
)
def test_a_patient_id_is_its_digits_without_leading_zeros(patient: str, read: int) -> None:
    assert parse_handoff(body(patient_id=patient)).patient_id == read


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"patient_id": "0"}, "patient_id", 400),
        ({"patient_id": "1" * 19}, "patient_id", 400),
        ({"patient_id": "٤"}, "patient_id", 400),
        ({"patient_id": True}, "patient_id", 400),
        ({"request_id": REQUEST_ID.upper()}, "request_id", 400),
        ({"user": "u" * (note_intake.MAX_USER_CHARS + 1)}, "user", 400),
        ({"answer": "e30"}, "answer", 400),  # "{}" without its padding
        ({"answer": base64.b64encode(b"[" * 101 + b"]" * 101).decode()}, "answer", 400),
        ({"answer": base64.b64encode(b"1" * (note_intake.MAX_ANSWER_BYTES + 1)).decode()}, "answer", 400),
        ({"padding": "p" * note_intake.MAX_BODY_BYTES}, "body", 413),
    ],
)
def test_a_refusal_names_the_field_and_its_status(change: dict[str, Any], field: str, status: int) -> None:
    with pytest.raises(RefusedHandoff) as refused:
        parse_handoff(body(**change))

    assert refused.value.field == field
    assert refused.value.status == status
    assert field in refused.value.message


def test_an_answer_as_deep_as_allowed_is_read() -> None:
    depth = note_intake.MAX_ANSWER_DEPTH
    deep = b"[" * depth + b"]" * depth

    assert parse_handoff(body(answer=base64.b64encode(deep).decode())).answer == deep


def test_a_body_of_100000_levels_is_refused_not_a_crash() -> None:
    with pytest.raises(RefusedHandoff, match="body"):
        parse_handoff("[" * 100_000 + "]" * 100_000)


def test_the_size_limits_are_counted_in_bytes() -> None:
    near = body(user="", padding="p" * (note_intake.MAX_BODY_BYTES - len(body(user="", padding="")) - 1))
    assert len(near.encode()) == note_intake.MAX_BODY_BYTES - 1
    parse_handoff(near)
    with pytest.raises(RefusedHandoff, match="body"):
        parse_handoff(near[:-2] + 'é"}')  # one character more, two bytes in UTF-8: over
    parse_handoff(body(answer=base64.b64encode(b'"' + b"a" * (note_intake.MAX_ANSWER_BYTES - 2) + b'"').decode()))


def test_a_user_name_with_a_lone_surrogate_is_text_the_worker_can_send() -> None:
    read = parse_handoff(body(user="nurse-\ud800"))  # json.dumps writes it as the escape \\ud800

    assert "\ud800" not in read.user
    assert read.user.startswith("nurse-")
    read.user.encode("utf-8")  # X-On-Behalf-Of (note_worker.on_behalf_of_header)
    assert parse_handoff(body(user="\U0001f600")).user == "\U0001f600"  # a pair is one character
