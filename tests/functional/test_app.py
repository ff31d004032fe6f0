"""The Chalice app through Chalice's own test client, with each stage's configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from chalicelib import aws, constants, health
from local.processes import closed_port

# Every answer of the app is binary to API Gateway (app.py), which sends it only to
# a request whose Accept matches; the proxy sends */* for a client that sent none.
ACCEPT_JSON = {"Accept": "application/json"}
REGION = "eu-west-2"


def test_health_reports_a_placeholder_hosp_url_without_revealing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.HOSP_BASE_URL, "https://hosp-proxy.dev.example.internal")
    with Client(app, stage_name="dev") as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)

    assert answer.status_code == 503
    body = json.loads(answer.body)
    assert body["status"] == "misconfigured"
    assert body["problems"] == ["HOSP_BASE_URL is a placeholder host name, not a real HOSP proxy"]
    assert_reveals_no_address(answer.body)
    assert b"hosp-proxy" not in answer.body


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_health_of_a_stage_configured_without_its_network_says_the_url_is_not_set(
    monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """Outside a deploy (which sets HOSP_BASE_URL from the network stack), a stage's
    configuration holds no URL: /health says so rather than calling anyone."""
    monkeypatch.delenv(constants.HOSP_BASE_URL, raising=False)
    with Client(app, stage_name=stage) as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)

    assert answer.status_code == 503
    assert json.loads(answer.body) == {"status": "misconfigured", "problems": ["HOSP_BASE_URL is not set"]}


def test_local_stage_with_a_hosp_url_is_ok_and_names_only_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.HOSP_BASE_URL, "http://127.0.0.1:8080/")
    with Client(app, stage_name="local") as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)

    assert answer.status_code == 200
    assert json.loads(answer.body) == {"status": "ok", "stage": "local"}
    assert_reveals_no_address(answer.body)


def test_a_missing_hosp_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(constants.HOSP_BASE_URL, raising=False)
    with Client(app, stage_name="local") as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)

    assert answer.status_code == 503
    assert json.loads(answer.body) == {"status": "misconfigured", "problems": ["HOSP_BASE_URL is not set"]}


@pytest.mark.parametrize("value", ["ftp://hosp-proxy.corp.internal", "https://hosp-proxy.corp.test"])
def test_a_bad_hosp_url_is_reported_without_its_host(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.HOSP_BASE_URL, value)
    with Client(app, stage_name="local") as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)

    assert answer.status_code == 503
    assert json.loads(answer.body)["problems"][0].startswith("HOSP_BASE_URL ")
    assert_reveals_no_address(answer.body)


def assert_reveals_no_address(body: bytes) -> None:
    text = body.decode()
    for leak in ("://", "hosp-proxy", "example", "127.0.0.1", "corp"):
        assert leak not in text


@pytest.fixture
def configured_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stage configured to reach HOSP, with credentials for AWS (moto's, or none reachable);
    the clients and /health's answer about the secret forgotten before and after."""
    monkeypatch.setenv(constants.HOSP_BASE_URL, "https://hosp-proxy.corp.internal")
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()
    health.forget()
    yield
    aws.reset()
    health.forget()


@pytest.mark.usefixtures("configured_aws")
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_health_names_an_empty_service_account_secret_until_it_has_a_value(stage: str) -> None:
    """The notes stack creates the secret empty; until an operator puts the account, every
    note job waits (note_worker), and /health says why, reading only the secret's metadata."""
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name=constants.service_secret(stage))
        with Client(app, stage_name=stage) as client:
            empty = client.http.get("/health", headers=ACCEPT_JSON)
            secrets.put_secret_value(
                SecretId=constants.service_secret(stage), SecretString='{"password": "s3cret-value"}'
            )
            cached = client.http.get("/health", headers=ACCEPT_JSON)
            health.forget()
            put = client.http.get("/health", headers=ACCEPT_JSON)
        aws.reset()

    assert empty.status_code == 503
    (problem,) = json.loads(empty.body)["problems"]
    assert problem.startswith("the HOSP service account's secret has no value yet: put it with")
    assert cached.status_code == 503  # checked at most once a minute
    assert put.status_code == 200, put.body
    assert b"s3cret-value" not in put.body + empty.body
    assert_reveals_no_address(empty.body)


@pytest.mark.usefixtures("configured_aws")
def test_health_does_not_fail_when_secrets_manager_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable Secrets Manager is not a finding about the secret: /health stays 200."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    with Client(app, stage_name="dev") as client:
        answer = client.http.get("/health", headers=ACCEPT_JSON)
    assert answer.status_code == 200, answer.body
