"""Settings come from the environment at call time, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib import config

ROOT = Path(__file__).resolve().parents[2]


def test_load_reads_the_given_environment() -> None:
    settings = config.load({"STAGE": "prod", "HOSP_BASE_URL": "https://hosp.example/"})

    assert settings == config.Settings(stage="prod", hosp_base_url="https://hosp.example")


@pytest.mark.parametrize("value", ["", "hosp.example", "ftp://hosp.example"])
def test_a_bad_hosp_url_names_the_variable(value: str) -> None:
    with pytest.raises(config.ConfigError, match="HOSP_BASE_URL"):
        config.load({"HOSP_BASE_URL": value})


def test_each_deployable_stage_has_its_own_policy_file_and_hosp_url() -> None:
    chalice_dir = ROOT / ".chalice"
    conf = json.loads((chalice_dir / "config.json").read_text())

    assert conf["autogen_policy"] is False
    for stage in ("dev", "prod"):
        stage_conf = conf["stages"][stage]
        policy = json.loads((chalice_dir / stage_conf["iam_policy_file"]).read_text())
        assert all(s["Resource"] != "*" for s in policy["Statement"])
        config.load(stage_conf["environment_variables"])  # valid settings
