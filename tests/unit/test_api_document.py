"""docs/hosp-api.yaml documents the stand-in as it is: its routes, and the facts the
code owns (demo accounts, limits, patterns), checked against their sources."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from infra.nginx.render import AUTHENTICATED_API, MAX_BODY_BYTES
from local.hosp_standin.api import ROUTES
from local.hosp_standin.faults import (
    DEFAULT_CONFIG,
    MAX_SCRIPT_ENTRIES,
    RATE_KEYS,
    ROUTE_NAMES,
    FaultRates,
    apply_update,
)
from local.hosp_standin.parsing import BASE64_PATTERN, NOT_BLANK_PATTERN
from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.hosp_standin.store import DEMO_ACCOUNTS, STAFF_ROLES, Patient, Staff, Store
from local.processes import ROOT


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docs" / "hosp-api.yaml").read_text()))


def seed_staff() -> list[Staff]:
    """Every staff record of the seed data (ids run from 1 without gaps)."""
    store, staff = Store(), list[Staff]()
    while (record := store.get_staff(len(staff) + 1)) is not None:
        staff.append(record)
    return staff


def seed_patients() -> list[Patient]:
    store, patients = Store(), list[Patient]()
    while (record := store.get_patient(len(patients) + 1)) is not None:
        patients.append(record)
    return patients


def test_the_retry_budgets_api_paths_are_the_documented_ones_that_need_credentials(document: dict[str, Any]) -> None:
    """A success on a path under one of these makes a user name known to the retry budget:
    every documented path under them must need credentials (the document's global basicAuth,
    no `security: []` of its own), and every path that needs them must be under one."""
    methods = {"get", "head", "post", "put", "patch", "delete", "options"}
    needs_credentials = {
        path: all(
            operation.get("security", document["security"])
            for method, operation in operations.items()
            if method in methods
        )
        for path, operations in document["paths"].items()
    }
    under = {path: path.split("/")[1] in AUTHENTICATED_API for path in needs_credentials}

    assert document["security"] == [{"basicAuth": []}]
    assert under == needs_credentials
    assert {path.split("/")[1] for path, needs in needs_credentials.items() if needs} == set(AUTHENTICATED_API)


def test_every_stand_in_route_and_method_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if not path.startswith("/_sim/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }

    assert document["openapi"].startswith("3.")
    assert documented == {(route.method, route.template) for route in ROUTES}


def test_the_demo_accounts_table_matches_the_accounts_the_stand_in_knows(document: dict[str, Any]) -> None:
    rows = re.findall(
        r"^\| *([\w-]+) *\| *(\S+) *\| *(\d+) *\| *(\w+) *\| *(\d+) *\|$", document["info"]["description"], re.M
    )
    store = Store()
    expected = []
    for account in DEMO_ACCOUNTS:
        staff = store.get_staff(account.staff_id)
        assert staff is not None
        expected.append((account.username, account.password, str(staff.id), staff.role, str(staff.hospital_id)))

    assert rows == expected


def test_the_documented_roles_and_seed_ids_are_the_stand_ins(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    note_input = schemas["NoteInput"]["properties"]
    staff, patients = seed_staff(), seed_patients()

    assert schemas["Staff"]["properties"]["role"]["enum"] == list(STAFF_ROLES)
    assert {record.role for record in staff} <= set(STAFF_ROLES)
    # A valid note names a seed record: the maxima are the last seed ids.
    assert note_input["staff_id"]["maximum"] == len(staff)
    assert note_input["patient_id"]["maximum"] == len(patients)
    assert f"staff 1-{len(staff)} (the accounts above)" in document["info"]["description"]
    assert f"patients 1-{len(patients)}" in document["info"]["description"]


def test_the_documented_fault_config_has_the_stand_ins_fields_and_route_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    config = schemas["FaultConfig"]["properties"]

    assert list(config) == list(DEFAULT_CONFIG.to_json())
    assert list(config["routes"]["properties"]) == list(ROUTE_NAMES)
    assert list(schemas["RouteFaults"]["properties"]) == list(FaultRates.model_fields)
    assert list(schemas["FaultRates"]["properties"]) == list(RATE_KEYS)


def test_the_documented_fault_config_examples_are_accepted(document: dict[str, Any]) -> None:
    example = document["components"]["schemas"]["FaultConfig"]["example"]
    # The per-route example in the description, the one block that names "routes".
    blocks = re.findall(r"```\n(.*?)```", document["info"]["description"], re.S)
    per_route = yaml.safe_load(next(block for block in blocks if '"routes"' in block))

    assert apply_update(DEFAULT_CONFIG, example).to_json() == example
    config = apply_update(DEFAULT_CONFIG, per_route)
    notes_post, notes_get = config.rates_for("POST /notes"), config.rates_for("GET /notes")
    # What the prose says of it: 20% of POST /notes fail, half of those after the
    # commit; 5% of GET /notes fail; screens never.
    assert sum(notes_post.rates.values()) + notes_post.commit_then_fail.rate == pytest.approx(0.2)
    assert notes_post.commit_then_fail.rate == pytest.approx(0.1)
    assert sum(notes_get.rates.values()) == pytest.approx(0.05)
    assert config.rates_for("POST /patients/{id}/screen") == FaultRates()


def test_the_documented_limits_are_the_stand_ins(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    limit = next(p for p in document["paths"]["/_sim/requests"]["get"]["parameters"] if p["name"] == "limit")

    assert limit["schema"]["maximum"] == REQUEST_LOG_SIZE
    assert schemas["FaultConfig"]["properties"]["script"]["maxItems"] == MAX_SCRIPT_ENTRIES
    assert str(MAX_BODY_BYTES) in document["components"]["responses"]["TooLarge"]["description"]
    assert f"16 MiB ({MAX_BODY_BYTES} bytes" in document["info"]["description"]


def test_the_documented_patterns_are_the_ones_the_stand_in_checks(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert schemas["ScreenRequest"]["properties"]["images"]["items"]["pattern"] == BASE64_PATTERN
    assert schemas["NotBlank"]["pattern"] == NOT_BLANK_PATTERN
