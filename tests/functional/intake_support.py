"""What the note intake and note worker tests use: a screen's body, a hand-off, the proxy's log lines, and Setup.

The proxy screens with HOSP and hands HOSP's answer to the note intake; here
a test does both of the proxy's parts itself: the screen goes straight to the
stand-in, and the hand-off to the app through chalice's test client.

Setup is the Chalice app, a mocked AWS with the note queues, and the real
stand-in behind a real NGINX (the note worker's way to HOSP); the fixture
`setup` (tests/functional/conftest.py) makes one per test. The fixture
`intake` is the app and the queues alone, for the tests of the hand-off itself.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import requests
from chalice.test import Client

from chalicelib import aws, config, note_jobs
from local.nginx_proxy import NginxProxy
from local.note_worker_loop import Queue
from tests.support import DEMO_AUTH, DEMO_USER, Hosp

REGION = "eu-west-2"
NURSE = {**DEMO_AUTH, "Content-Type": "application/json"}
# The hand-off's headers as the proxy sends them. Every answer of the app is binary to
# chalice and API Gateway (app.py), which send one only to a request with an Accept header.
HANDOFF_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
INTAKE = "/note-intake"


def image(seed: int, size: int = 64) -> str:
    """A distinct base64 "X-ray" per seed."""
    return base64.b64encode(seed.to_bytes(4, "big") * (size // 4)).decode()


def screen_body(*seeds: int, size: int = 64) -> bytes:
    return json.dumps({"images": [image(s, size) for s in seeds]}).encode()


def new_request_id() -> str:
    """A request id as the proxy makes one (NGINX's $request_id: 32 lowercase hex digits)."""
    return uuid.uuid4().hex


def handoff(
    patient: str | int, answer: bytes, request_id: str | None = None, user: str = DEMO_USER, **extra: Any
) -> dict[str, Any]:
    """The hand-off the proxy posts for HOSP's `answer` to a screen of `patient`."""
    return {
        "patient_id": str(patient),
        "user": user,
        "request_id": request_id or new_request_id(),
        "answer": base64.b64encode(answer).decode(),
        **extra,
    }


def failed_handoff_line(
    body: dict[str, Any] | str, status: str = "502", time: str = "2026-12-07T10:00:00+00:00"
) -> str:
    """The proxy's log line of a hand-off the intake did not take (its note-handoff-failed.json)."""
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    request_id = body["request_id"] if isinstance(body, dict) else "0" * 32
    record = {
        "time": time,
        "event": note_jobs.HANDOFF_FAILED_EVENT,
        "request_id": request_id,
        "status": status,
        "upstream_status": status,
        "handoff": text,
    }
    return json.dumps(record, separators=(",", ":"))


@dataclass
class Intake:
    """The Chalice app and the note queues on a mocked AWS."""

    client: Client
    sqs: Any
    queue: Queue

    def hand_off(self, body: dict[str, Any] | bytes | str, headers: dict[str, str] | None = None) -> Any:
        """POST the hand-off (a dict is sent as JSON, with its request id as X-Request-Id)."""
        sent = dict(HANDOFF_HEADERS)
        if isinstance(body, dict):
            if isinstance(body.get("request_id"), str):
                sent["X-Request-Id"] = body["request_id"]
            body = json.dumps(body)
        sent.update(headers or {})
        return self.client.http.post(INTAKE, body=body, headers=sent)

    def depth(self) -> int:
        """Messages on the note queue, visible or in flight."""
        a = self.sqs.get_queue_attributes(QueueUrl=self.queue.url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def jobs(self) -> list[note_jobs.NoteJob]:
        """The jobs on the note queue, left there (visible again at once)."""
        got = self.sqs.receive_message(QueueUrl=self.queue.url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [note_jobs.NoteJob.from_json(m["Body"]) for m in got.get("Messages", [])]

    def drain(self, limit: int = 20) -> list[str | None]:
        """Run the note worker on the queue until it is empty; each message's outcome, then None."""
        outcomes = []
        for _ in range(limit):
            outcome = self.queue.handle_one(wait_seconds=0)
            outcomes.append(outcome)
            if outcome is None:
                break
        return outcomes

    def dead_letters(self) -> list[dict[str, Any]]:
        url = aws.queue_url(config.note_dead_letter_queue_name())
        got = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        return list(got.get("Messages", []))


@dataclass
class Setup(Intake):
    """The intake, and the stand-in behind a real NGINX for the note worker."""

    hosp: Hosp
    proxy: NginxProxy

    def screen(self, patient: str | int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        """The nurse's screen, as the proxy sends it to HOSP."""
        h = NURSE if headers is None else headers
        return requests.post(f"{self.hosp.url}/patients/{patient}/screen", data=body, headers=h, timeout=10)

    def screened(self, patient: int, seed: int, user: str = DEMO_USER) -> dict[str, Any]:
        """A successful screen and its hand-off, taken by the intake; the hand-off."""
        answer = self.screen(patient, screen_body(seed))
        assert answer.status_code == 200, answer.text
        sent = handoff(patient, answer.content, user=user)
        taken = self.hand_off(sent)
        assert taken.status_code == 202, taken.body
        return sent

    def notes(self, patient: int) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.hosp.url}/notes", params={"patient_id": patient}, headers=DEMO_AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    def xray_notes(self, patient: int) -> list[dict[str, Any]]:
        return [n for n in self.notes(patient) if '"kind":"xray-screening"' in n["body"]]
