"""Fixtures of the functional tests: the note intake and the note worker, the worker on a real NGINX.

The intake and the worker run in this process (chalice.test.Client and the
worker's handler); HOSP is the stand-in behind NGINX's internal listener, as
in AWS; SQS is moto's, because AWS is out of reach here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from chalicelib import aws, constants, service_account
from local import note_queue
from local.hosp_standin.store import NOTES_SERVICE_ACCOUNT
from local.nginx_proxy import NginxProxy
from local.note_worker_loop import Queue
from tests.functional.intake_support import REGION, Intake, Setup
from tests.support import Hosp

# The intake alone never calls HOSP; the app's configuration must still be whole.
UNCALLED_HOSP = "http://127.0.0.1:9"


@contextmanager
def mocked_app(monkeypatch: pytest.MonkeyPatch, hosp_base_url: str) -> Iterator[Intake]:
    """The app's environment, a mocked AWS with the note queues, and the app's test client."""
    account = NOTES_SERVICE_ACCOUNT
    env = {
        constants.STAGE: "local",
        constants.HOSP_BASE_URL: hosp_base_url,
        constants.HOSP_SERVICE_USERNAME: account.username,
        constants.HOSP_SERVICE_PASSWORD: account.password,
        constants.HOSP_SERVICE_STAFF_ID: str(account.staff_id),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws.reset()
        service_account.forget()
        sqs = boto3.client("sqs", region_name=REGION)
        note_queue.create(sqs)
        try:
            with Client(app, stage_name="local") as client:
                yield Intake(client, sqs, Queue(sqs))
        finally:
            aws.reset()
            service_account.forget()


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    with mocked_app(monkeypatch, UNCALLED_HOSP) as made:
        yield made


@pytest.fixture
def setup(fresh_hosp: Hosp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    with (
        NginxProxy(fresh_hosp.address, tmp_path / "nginx") as proxy,
        mocked_app(monkeypatch, proxy.internal_url) as made,
    ):
        yield Setup(made.client, made.sqs, made.queue, fresh_hosp, proxy)
