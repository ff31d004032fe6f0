"""docs/hosp-api.yaml documents the stand-in as it is: its routes, and the facts the
code owns (demo accounts, limits, patterns), checked against their sources."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from infra.nginx.render import MAX_BODY_BYTES
from local.hosp_standin.api import ROUTES
from local.hosp_standin.faults import MAX_SCRIPT_ENTRIES
from local.hosp_standin.parsing import BASE64_PATTERN, NOT_BLANK_PATTERN
from local.hosp_standin.stats import REQUEST_LOG_SIZE
from local.hosp_standin.store import DEMO_ACCOUNTS, Store
from local.processes import ROOT


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docs" / "hosp-api.yaml").read_text()))


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
