"""The trail query on lines a reviewer would send: odd methods, odd fields, the route's own rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.functional.test_audit_trail_sql import entry, rid, trail


@pytest.mark.parametrize("method", ["-CMD", "-", "=X", "@A"])
def test_a_method_a_spreadsheet_would_run_is_text(tmp_path: Path, method: str) -> None:
    (row,) = trail(tmp_path, [entry(method=method, status=405, upstream_status="")])

    assert row["method"] == "'" + method


@pytest.mark.parametrize("status", [None, "x"])
def test_a_line_without_a_numeric_status_is_shown_unless_a_status_is_asked_for(tmp_path: Path, status: object) -> None:
    line = entry(request_id=rid(1))
    line["status"] = status

    assert [row["request_id"] for row in trail(tmp_path, [json.dumps(line)])] == [rid(1)]
    assert trail(tmp_path, [json.dumps(line)], status="2xx") == []


def test_the_audit_routes_own_rows_are_not_judged_by_hosp(tmp_path: Path) -> None:
    line = entry(user="", path="/audit", normalized_path="/audit", route="audit", upstream_status="200")

    (row,) = trail(tmp_path, [line])

    assert row["authenticated"] == ""
