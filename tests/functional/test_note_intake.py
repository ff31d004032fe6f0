"""The note intake: the proxy's hand-off of HOSP's answer becomes one note job per distinct result.

Through chalice's test client and moto's SQS; the tests that need the note
worker (and so HOSP) use `setup`, the others only `intake`.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest

from chalicelib import aws, config, note_intake, note_jobs, requeue
from tests.error_shape import assert_error
from tests.functional.intake_support import (
    HANDOFF_HEADERS,
    INTAKE,
    Intake,
    Setup,
    failed_handoff_line,
    handoff,
    new_request_id,
    screen_body,
)
from tests.support import DEMO_USER

ANSWER = b'{"screening_id":"scr_1","findings":[{"image":0,"finding":"clear"}]}'
OTHER_ANSWER = b'{"screening_id":"scr_2","findings":[{"image":0,"finding":"nodule"}]}'


def lines_of(printed: str, event: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in printed.splitlines() if f'"event":"{event}"' in line]


def run_requeue(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> int:
    """requeue's exit status, fed `lines` on its standard input as bytes, as a pipe gives them."""
    stdin = io.TextIOWrapper(io.BytesIO("\n".join(lines).encode() + b"\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    return requeue.main()


# ------------------------------------------------------------------ a hand-off taken


def test_a_hand_off_queues_one_job_with_the_answers_results_the_nurse_and_the_screens_request_id(
    intake: Intake, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = handoff(3, ANSWER, user="nurse-joy")

    taken = intake.hand_off(sent)

    assert taken.status_code == 202
    assert taken.headers["Content-Type"] == "application/json"
    marker = note_jobs.marker(3, ANSWER)
    assert json.loads(taken.body) == {"state": "queued", "marker": marker, "request_id": sent["request_id"]}
    (job,) = intake.jobs()
    assert job.patient_id == 3
    assert job.results == json.loads(ANSWER)
    assert job.requested_by == "nurse-joy"
    assert job.request_id == sent["request_id"]
    assert job.marker == marker
    assert job.requested_at.endswith("Z")
    printed = capsys.readouterr().out
    assert '"NoteHandoffsReceived":1' in printed
    assert '"NoteJobsQueued":1' in printed
    # Every line of the hand-off carries the nurse's request id.
    logged = [json.loads(line) for line in printed.splitlines() if '"event":' in line]
    assert logged
    assert {line["request_id"] for line in logged} == {sent["request_id"]}
    assert sent["answer"] not in printed


def test_identical_screens_make_one_job_and_a_new_answer_another(intake: Intake) -> None:
    """A nurse's client that sends the same screen again gets the same answer from HOSP:
    another request id, the same marker, no second message. A new answer is a new job."""
    first = intake.hand_off(handoff(5, ANSWER))
    again = intake.hand_off(handoff(5, ANSWER))
    other = intake.hand_off(handoff(5, OTHER_ANSWER))
    other_patient = intake.hand_off(handoff(6, ANSWER))

    assert [a.status_code for a in (first, again, other, other_patient)] == [202] * 4
    markers = [json.loads(a.body)["marker"] for a in (first, again, other, other_patient)]
    assert markers[0] == markers[1]
    assert len(set(markers)) == 3
    assert intake.depth() == 3


@pytest.mark.parametrize("spelled", ["0004", "04", "000000000000000000000000004"])
def test_a_patient_with_leading_zeros_is_the_same_patient(intake: Intake, spelled: str) -> None:
    taken = intake.hand_off(handoff(spelled, ANSWER))

    assert taken.status_code == 202
    assert json.loads(taken.body)["marker"] == note_jobs.marker(4, ANSWER)
    (job,) = intake.jobs()
    assert job.patient_id == 4


def test_the_largest_patient_id_and_longest_user_name_are_taken(intake: Intake) -> None:
    user = "ü" * note_intake.MAX_USER_CHARS  # characters, not bytes

    taken = intake.hand_off(handoff("9" * 18, ANSWER, user=user))

    assert taken.status_code == 202
    (job,) = intake.jobs()
    assert job.patient_id == 10**18 - 1
    assert job.requested_by == user


def test_unknown_keys_are_ignored_and_an_empty_user_is_taken(intake: Intake) -> None:
    taken = intake.hand_off(handoff(7, ANSWER, user="", status="200", upstream_status="200"))

    assert taken.status_code == 202
    (job,) = intake.jobs()
    assert job.requested_by == ""


def test_a_user_name_that_is_not_utf_8_costs_only_its_bad_bytes(intake: Intake) -> None:
    """A client's Basic credentials are any bytes; the proxy may pass them on as they are."""
    body = json.dumps(handoff(8, ANSWER, user="nurse-XX")).encode().replace(b"XX", b"\xe9\xff")

    taken = intake.hand_off(body)

    assert taken.status_code == 202
    (job,) = intake.jobs()
    assert job.requested_by == "nurse-\ufffd\ufffd"


def test_the_answer_is_hashed_as_hosp_sent_it_not_as_json(intake: Intake) -> None:
    """Two answers with the same JSON but other bytes are two results (the marker is of the bytes)."""
    spaced = b'{"screening_id": "scr_1", "findings": [{"image": 0, "finding": "clear"}]}'

    markers = {json.loads(intake.hand_off(handoff(9, answer)).body)["marker"] for answer in (ANSWER, spaced)}

    assert markers == {note_jobs.marker(9, ANSWER), note_jobs.marker(9, spaced)}
    assert [job.results for job in intake.jobs()] == [json.loads(ANSWER)] * 2  # the same results, twice


def test_a_hand_off_without_x_request_id_is_taken_under_the_bodys_request_id(
    intake: Intake, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = handoff(3, ANSWER)

    taken = intake.client.http.post(INTAKE, body=json.dumps(sent), headers=HANDOFF_HEADERS)

    assert taken.status_code == 202
    assert json.loads(taken.body)["request_id"] == sent["request_id"]
    queued = lines_of(capsys.readouterr().out, "note_job_queued")
    assert [line["request_id"] for line in queued] == [sent["request_id"]]


# ------------------------------------------------------------------ refusals


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


OVER_A_MIB = b'"' + b"a" * note_intake.MAX_ANSWER_BYTES + b'"'  # a JSON string, 1 MiB + 2 bytes
NESTED_TOO_DEEP = b"[" * (note_intake.MAX_ANSWER_DEPTH + 1) + b"]" * (note_intake.MAX_ANSWER_DEPTH + 1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answer": "eyJ$YSI6MX0="}, "answer"),  # not in base64's alphabet
        ({"answer": b64(ANSWER)[:-1]}, "answer"),  # padding cut
        ({"answer": b64(ANSWER)[:20] + "\n" + b64(ANSWER)[20:]}, "answer"),  # a line break
        ({"answer": b64(ANSWER).replace("+", "-")[:-4] + "-_-_"}, "answer"),  # URL-safe base64
        ({"answer": "é" + b64(ANSWER)}, "answer"),
        ({"answer": b64(b"<html>busy</html>")}, "answer"),  # not JSON
        ({"answer": b64(b'{"a":NaN}')}, "answer"),  # not JSON either
        ({"answer": b64(b'{"a":1')}, "answer"),  # cut short
        ({"answer": b64(b"\xff\xfe{}")}, "answer"),  # not UTF-8
        ({"answer": b64('{"a":"é"}'.encode("utf-16"))}, "answer"),
        ({"answer": ""}, "answer"),
        ({"answer": b64(OVER_A_MIB)}, "answer"),
        ({"answer": b64(NESTED_TOO_DEEP)}, "answer"),
        ({"answer": json.loads(ANSWER)}, "answer"),  # JSON, not base64 of it
        ({"answer": None}, "answer"),
        ({"patient_id": "0"}, "patient_id"),
        ({"patient_id": "0000"}, "patient_id"),
        ({"patient_id": ""}, "patient_id"),
        ({"patient_id": "1" * 19}, "patient_id"),
        ({"patient_id": "0" + "1" * 19}, "patient_id"),
        ({"patient_id": "abc"}, "patient_id"),
        ({"patient_id": "-4"}, "patient_id"),
        ({"patient_id": "+4"}, "patient_id"),
        ({"patient_id": " 4"}, "patient_id"),
        ({"patient_id": "4\n"}, "patient_id"),
        ({"patient_id": "4.0"}, "patient_id"),
        ({"patient_id": "\u0664"}, "patient_id"),  # ARABIC-INDIC DIGIT FOUR: a digit, not ASCII
        ({"patient_id": 4}, "patient_id"),  # a number, not a string
        ({"patient_id": None}, "patient_id"),
        ({"request_id": "A" * 32}, "request_id"),  # upper case
        ({"request_id": "a" * 31}, "request_id"),
        ({"request_id": "a" * 33}, "request_id"),
        ({"request_id": "g" * 32}, "request_id"),
        ({"request_id": "a" * 32 + "\n"}, "request_id"),
        ({"request_id": 12345}, "request_id"),
        ({"user": "u" * (note_intake.MAX_USER_CHARS + 1)}, "user"),
        ({"user": None}, "user"),
        ({"user": ["nurse"]}, "user"),
    ],
)
def test_a_wrong_field_is_a_400_naming_it_logged_and_queues_nothing(
    intake: Intake, capsys: pytest.CaptureFixture[str], change: dict[str, Any], field: str
) -> None:
    sent = {**handoff(3, ANSWER), **change}
    request_id = new_request_id()

    refused = intake.hand_off(sent, headers={"X-Request-Id": request_id})

    assert refused.status_code == 400
    assert refused.headers["Content-Type"] == "application/json"
    error = assert_error(refused.body, 400, request_id=request_id)
    assert error["field"] == field
    assert field in error["error"]
    assert intake.depth() == 0
    printed = capsys.readouterr().out
    (warning,) = lines_of(printed, "note_handoff_refused")
    assert warning["level"] == "WARNING"
    assert warning["field"] == field
    assert warning["reason"]
    assert warning["request_id"] == request_id
    assert '"NoteHandoffsRefused":1' in printed
    if isinstance(sent["answer"], str) and len(sent["answer"]) > 8:
        assert sent["answer"][:40] not in printed  # never the answer itself


@pytest.mark.parametrize("field", ["patient_id", "user", "request_id", "answer"])
def test_a_missing_field_is_a_400_naming_it(intake: Intake, field: str) -> None:
    sent = handoff(3, ANSWER)
    del sent[field]

    refused = intake.hand_off(sent)

    assert assert_error(refused.body, 400)["field"] == field
    assert refused.status_code == 400
    assert intake.depth() == 0


DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"patient_id": "3"',
        b"[]",
        json.dumps([handoff(3, ANSWER)]).encode(),
        b'"a string"',
        b"null",
        b"[" * DEEP + b"]" * DEEP,  # json.loads recurses per level: a RecursionError, caught
        b'{"patient_id":' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"x": ' + b"{" * DEEP,
        json.dumps(handoff(3, ANSWER)).encode("utf-16"),
    ],
    ids=lambda body: repr(body[:24]),
)
def test_a_body_that_is_not_a_json_object_is_a_clean_400(intake: Intake, body: bytes) -> None:
    request_id = new_request_id()

    refused = intake.hand_off(body, headers={"X-Request-Id": request_id})

    assert refused.status_code == 400
    error = assert_error(refused.body, 400, request_id=request_id)
    assert error["field"] in ("body", "patient_id")
    assert intake.depth() == 0


def test_a_body_over_two_mib_is_a_413(intake: Intake, capsys: pytest.CaptureFixture[str]) -> None:
    sent = handoff(3, ANSWER, padding="p" * note_intake.MAX_BODY_BYTES)

    refused = intake.hand_off(sent)

    assert refused.status_code == 413
    assert assert_error(refused.body, 413, request_id=sent["request_id"])["field"] == "body"
    assert intake.depth() == 0
    (warning,) = lines_of(capsys.readouterr().out, "note_handoff_refused")
    assert warning["field"] == "body"


def test_the_largest_answer_escaped_as_dearly_as_json_allows_still_makes_a_job_sqs_takes(intake: Intake) -> None:
    """The intake reads answers up to MAX_ANSWER_BYTES, and the job escapes each byte of one
    into at most 3 (a 2-byte character becomes a 6-byte \\u escape): SQS's 256 KiB still
    holds it, so no hand-off the proxy sends is refused for its size."""
    characters = (note_intake.MAX_ANSWER_BYTES - 2) // 2
    answer = b'"' + "é".encode() * characters + b'"'
    assert note_intake.MAX_ANSWER_BYTES - 1 <= len(answer) <= note_intake.MAX_ANSWER_BYTES
    sent = handoff(3, answer)

    taken = intake.hand_off(sent)

    assert taken.status_code == 202, taken.body
    assert intake.depth() == 1
    (job,) = intake.jobs()
    assert len(job.to_json()) > 3 * characters  # escaped as dearly as said, and taken


# ------------------------------------------------------------------ failures


def test_the_queue_down_is_a_503_and_the_not_queued_line_holds_the_job(
    intake: Intake, capsys: pytest.CaptureFixture[str]
) -> None:
    intake.sqs.delete_queue(QueueUrl=intake.queue.url)
    aws.reset()
    sent = handoff(3, ANSWER, user="nurse-joy")

    refused = intake.hand_off(sent)

    assert refused.status_code == 503
    error = assert_error(refused.body, 503, request_id=sent["request_id"])
    assert error["error"] == "the note queue could not be reached; the job is in the log"
    printed = capsys.readouterr().out
    (lost,) = lines_of(printed, "note_job_not_queued")
    assert lost["level"] == "ERROR"
    assert lost["request_id"] == sent["request_id"]
    job = note_jobs.NoteJob.from_json(json.dumps(lost["job"]))
    assert (job.patient_id, job.results, job.requested_by) == (3, json.loads(ANSWER), "nurse-joy")
    assert (job.request_id, job.marker) == (sent["request_id"], note_jobs.marker(3, ANSWER))
    assert '"NoteJobsNotQueued":1' in printed


def test_a_misconfigured_app_is_a_503_and_queues_nothing(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSP_BASE_URL", "https://hosp-proxy.example.internal")
    sent = handoff(3, ANSWER)

    refused = intake.hand_off(sent)

    assert refused.status_code == 503
    assert assert_error(refused.body, 503, request_id=sent["request_id"])["error"] == "the note intake is misconfigured"
    assert b"example.internal" not in refused.body
    assert intake.depth() == 0


def test_a_fault_of_the_intake_is_a_500_in_the_one_shape_of_every_error(
    intake: Intake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(note_intake, "job_of", broken)
    sent = handoff(3, ANSWER)

    failed = intake.hand_off(sent)

    assert failed.status_code == 500
    assert "a bug" not in assert_error(failed.body, 500, request_id=sent["request_id"])["error"]
    assert lines_of(capsys.readouterr().out, "note_intake_failed")
    assert intake.depth() == 0


# ------------------------------------------------------------------ requeue


def test_requeue_recovers_jobs_from_the_apps_and_the_proxys_lines_once_each(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intake unreachable for one screen (only the proxy's line), the queue down for
    another (the app's line and the proxy's), lines cut short or unreadable beside them:
    every job is queued once, the bad lines are counted, and a second run writes no note twice."""
    screens = [setup.screen(patient, screen_body(patient)) for patient in (14, 15)]
    assert [screen.status_code for screen in screens] == [200, 200]
    first = handoff(14, screens[0].content, user="nurse-joy")
    second = handoff(15, screens[1].content)
    setup.sqs.delete_queue(QueueUrl=setup.queue.url)
    aws.reset()
    assert setup.hand_off(second).status_code == 503
    app_lines = [line for line in capsys.readouterr().out.splitlines() if '"note_job_not_queued"' in line]
    assert len(app_lines) == 1
    bad_handoff = {**handoff(16, ANSWER), "answer": "not base64!"}
    lines = [
        failed_handoff_line(first, status="504", time="2026-12-07T10:00:00+00:00"),
        *app_lines,
        failed_handoff_line(second, status="503"),
        '{"time":"2026-12-07T10:00:01+00:00","event":"note_handoff_failed","request_id":"',  # cut short
        failed_handoff_line(bad_handoff),  # a hand-off the intake would refuse
        '{"event":"note_handoff_failed","handoff":{"patient_id":"3"}}',  # not a JSON string
        '{"event":"note_job_not_queued","reason":"x"}',  # no job
        "an unrelated line",
        '{"event":"note_written"}',
        "",
    ]
    setup.queue.url = setup.sqs.create_queue(QueueName=config.note_queue_name(), Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    aws.reset()

    assert run_requeue(monkeypatch, lines) == 1  # the unreadable lines
    err = capsys.readouterr().err
    assert "requeued 2 of 2 note job(s) (1 line(s) repeated a job already read)" in err
    assert "4 logged job(s) could not be read" in err
    assert setup.drain() == ["handled", "handled", None]
    (note_14,) = setup.xray_notes(14)
    (note_15,) = setup.xray_notes(15)
    body_14 = json.loads(note_14["body"])
    assert body_14["request_id"] == first["request_id"]
    assert body_14["requested_by"] == "nurse-joy"
    assert body_14["requested_at"] == "2026-12-07T10:00:00.000Z"  # when the proxy logged it
    assert body_14["marker"] == note_jobs.marker(14, base64.b64decode(first["answer"]))
    assert body_14["results"] == json.loads(screens[0].content)
    assert json.loads(note_15["body"])["request_id"] == second["request_id"]

    # Run again: moto's queue, like SQS after its five minutes, no longer knows the markers
    # of jobs it has delivered; the worker finds each note before it writes and writes none.
    assert run_requeue(monkeypatch, lines) == 1
    assert "requeued 2 of 2 note job(s)" in capsys.readouterr().err
    assert setup.drain() == ["handled", "handled", None]
    assert '"event":"note_already_present"' in capsys.readouterr().out
    assert len(setup.xray_notes(14)) == len(setup.xray_notes(15)) == 1


# ------------------------------------------------------------------ to the note


def test_a_screens_hand_off_becomes_one_note_by_the_service_account_for_the_nurse(setup: Setup) -> None:
    screen = setup.screen(3, screen_body(1, 2))
    assert screen.status_code == 200
    sent = handoff(3, screen.content, user=DEMO_USER)

    assert setup.hand_off(sent).status_code == 202
    assert setup.drain() == ["handled", None]

    (note,) = setup.xray_notes(3)
    body = json.loads(note["body"])
    assert body["results"] == json.loads(screen.content)
    assert body["requested_by"] == DEMO_USER  # the nurse who asked
    assert body["request_id"] == sent["request_id"]  # the screen's, for the audit trail
    assert body["marker"] == note_jobs.marker(3, screen.content)
    assert DEMO_USER in note["title"]
    assert note["staff_id"] == 5  # written by the service account
    # The same screen sent again: the same answer, so no second note, however late.
    again = setup.screen(3, screen_body(1, 2))
    assert again.content == screen.content
    assert setup.hand_off(handoff(3, again.content)).status_code == 202
    setup.drain()
    assert len(setup.xray_notes(3)) == 1
