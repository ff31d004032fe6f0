"""Settings come from the environment at call time, with clear errors that reveal no address."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import config
from chalicelib.audit import settings as audit_settings
from local.processes import ROOT

CHALICE_DIR = ROOT / ".chalice"


def chalice_config() -> dict[str, Any]:
    return dict(json.loads((CHALICE_DIR / "config.json").read_text()))


def test_load_reads_the_given_environment() -> None:
    settings = config.load({"STAGE": "prod", "HOSP_BASE_URL": "https://hosp-proxy.vets.internal/"})

    assert settings == config.Settings(stage="prod", hosp_base_url="https://hosp-proxy.vets.internal")


@pytest.mark.parametrize("value", ["", "hosp.corp.internal", "ftp://hosp.corp.internal", "https://", "http://[::1"])
def test_a_bad_hosp_url_names_the_variable_but_not_the_value(value: str) -> None:
    with pytest.raises(config.ConfigError, match="HOSP_BASE_URL") as raised:
        config.load({"HOSP_BASE_URL": value})

    assert "corp" not in str(raised.value)


@pytest.mark.parametrize(
    "host",
    [
        "example", "example.com", "www.example.com", "EXAMPLE.ORG", "example.net.", "hosp.example",
        "hosp-proxy.example.internal", "hosp-proxy.dev.example.internal", "invalid", "hosp.invalid", "hosp.test",
    ],
)  # fmt: skip
def test_reserved_and_made_up_example_hosts_are_placeholders(host: str) -> None:
    assert config.is_placeholder_host(host)
    problems = config.problems({"HOSP_BASE_URL": f"https://{host}:8443/v1"})

    assert problems == ["HOSP_BASE_URL is a placeholder host name, not a real HOSP proxy"]
    assert host.lower().rstrip(".") not in " ".join(problems).lower()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "hosp-proxy.vets.internal", "examples.com", "myexample.org", "testing.io"]
)
def test_real_hosts_are_not_placeholders(host: str) -> None:
    assert not config.is_placeholder_host(host)
    assert config.problems({"HOSP_BASE_URL": f"http://{host}:8080"}) == []


def test_each_deployable_stage_has_its_own_policy_file_and_a_hosp_url() -> None:
    conf = chalice_config()

    assert conf["autogen_policy"] is False
    for stage in ("dev", "prod"):
        stage_conf = conf["stages"][stage]
        policy = json.loads((CHALICE_DIR / stage_conf["iam_policy_file"]).read_text())
        # "*" only where AWS allows nothing narrower: a VPC Lambda's network interfaces
        # (tests/infra/test_iam_policies.py checks the policies in full).
        unscoped = [s for s in policy["Statement"] if s["Resource"] == "*"]
        vpc_actions = ("NetworkInterface", "PrivateIpAddresses", "DescribeSubnets")
        assert all(
            action.startswith("ec2:") and any(part in action for part in vpc_actions)
            for s in unscoped
            for action in s["Action"]
        )
        # Until the real proxies exist the URLs are placeholders, and /health says so.
        assert all("placeholder" in problem for problem in config.problems(stage_conf["environment_variables"]))


def test_every_configured_environment_variable_is_one_the_app_reads() -> None:
    conf = chalice_config()
    scopes = [conf, *conf["stages"].values()]
    configured = {name for scope in scopes for name in scope.get("environment_variables", {})}

    assert configured <= {*config.VARIABLES, *audit_settings.VARIABLES}
