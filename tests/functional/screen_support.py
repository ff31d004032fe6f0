"""What the screen and note worker tests use: a screen's body, the nurse's headers, and Setup.

Setup is the Chalice app, a mocked AWS with the note queues, and the real
stand-in behind a real NGINX; the fixture `setup` (tests/functional/conftest.py)
makes one per test.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import requests
from chalice.test import Client

from chalicelib import aws, config
from local.nginx_proxy import NginxProxy
from local.note_worker_loop import Queue
from tests.support import DEMO_AUTH, Hosp

REGION = "eu-west-2"
# chalice's test client, like API Gateway, sends a binary answer only to a matching Accept.
NURSE = {**DEMO_AUTH, "Accept": "*/*", "Content-Type": "application/json"}


def image(seed: int, size: int = 64) -> str:
    """A distinct base64 "X-ray" per seed."""
    return base64.b64encode(seed.to_bytes(4, "big") * (size // 4)).decode()


def screen_body(*seeds: int, size: int = 64) -> bytes:
    return json.dumps({"images": [image(s, size) for s in seeds]}).encode()


@dataclass
class Setup:
    hosp: Hosp
    proxy: NginxProxy
    client: Client
    sqs: Any
    queue: Queue

    def screen(self, patient: str | int, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.client.http.post(
            f"/patients/{patient}/screen", body=body, headers=NURSE if headers is None else headers
        )

    def direct(self, patient: str | int, body: bytes, headers: dict[str, str] | None = None) -> Any:
        """The same screen straight to the stand-in: what the nurse must get."""
        h = {k: v for k, v in (NURSE if headers is None else headers).items() if k != "Accept"}
        return requests.post(f"{self.hosp.url}/patients/{patient}/screen", data=body, headers=h, timeout=10)

    def depth(self) -> int:
        """Messages on the note queue, visible or in flight."""
        a = self.sqs.get_queue_attributes(QueueUrl=self.queue.url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict[str, Any]]:
        url = aws.queue_url(config.note_dead_letter_queue_name())
        got = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        return list(got.get("Messages", []))

    def notes(self, patient: int) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.hosp.url}/notes", params={"patient_id": patient}, headers=DEMO_AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    def xray_notes(self, patient: int) -> list[dict[str, Any]]:
        return [n for n in self.notes(patient) if '"kind":"xray-screening"' in n["body"]]
