"""chalicelib/constants.py: one module of names, and the files that cannot import it agree with it.

.chalice/config.json is read by Chalice and stays literal JSON; these tests hold
it to the module's names. The CloudFormation templates' names are checked in
tests/infra (test_notes_template.py, test_audit_template.py, test_network_template.py).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import app
from chalicelib import config, constants
from chalicelib.audit import auth

REPO = Path(__file__).resolve().parents[2]
CHALICE_CONFIG = REPO / ".chalice" / "config.json"


def chalice_config() -> dict[str, Any]:
    config_json: dict[str, Any] = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    return config_json


def stage_variables(stage: str) -> list[dict[str, str]]:
    """Each scope's environment_variables of `stage`: the stage's, then each function's."""
    stage_conf = chalice_config()["stages"][stage]
    scopes = [stage_conf, *stage_conf.get("lambda_functions", {}).values()]
    return [scope.get("environment_variables", {}) for scope in scopes]


def test_the_module_imports_nothing_but_the_standard_library() -> None:
    """It ships in the Lambda and is imported by infra/, local/ and bench/ alike."""
    tree = ast.parse((REPO / "chalicelib" / "constants.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative import"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_each_variable_is_named_as_it_is_spelt_and_listed_once() -> None:
    variables = [name for name in dir(constants) if name in constants.VARIABLES]
    assert sorted(variables) == sorted(constants.VARIABLES)
    assert len(set(constants.VARIABLES)) == len(constants.VARIABLES)
    for name in constants.VARIABLES:
        assert getattr(constants, name) == name
    groups = (
        constants.APP_VARIABLES,
        constants.NOTE_QUEUE_VARIABLES,
        constants.SERVICE_ACCOUNT_VARIABLES,
        constants.AUDIT_VARIABLES,
    )
    assert sum(len(group) for group in groups) == len(constants.VARIABLES)


def test_the_app_and_its_realm_carry_the_app_name() -> None:
    assert chalice_config()["app_name"] == constants.APP_NAME
    assert app.app.app_name == constants.APP_NAME
    assert auth.REALM == constants.APP_NAME


def test_the_chalice_stages_are_the_local_stage_and_the_deployed_ones() -> None:
    assert set(chalice_config()["stages"]) == {constants.LOCAL_STAGE, *constants.STAGES}
    assert constants.LOCAL_STAGE not in constants.STAGES


@pytest.mark.parametrize("stage", [constants.LOCAL_STAGE, *constants.STAGES])
def test_each_stage_says_its_own_name(stage: str) -> None:
    assert chalice_config()["stages"][stage]["environment_variables"][constants.STAGE] == stage
    assert config.stage({constants.STAGE: stage}) == stage


@pytest.mark.parametrize("stage", constants.STAGES)
def test_the_stages_configured_names_are_the_modules(stage: str) -> None:
    """Every resource name .chalice/config.json gives a deployed stage is the one the module derives."""
    expected = {
        constants.HOSP_SERVICE_SECRET_ID: constants.service_secret(stage),
        constants.AUDIT_DATABASE: constants.audit_database(stage),
        constants.AUDIT_WORKGROUP: constants.audit_workgroup(stage),
        constants.AUDIT_RESULTS_PREFIX: constants.RESULTS_PREFIX,
        constants.AUDIT_ADMIN_GROUP: constants.ADMIN_GROUP,
    }
    seen = set()
    for variables in stage_variables(stage):
        for name, value in variables.items():
            if name in expected:
                assert value == expected[name], name
                seen.add(name)
    assert seen == set(expected), "each of these names is configured somewhere in the stage"


def test_the_names_derived_from_the_app_and_the_stage() -> None:
    assert constants.prefix("dev") == "hosp-reliability-dev"
    assert constants.stack("dev", "network") == "hosp-reliability-dev-network"
    assert constants.note_queue("dev") == "hosp-reliability-dev-notes.fifo"
    assert constants.dead_letter_queue("dev") == "hosp-reliability-dev-notes-dead.fifo"
    assert constants.service_secret("dev") == "hosp-reliability/dev/hosp-service-account"
    assert constants.audit_workgroup("dev") == "hosp-reliability-dev-audit"
    assert constants.audit_database("dev") == "hosp_reliability_dev_audit"
    assert constants.audit_log_bucket("dev", "123456789012") == "hosp-reliability-dev-audit-log-123456789012"
    assert constants.audit_results_bucket("dev", "123456789012") == "hosp-reliability-dev-audit-results-123456789012"
    # The local stack's (moto, one account): no account suffix.
    assert constants.audit_log_bucket(constants.LOCAL_STAGE) == "hosp-reliability-local-audit-log"


def test_the_queue_names_default_to_the_modules() -> None:
    for stage in (constants.LOCAL_STAGE, *constants.STAGES):
        environment = {constants.STAGE: stage}
        assert config.note_queue_name(environment) == constants.note_queue(stage)
        assert config.note_dead_letter_queue_name(environment) == constants.dead_letter_queue(stage)
    assert config.note_queue_name({}) == constants.note_queue(constants.LOCAL_STAGE)
