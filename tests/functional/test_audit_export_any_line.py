"""An export never fails because of what a client sent: a property over generated log lines.

Each example is an access log whose client-supplied fields hold any text (control
characters, backslashes, quotes, text that is not a patient id, values far over
the log's bounds and Python's CSV field limit), exported by trail.sql on DuckDB
and then hashed and counted as GET /audit does (export.summarise). Seeded
(derandomize) and bounded in examples and time, so that CI runs the same cases.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.audit import export, filters, log_schema
from local import audit_duckdb
from tests.functional.test_audit_trail_sql import COLUMNS, CONTROL_CHARACTERS, DAY, NOW, entry, rid

# Python's csv module refuses a field over 131,072 characters by default.
CSV_FIELD_LIMIT = 131_072
CONTROL = set(CONTROL_CHARACTERS)

# Any text: every code point but lone surrogates, which no JSON encoder of UTF-8 text writes.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
# Long runs of some text, up to far past the CSV field limit.
LONG_TEXT = st.builds(lambda unit, times: unit * times, ANY_TEXT.filter(bool), st.integers(0, 50_000))
CLIENT_TEXT = st.one_of(ANY_TEXT, LONG_TEXT, st.sampled_from(["", "?", "not-an-id", "5", "0005", "5,6", "\\..."]))
CLIENT_FIELDS = [field.name for field in log_schema.FIELDS if field.client_text or field.patient_ids]


@st.composite
def log_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    lines = []
    for n in range(draw(st.integers(1, 4))):
        line = entry(request_id=rid(n), **{name: draw(CLIENT_TEXT) for name in CLIENT_FIELDS})
        line["method"] = draw(st.one_of(st.sampled_from(["GET", "POST", "=X"]), ANY_TEXT))
        lines.append(line)
    return lines


@settings(
    max_examples=40,
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=log_lines())
def test_an_export_of_any_client_text_succeeds_with_a_row_per_line(
    tmp_path_factory: Any, lines: list[dict[str, Any]]
) -> None:
    directory: Path = tmp_path_factory.mktemp("export")
    log = directory / "access.json"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = directory / "trail.csv"
    chosen = filters.parse({name: [value] for name, value in DAY.items()}, NOW)

    audit_duckdb.export_csv(str(log), chosen.query_parameters(), out, today=NOW.date())
    with out.open("rb") as file:
        summary = export.summarise(file)

    data = out.read_bytes()
    assert (summary.rows, summary.unreadable_rows, summary.bytes) == (len(lines), 0, len(data))
    text = data.decode("utf-8")
    assert CONTROL.isdisjoint(text.replace("\n", ""))  # rows end with a newline; no cell holds one
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == COLUMNS
    assert sorted(row["request_id"] for row in reader) == sorted(line["request_id"] for line in lines)


def test_a_row_past_pythons_csv_field_limit_is_counted(tmp_path: Path) -> None:
    long = "A" * (CSV_FIELD_LIMIT + 1)
    text = (
        '"time","user","path"\n'
        + f'"2026-11-27T10:00:00.000+00:00","{long}","/notes"\n'
        + '"","","(unreadable log line)"\n'
    )

    summary = export.summarise(io.BytesIO(text.encode()))

    assert (summary.rows, summary.unreadable_rows, summary.bytes) == (2, 1, len(text))
