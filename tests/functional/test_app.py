"""The Chalice app through Chalice's own test client, with each stage's configuration."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

from app import app


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_health_reports_the_stage_and_where_hosp_traffic_goes(stage: str) -> None:
    with Client(app, stage_name=stage) as client:
        answer = client.http.get("/health")

    assert answer.status_code == 200
    body = json.loads(answer.body)
    assert body["status"] == "ok"
    assert body["stage"] == stage
    assert body["hosp_base_url"].startswith("https://")


def test_local_stage_takes_hosp_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSP_BASE_URL", "http://127.0.0.1:8080/")
    with Client(app, stage_name="local") as client:
        body = json.loads(client.http.get("/health").body)

    assert body["hosp_base_url"] == "http://127.0.0.1:8080"


def test_a_missing_hosp_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSP_BASE_URL", raising=False)
    with Client(app, stage_name="local") as client:
        answer = client.http.get("/health")

    assert answer.status_code == 503
    body = json.loads(answer.body)
    assert body["status"] == "misconfigured"
    assert "HOSP_BASE_URL" in body["error"]
