"""The note worker: exactly one note per job whatever HOSP and the queue do; nothing lost, no secret logged."""

from __future__ import annotations

import io
import json
import threading

import boto3
import pytest
import requests

from chalicelib import aws, config, constants, note_jobs, note_worker, requeue, service_account
from local.hosp_standin.store import NOTES_SERVICE_ACCOUNT
from tests.functional.intake_support import Setup, handoff, screen_body
from tests.support import DEMO_AUTH, DEMO_PASSWORD

pytestmark = pytest.mark.usefixtures("setup")


def screened(setup: Setup, patient: int, seed: int) -> str:
    """Screen once and hand HOSP's answer to the note intake; the request id of the screen."""
    return str(setup.screened(patient, seed)["request_id"])


def drain(setup: Setup, limit: int = 20) -> list[str | None]:
    return setup.drain(limit)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(note_worker, "FIRST_PAUSE", 0.01)


@pytest.mark.usefixtures("quick_retries")
@pytest.mark.parametrize(
    "note_post_outcomes",
    [
        ["503"],  # HOSP fails the write
        ["commit_then_fail:502"],  # HOSP writes, then fails the answer with 502
        ["503", "503"],
    ],
)
def test_a_failed_note_write_is_retried_and_lands_once(setup: Setup, note_post_outcomes: list[str]) -> None:
    screened(setup, 6, 1)
    # The worker's requests: GET /notes (ok), POST /notes (the faults), then GET, POST ... in turn.
    script: list[str] = []
    for outcome in note_post_outcomes:
        script += ["ok", outcome]
    setup.hosp.script(*script)

    assert drain(setup) == ["handled", None]
    assert len(setup.xray_notes(6)) == 1


@pytest.mark.usefixtures("quick_retries")
def test_a_reset_after_the_commit_is_caught_by_the_read_before_the_next_write(setup: Setup) -> None:
    screened(setup, 6, 2)
    setup.hosp.faults(commit_then_fail={"rate": 1.0, "mode": "reset"})

    outcome = setup.queue.handle_one(wait_seconds=0)

    assert outcome == "handled"
    assert len(setup.xray_notes(6)) == 1


def test_a_redelivered_job_writes_no_second_note(setup: Setup) -> None:
    screened(setup, 7, 3)
    message = setup.sqs.receive_message(QueueUrl=setup.queue.url, AttributeNames=["All"])["Messages"][0]
    # A worker writes the note and dies before the message is deleted ...
    note_worker.handle(note_worker.Message(message["Body"], message["ReceiptHandle"], 1))
    setup.sqs.change_message_visibility(
        QueueUrl=setup.queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    # ... and the queue hands the message out again.
    assert drain(setup) == ["handled", None]
    assert len(setup.xray_notes(7)) == 1


def test_two_workers_draining_one_queue_write_each_note_once(setup: Setup) -> None:
    for seed in range(6):
        screened(setup, 8 + seed % 2, seed)
    # A message sent twice (a send retried, a hand-off requeued) is one message to a FIFO queue.
    job = setup.sqs.receive_message(QueueUrl=setup.queue.url, VisibilityTimeout=0)["Messages"][0]["Body"]
    parsed = note_jobs.NoteJob.from_json(job)
    assert note_jobs.queue(parsed)

    outcomes: list[str | None] = []
    workers = [threading.Thread(target=lambda: outcomes.extend(drain(setup))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert outcomes.count("handled") == 6
    assert len(setup.xray_notes(8)) == 3
    assert len(setup.xray_notes(9)) == 3


def test_hosp_down_defers_the_message_with_a_growing_backoff_and_bounded_calls(
    setup: Setup,
    quick_retries: None,
) -> None:
    screened(setup, 10, 4)
    setup.hosp.faults(outage=True)
    before = setup.hosp.received()

    assert setup.queue.handle_one(wait_seconds=0) == "failed"

    # Each attempt is one GET, which the proxy tries at most 3 times; no POST while reads fail.
    assert setup.hosp.received() - before <= note_worker.ATTEMPTS * 3
    attributes = setup.sqs.get_queue_attributes(QueueUrl=setup.queue.url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # away for the backoff
    assert note_worker.backoff(1) == note_worker.BACKOFF_BASE
    assert note_worker.backoff(3) == 4 * note_worker.BACKOFF_BASE
    assert note_worker.backoff(50) == note_worker.MAX_BACKOFF
    setup.hosp.faults(outage=False)
    assert setup.xray_notes(10) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"version": 1, "patient_id": "7"}),
        json.dumps(
            {
                "version": 1, "patient_id": 9999, "results": {}, "requested_by": "x",
                "requested_at": "2026-11-28T00:00:00Z", "request_id": "0" * 32, "marker": "xray-" + "0" * 40,
            }
        ),  # a patient HOSP does not have: 422
    ],
)  # fmt: skip
def test_a_job_that_can_never_succeed_goes_to_the_dead_letter_queue_at_once(setup: Setup, body: str) -> None:
    setup.sqs.send_message(QueueUrl=setup.queue.url, MessageBody=body, MessageGroupId="1", MessageDeduplicationId="d")

    assert setup.queue.handle_one(wait_seconds=0) == "handled"  # deleted from the note queue ...

    dead = setup.dead_letters()
    assert [m["Body"] for m in dead] == [body]  # ... and kept, with the reason
    assert dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert setup.depth() == 0


def test_an_unreachable_queue_is_a_503_to_the_proxy_and_the_logged_job_can_be_requeued(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup.sqs.delete_queue(QueueUrl=setup.queue.url)
    aws.reset()
    answer = setup.screen(11, screen_body(5))
    sent = handoff(11, answer.content)

    refused = setup.hand_off(sent)

    assert refused.status_code == 503
    printed = capsys.readouterr().out
    lost = [line for line in printed.splitlines() if '"note_job_not_queued"' in line]
    assert len(lost) == 1
    assert '"NoteJobsNotQueued":1' in printed  # the metric the alarm watches
    # The queue is back: the logged job is queued again and written once.
    setup.queue.url = setup.queue.sqs.create_queue(
        QueueName=config.note_queue_name(), Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    aws.reset()
    monkeypatch.setattr("sys.stdin", io.StringIO(printed))
    assert requeue.main() == 0
    assert drain(setup) == ["handled", None]
    notes = setup.xray_notes(11)
    assert len(notes) == 1
    assert sent["request_id"] in notes[0]["body"]


def test_no_password_authorization_or_image_reaches_the_log(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = screen_body(12345)
    answer = setup.screen(12, body)
    assert setup.hand_off(handoff(12, answer.content)).status_code == 202
    setup.hosp.script("ok", "commit_then_fail:502")
    drain(setup)

    printed = capsys.readouterr().out
    image = json.loads(body)["images"][0]
    for secret in (DEMO_PASSWORD, NOTES_SERVICE_ACCOUNT.password, "Basic ", image[:40]):
        assert secret not in printed
    assert '"event":"note_written"' in printed or '"event":"note_already_present"' in printed


def test_a_note_by_someone_else_quoting_the_marker_does_not_stop_the_real_one(setup: Setup) -> None:
    screened(setup, 13, 6)
    message = setup.sqs.receive_message(QueueUrl=setup.queue.url, VisibilityTimeout=0)["Messages"][0]
    marker = note_jobs.NoteJob.from_json(message["Body"]).marker
    decoy = {"title": "t", "body": json.dumps({"marker": marker}), "patient_id": 13, "staff_id": 1}
    assert requests.post(f"{setup.hosp.url}/notes", json=decoy, headers=DEMO_AUTH, timeout=10).status_code == 201

    assert drain(setup) == ["handled", None]
    assert [n["staff_id"] for n in setup.xray_notes(13)] == [NOTES_SERVICE_ACCOUNT.staff_id]


def test_an_empty_service_account_secret_makes_jobs_wait_not_die_and_they_are_written_once_it_is_put(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The notes stack creates the secret empty. A job read then is a configuration error,
    not HOSP's: it waits (no dead-letter queue, no call to HOSP), the log and the metric
    NoteWorkerMisconfigured say why, and once an operator puts the value the job is written."""
    secret = constants.service_secret(constants.LOCAL_STAGE)
    secrets = boto3.client("secretsmanager", region_name="eu-west-2")
    secrets.create_secret(Name=secret)
    monkeypatch.setenv(constants.HOSP_SERVICE_SECRET_ID, secret)
    service_account.forget()
    screened(setup, 11, 5)
    capsys.readouterr()
    before = setup.hosp.received()

    message = setup.queue.receive(wait_seconds=0)
    assert message is not None
    assert setup.queue.handle(message) == "failed"

    logged = capsys.readouterr().out
    assert setup.hosp.received() == before
    assert setup.dead_letters() == []
    attributes = setup.sqs.get_queue_attributes(QueueUrl=setup.queue.url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # waiting
    assert setup.queue.receive(wait_seconds=0) is None
    assert '"event":"note_worker_misconfigured"' in logged
    assert "has no value yet" in logged
    assert '"NoteWorkerMisconfigured"' in logged
    assert [note_worker.misconfigured_backoff(n) for n in range(1, 9)] == [
        60, 240, 960, 3840, 15360, 43200, 43200, 43200
    ]  # fmt: skip
    assert sum(note_worker.misconfigured_backoff(n) for n in range(1, 9)) > 40 * 3600  # eight waits before the DLQ

    account = NOTES_SERVICE_ACCOUNT
    value = {"username": account.username, "password": account.password, "staff_id": account.staff_id}
    secrets.put_secret_value(SecretId=secret, SecretString=json.dumps(value))
    service_account.forget()
    # The wait ends, as the message's visibility timeout would end it.
    setup.sqs.change_message_visibility(
        QueueUrl=setup.queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )

    assert drain(setup) == ["handled", None]
    assert len(setup.xray_notes(11)) == 1
    assert account.password not in capsys.readouterr().out
