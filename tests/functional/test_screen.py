"""The screen interceptor: HOSP's answer byte for byte, one note job per successful screen, none otherwise."""

from __future__ import annotations

import json

import pytest

from chalicelib import screen
from tests.error_shape import assert_error
from tests.functional.screen_support import NURSE, Setup, screen_body

pytestmark = pytest.mark.usefixtures("setup")


def test_a_screen_answers_hosps_bytes_and_queues_one_job_then_one_note(setup: Setup) -> None:
    body = screen_body(1, 2)

    answer = setup.screen(3, body)
    direct = setup.direct(3, body)

    assert answer.status_code == direct.status_code == 200
    assert answer.body == direct.content  # bytes, not parsed JSON
    assert answer.headers["Content-Type"] == direct.headers["Content-Type"]
    assert setup.depth() == 1
    assert setup.queue.handle_one(wait_seconds=0) == "handled"
    notes = setup.xray_notes(3)
    assert len(notes) == 1
    note = json.loads(notes[0]["body"])
    assert note["results"] == json.loads(direct.content)
    assert note["requested_by"] == "test-account"  # the nurse who asked
    assert "test-account" in notes[0]["title"]
    assert notes[0]["staff_id"] == 5  # written by the service account
    assert setup.depth() == 0


def test_a_multi_megabyte_screen_passes_through_whole(setup: Setup) -> None:
    body = screen_body(7, 8, size=1_500_000)  # two 1.5 MB images, 4 MB of JSON

    answer = setup.screen(2, body)

    assert answer.status_code == 200
    assert answer.body == setup.direct(2, body).content
    assert setup.depth() == 1


@pytest.mark.parametrize(
    ("patient", "body", "headers", "status"),
    [
        (1, screen_body(1), {"Accept": "*/*", "Content-Type": "application/json"}, 401),  # no credentials
        (1, screen_body(1), {**NURSE, "Authorization": "Basic dGVzdC1hY2NvdW50Ondyb25n"}, 401),  # bad password
        (1, b'{"images": [', NURSE, 400),  # malformed JSON
        (1, b'{"pictures": []}', NURSE, 422),  # no images
        (1, b'{"images": ["not base64!"]}', NURSE, 422),
        ("abc", screen_body(1), NURSE, 404),  # not a number
        (9999, screen_body(1), NURSE, 404),  # no such patient
    ],
)
def test_hosps_refusals_pass_through_unchanged_and_make_no_note(
    setup: Setup,
    patient: object,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    answer = setup.screen(str(patient), body, headers)
    direct = setup.direct(str(patient), body, headers)

    assert answer.status_code == direct.status_code == status
    assert answer.body == direct.content
    assert setup.depth() == 0


def test_a_failed_screen_call_is_tried_again_and_queues_one_job(setup: Setup) -> None:
    setup.hosp.script("503", "reset")

    answer = setup.screen(4, screen_body(4))

    assert answer.status_code == 200
    assert setup.hosp.stats()["by_route"]["POST /patients/{id}/screen"] == 3
    assert setup.depth() == 1


def test_hosp_down_gives_the_nurse_hosps_failure_after_three_tries_and_no_note(setup: Setup) -> None:
    setup.hosp.faults(outage=True)
    before = setup.hosp.received()

    answer = setup.screen(4, screen_body(4))

    assert setup.hosp.received() - before == screen.SCREEN_TRIES  # not hammered
    assert answer.status_code == 503
    assert answer.body == setup.direct(4, screen_body(4)).content  # HOSP's own 503
    assert setup.depth() == 0


def test_a_misconfigured_interceptor_answers_a_json_503_and_calls_nobody(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSP_BASE_URL", "https://hosp-proxy.example.internal")
    before = setup.hosp.received()

    answer = setup.screen(1, screen_body(1), {**NURSE, "X-Request-Id": "5" * 32})

    assert answer.status_code == 503
    assert answer.headers["Content-Type"] == "application/json"
    error = assert_error(answer.body, 503, request_id="5" * 32)  # the id the proxy sent, as the app logs it
    assert error["error"] == "the screen interceptor is misconfigured"
    assert b"example.internal" not in answer.body
    assert setup.hosp.received() == before
    assert setup.depth() == 0


def test_a_fault_of_the_interceptor_is_a_500_in_the_one_shape_of_every_error(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(screen, "forward", broken)

    answer = setup.screen(1, screen_body(1), {**NURSE, "X-Request-Id": "7" * 32})

    assert answer.status_code == 500
    assert answer.headers["Content-Type"] == "application/json"
    assert "a bug" not in assert_error(answer.body, 500, request_id="7" * 32)["error"]
    assert setup.depth() == 0


def test_a_fault_after_hosp_screened_still_gives_the_nurse_hosps_answer(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HOSP has done the screen: a fault while queueing its note must not turn HOSP's 2xx into
    a 500 that invites the nurse to send the POST again. The fault is logged for the note."""

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(screen, "queue_note", broken)
    direct = setup.direct(1, screen_body(2))

    answer = setup.screen(1, screen_body(2))

    assert answer.status_code == direct.status_code == 200
    assert answer.body == direct.content
    assert '"event":"screen_note_failed"' in capsys.readouterr().out
