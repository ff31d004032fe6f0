"""What the audit query returns, run on DuckDB over generated access logs.

The query text is trail.sql, the one Athena runs; DuckDB runs it after sqlglot's
translation, with the values as parameters, as the local stack does.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.audit import filters, log_schema
from local import audit_duckdb

# The tests' clock: the filters' "now", and the day the export reads the log, which is
# the day an unreadable line counts as logged (the local engine's clock gives both).
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = {"from": "2026-11-27T00:00:00Z", "to": "2026-11-28T00:00:00Z"}
COLUMNS = [
    "time",
    "user",
    "on_behalf_of",
    "authenticated",
    "client_ip",
    "method",
    "path",
    "patient_id",
    "status",
    "attempts",
    "request_id",
    "listener",
    "user_agent",
]


def entry(at: str = "2026-11-27 10:00:00.000", **fields: Any) -> dict[str, Any]:
    """A log line as NGINX writes it, with every field of the schema."""
    line: dict[str, Any] = {
        "time": at.replace(" ", "T") + "+00:00",
        "logged_at": at,
        "request_id": "0" * 32,
        "user": "nurse-joy",
        "on_behalf_of": "",
        "audit_user": "",
        "client_ip": "127.0.0.1",
        "forwarded_for": "",
        "viewer_address": "",
        "method": "GET",
        "path": "/hospitals",
        "normalized_path": "/hospitals",
        "query": "",
        "patient_id": "",
        "body_patient_id": "",
        "query_patient_id": "",
        "status": 200,
        "bytes_sent": 10,
        "request_time": 0.01,
        "upstream_addr": "127.0.0.1:9000",
        "upstream_status": "200",
        "upstream_response_time": "0.010",
        "retry_budget": "",
        "listener": "public",
        "route": "hosp",
        "user_agent": "curl/8.0",
        "note_handoff": "",
    }
    line.update(fields)
    assert set(line) == set(log_schema.NAMES)
    return line


def trail(tmp_path: Path, lines: Iterable[dict[str, Any] | str], **given: str) -> list[dict[str, str]]:
    """The CSV rows of the trail for `given` filters over a log of `lines`, on DAY, at NOW."""
    return exported(tmp_path, lines, {**DAY, **given}, NOW)


def exported(
    tmp_path: Path,
    lines: Iterable[dict[str, Any] | str],
    given: dict[str, str],
    now: datetime,
    today: date | None = None,
) -> list[dict[str, str]]:
    """The CSV rows of the trail for the query string `given` over a log of `lines`, asked for at `now`.

    The export reads the log on `today`, the day of `now` unless given.
    """
    log = tmp_path / "access.json"
    log.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    chosen = filters.parse({name: [value] for name, value in given.items()}, now)
    out = tmp_path / "trail.csv"
    audit_duckdb.export_csv(str(log), chosen.query_parameters(), out, today=today or now.date())
    with out.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def ids(rows: list[dict[str, str]]) -> list[str]:
    return [row["request_id"] for row in rows]


def rid(n: int) -> str:
    return f"{n:032x}"


def test_rows_come_oldest_first_with_the_columns_in_order(tmp_path: Path) -> None:
    lines = [
        entry("2026-11-27 10:00:02.000", request_id=rid(3)),
        entry("2026-11-27 10:00:00.000", request_id=rid(2)),
        entry("2026-11-27 10:00:00.000", request_id=rid(1)),
    ]

    rows = trail(tmp_path, lines)

    assert ids(rows) == [rid(1), rid(2), rid(3)]
    assert rows[0] == {
        "time": "2026-11-27T10:00:00.000+00:00",
        "user": "nurse-joy",
        "on_behalf_of": "",
        "authenticated": "true",
        "client_ip": "127.0.0.1",
        "method": "GET",
        "path": "/hospitals",
        "patient_id": "",
        "status": "200",
        "attempts": "1",
        "request_id": rid(1),
        "listener": "public",
        "user_agent": "curl/8.0",
    }


def test_the_range_includes_from_and_excludes_to(tmp_path: Path) -> None:
    lines = [
        entry("2026-11-26 23:59:59.999", request_id=rid(1)),
        entry("2026-11-27 00:00:00.000", request_id=rid(2)),
        entry("2026-11-27 23:59:59.999", request_id=rid(3)),
        entry("2026-11-28 00:00:00.000", request_id=rid(4)),
        entry("2026-11-25 12:00:00.000", request_id=rid(5)),
    ]

    assert ids(trail(tmp_path, lines)) == [rid(2), rid(3)]


def test_an_empty_trail_is_the_header_alone(tmp_path: Path) -> None:
    rows = trail(tmp_path, [entry(user="someone-else")], user="nobody")

    assert rows == []
    assert (tmp_path / "trail.csv").read_text().count("\n") == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"user": "alice"}, [1]),
        ({"method": "post"}, [2]),
        ({"path_prefix": "/notes"}, [2, 3]),
        ({"status": "404"}, [3]),
        ({"status": "4xx"}, [3, 4]),
        ({"status": "2xx"}, [1, 2]),
        ({"patient_id": "5"}, [1]),
        ({"user": "bob", "status": "4xx"}, [3, 4]),
        ({"user": "bob", "method": "GET", "status": "401"}, [4]),
    ],
)
def test_each_filter_keeps_only_its_rows(tmp_path: Path, given: dict[str, str], expected: list[int]) -> None:
    lines = [
        entry("2026-11-27 10:00:01.000", request_id=rid(1), user="alice", path="/patients/5",
              normalized_path="/patients/5"),
        entry("2026-11-27 10:00:02.000", request_id=rid(2), user="bob", method="POST", path="/notes",
              normalized_path="/notes", status=201, upstream_status="201"),
        entry("2026-11-27 10:00:03.000", request_id=rid(3), user="bob", path="/notes/99", normalized_path="/notes/99",
              status=404, upstream_status="404"),
        entry("2026-11-27 10:00:04.000", request_id=rid(4), user="bob", status=401, upstream_status="401"),
    ]  # fmt: skip

    assert ids(trail(tmp_path, lines, **given)) == [rid(n) for n in expected]


def test_filters_are_values_never_sql_or_patterns(tmp_path: Path) -> None:
    lines = [
        entry(request_id=rid(1), user="x' OR '1'='1"),
        entry(request_id=rid(2), user="alice"),
        entry(request_id=rid(3), user="a_ice"),
        entry(request_id=rid(4), path="/notes%", normalized_path="/notes%"),
        entry(request_id=rid(5), path="/notesX", normalized_path="/notesX"),
    ]

    assert ids(trail(tmp_path, lines, user="x' OR '1'='1")) == [rid(1)]
    assert ids(trail(tmp_path, lines, user="a_ice")) == [rid(3)]
    assert ids(trail(tmp_path, lines, path_prefix="/notes%")) == [rid(4)]
    assert ids(trail(tmp_path, lines, user="'; DROP TABLE access_log; --")) == []


def test_percent_encoded_paths_are_matched_on_the_normalized_path(tmp_path: Path) -> None:
    lines = [entry(request_id=rid(1), path="/p%61tients/%35.json", normalized_path="/patients/5.json")]

    rows = trail(tmp_path, lines, path_prefix="/patients/5", patient_id="5")

    assert ids(rows) == [rid(1)]
    assert rows[0]["path"] == "/p%61tients/%35.json"  # shown as sent
    assert rows[0]["patient_id"] == "5"


def test_the_body_patient_id_beats_a_misleading_header(tmp_path: Path) -> None:
    note = entry(method="POST", path="/notes", normalized_path="/notes", patient_id="9", body_patient_id="7")

    assert [row["patient_id"] for row in trail(tmp_path, [note])] == ["7"]
    assert trail(tmp_path, [note], patient_id="9") == []
    assert len(trail(tmp_path, [note], patient_id="7")) == 1


def test_a_note_listing_names_the_patient_nginx_read_in_its_query(tmp_path: Path) -> None:
    listing = entry(
        path="/notes", normalized_path="/notes", query="view=full&patient_id=%30%31%32", query_patient_id="12"
    )

    assert [row["patient_id"] for row in trail(tmp_path, [listing])] == ["12"]
    assert len(trail(tmp_path, [listing], patient_id="12")) == 1


def test_the_path_and_then_the_body_come_before_the_query(tmp_path: Path) -> None:
    lines = [
        entry(request_id=rid(1), path="/patients/3", normalized_path="/patients/3", query="patient_id=4",
              query_patient_id="4"),
        entry(request_id=rid(2), method="POST", path="/notes", normalized_path="/notes", query="patient_id=4",
              body_patient_id="5", query_patient_id="4"),
        entry(request_id=rid(3), path="/notes", normalized_path="/notes", query="patient_id=4", query_patient_id="4"),
    ]  # fmt: skip

    assert [row["patient_id"] for row in trail(tmp_path, lines)] == ["3", "5", "4"]


@pytest.mark.parametrize(
    ("query", "query_patient_id"),
    [
        ("patient_id=%ff", "\ufffd"),
        ("patient_id=%zz", "%zz"),
        ("patient_id=%", "%"),
        ("patient_id=%e2%82", "\ufffd"),
        # The text \xff and an encoded backslash: logged as client text, each backslash doubled.
        ("patient_id=\\xff%5c", "\\\\xff\\\\"),
    ],
)
def test_a_query_no_decoder_would_take_leaves_the_export_whole(
    tmp_path: Path, query: str, query_patient_id: str
) -> None:
    lines = [
        entry("2026-11-27 10:00:01.000", request_id=rid(1), path="/notes", normalized_path="/notes", query=query,
              query_patient_id=query_patient_id),
        entry("2026-11-27 10:00:02.000", request_id=rid(2), path="/patients/6", normalized_path="/patients/6"),
    ]  # fmt: skip

    rows = trail(tmp_path, lines)

    assert [(row["request_id"], row["patient_id"]) for row in rows] == [(rid(1), query_patient_id), (rid(2), "6")]


@pytest.mark.parametrize(
    ("query", "patient"),
    [
        ("patient_id=12", "12"),
        ("view=full&patient_id=0012&x=1", "12"),
        ("patient_id=000", "0"),
        ("patient_id=%ff&x=%zz", ""),
        ("patient_id=%31%32", ""),  # not decoded
        ("", ""),
    ],
)
def test_a_note_listing_logged_before_query_patient_id_reads_its_plain_digits(
    tmp_path: Path, query: str, patient: str
) -> None:
    line = entry(request_id=rid(1), path="/notes", normalized_path="/notes", query=query)
    del line["query_patient_id"]

    (row,) = trail(tmp_path, [json.dumps(line)])

    assert row["patient_id"] == patient


def test_a_line_missing_optional_fields_still_shows(tmp_path: Path) -> None:
    line = entry(request_id=rid(1), path="/patients/3", normalized_path="/patients/3")
    for optional in ("body_patient_id", "route", "listener", "viewer_address", "retry_budget"):
        del line[optional]

    rows = trail(tmp_path, [json.dumps(line)])

    assert ids(rows) == [rid(1)]
    assert rows[0]["patient_id"] == "3"


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)"])
def test_formula_like_values_are_read_back_as_text(tmp_path: Path, value: str) -> None:
    line = entry(user=value, user_agent=value, path="/" + value, normalized_path="/" + value)

    (row,) = trail(tmp_path, [line])

    assert row["user"] == row["user_agent"] == "'" + value
    assert row["path"] == "/" + value  # a path starts with /, so it is never a formula


@pytest.mark.parametrize(("value", "shown"), [("\tTAB", "\\x09TAB"), ("\rCR", "\\x0dCR"), ("\x00=1+2", "\\x00=1+2")])
def test_a_tab_or_carriage_return_a_spreadsheet_would_run_is_escaped(tmp_path: Path, value: str, shown: str) -> None:
    (row,) = trail(tmp_path, [entry(user=value, user_agent=value)])

    assert row["user"] == row["user_agent"] == shown


# The C0 controls and DEL, the C1 controls and the line and paragraph separators.
CONTROL_CHARACTERS = [chr(code) for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)]


def shown_as(control: str) -> str:
    """What a cell shows for the character: \\xHH below U+0080 (a byte the log escaped looks
    the same), \\uHHHH from U+0080 on."""
    code = ord(control)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


@pytest.mark.parametrize("control", CONTROL_CHARACTERS, ids=[f"U+{ord(c):04X}" for c in CONTROL_CHARACTERS])
def test_a_control_character_reaches_no_cell_raw(tmp_path: Path, control: str) -> None:
    text = "a" + control + "b\\\\x"  # a client's text as logged: its backslash doubled
    escaped = f"a{shown_as(control)}b\\\\x"
    line = entry(
        user=text, on_behalf_of=text, viewer_address=text + ":443", method="GET", path="/" + text,
        normalized_path="/notes", query_patient_id=text, user_agent=text,
    )  # fmt: skip

    (row,) = trail(tmp_path, [line])

    assert {name: row[name] for name in ("user", "on_behalf_of", "client_ip", "path", "patient_id", "user_agent")} == {
        "user": escaped,
        "on_behalf_of": escaped,
        "client_ip": escaped,
        "path": "/" + escaped,
        "patient_id": escaped,
        "user_agent": escaped,
    }
    data = (tmp_path / "trail.csv").read_text(encoding="utf-8")
    assert [c for c in data if c in CONTROL_CHARACTERS and c != "\n"] == []


def test_an_unreadable_line_is_shown_whatever_the_filters(tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        entry(request_id=rid(1), user="alice"),
        '{"time":"2026-11-27T10:00:00',
        "\x00\x01 not json",
    ]

    rows = trail(tmp_path, lines, user="bob", status="5xx")

    assert [row["path"] for row in rows] == ["(unreadable log line)", "(unreadable log line)"]
    assert {row["authenticated"] for row in rows} == {""}


def test_a_note_the_worker_wrote_is_attributed_to_the_nurse(tmp_path: Path) -> None:
    screen = rid(7)
    lines = [
        entry("2026-11-27 00:00:04.000", request_id=screen, user="nurse-joy", method="POST",
              path="/patients/4/screen", normalized_path="/patients/4/screen", route="screen", note_handoff="sent"),
        entry("2026-11-27 00:00:05.000", request_id=screen, user="notes-service", on_behalf_of="nurse-joy",
              method="GET", path="/notes", normalized_path="/notes", query="patient_id=4", query_patient_id="4",
              listener="internal"),
        entry("2026-11-27 00:00:06.000", request_id=screen, user="notes-service", on_behalf_of="nurse-joy",
              method="POST", path="/notes", normalized_path="/notes", body_patient_id="4", listener="internal",
              status=201, upstream_status="201"),
        entry("2026-11-27 00:00:07.000", request_id=rid(8), user="notes-service", method="GET", path="/notes",
              normalized_path="/notes", listener="internal"),
    ]  # fmt: skip

    rows = trail(tmp_path, lines, user="notes-service")
    by_nurse = trail(tmp_path, lines, user="nurse-joy")

    assert [(r["user"], r["on_behalf_of"], r["patient_id"]) for r in rows] == [
        ("notes-service", "nurse-joy", "4"),
        ("notes-service", "nurse-joy", "4"),
        ("notes-service", "", ""),
    ]
    assert [(r["method"], r["user"]) for r in by_nurse] == [
        ("POST", "nurse-joy"),
        ("GET", "notes-service"),
        ("POST", "notes-service"),
    ]


def test_a_line_from_before_on_behalf_of_was_logged_reads_as_nobody(tmp_path: Path) -> None:
    line = entry(request_id=rid(1))
    del line["on_behalf_of"]

    (row,) = trail(tmp_path, [json.dumps(line)])

    assert row["on_behalf_of"] == ""


@pytest.mark.parametrize(
    ("upstream_status", "attempts"), [("", "0"), ("200", "1"), ("502, 200", "2"), ("502 : 503, 200", "3")]
)
def test_attempts_count_every_try(tmp_path: Path, upstream_status: str, attempts: str) -> None:
    (row,) = trail(tmp_path, [entry(upstream_status=upstream_status)])

    assert row["attempts"] == attempts


@pytest.mark.parametrize(
    ("fields", "authenticated"),
    [
        ({"status": 200, "upstream_status": "200"}, "true"),
        ({"status": 403, "upstream_status": "403"}, "true"),
        ({"status": 401, "upstream_status": "401"}, "false"),
        ({"user": "", "status": 401, "upstream_status": "401"}, "false"),
        ({"status": 405, "upstream_status": ""}, ""),  # answered by the proxy: HOSP never judged it
    ],
)
def test_authenticated_says_whether_hosp_accepted_the_claimed_user(
    tmp_path: Path, fields: dict[str, Any], authenticated: str
) -> None:
    (row,) = trail(tmp_path, [entry(**fields)])

    assert row["authenticated"] == authenticated


@pytest.mark.parametrize(
    ("viewer_address", "client"),
    [("", "127.0.0.1"), ("203.0.113.9:46532", "203.0.113.9"), ("2001:db8::1:443", "2001:db8::1")],
)
def test_the_client_ip_is_the_viewer_cloudfront_saw(tmp_path: Path, viewer_address: str, client: str) -> None:
    (row,) = trail(tmp_path, [entry(viewer_address=viewer_address)])

    assert row["client_ip"] == client


def test_a_request_naming_two_patients_is_found_by_either_and_shows_both(tmp_path: Path) -> None:
    lines = [
        entry("2026-11-27 10:00:01.000", request_id=rid(1), method="POST", path="/notes", normalized_path="/notes",
              body_patient_id="1,2"),
        entry("2026-11-27 10:00:02.000", request_id=rid(2), path="/notes", normalized_path="/notes",
              query="patient_id=3&patient_id=14", query_patient_id="3,14"),
        entry("2026-11-27 10:00:03.000", request_id=rid(3), method="POST", path="/notes", normalized_path="/notes",
              body_patient_id="not-an-id,4"),
    ]  # fmt: skip

    assert [row["patient_id"] for row in trail(tmp_path, lines)] == ["1,2", "3,14", "not-an-id,4"]
    assert ids(trail(tmp_path, lines, patient_id="1")) == [rid(1)]
    assert ids(trail(tmp_path, lines, patient_id="2")) == [rid(1)]
    assert ids(trail(tmp_path, lines, patient_id="14")) == [rid(2)]
    assert ids(trail(tmp_path, lines, patient_id="4")) == [rid(3)]
    assert ids(trail(tmp_path, lines, patient_id="12")) == []  # "1,2" names 1 and 2, not 12


def test_a_screen_and_its_note_are_told_apart_by_their_listener(tmp_path: Path) -> None:
    """The nurse's screen through the front door (public) and the note worker's write to HOSP
    (internal) share one request id: the listener column says which row is which. A value
    other than the proxy's two is never shown."""
    screen = {"method": "POST", "path": "/patients/1/screen", "normalized_path": "/patients/1/screen"}
    note = {"method": "POST", "path": "/notes", "normalized_path": "/notes", "body_patient_id": "1"}
    lines = [
        entry("2026-11-27 10:00:00.000", request_id="a" * 32, route="screen", **screen),
        entry("2026-11-27 10:00:00.100", request_id="a" * 32, listener="internal", user="notes-service", **note),
        entry("2026-11-27 10:00:01.000", request_id="b" * 32, listener="=cmd|' /C calc'!A0"),
    ]

    rows = trail(tmp_path, lines)

    assert [(row["request_id"], row["listener"], row["patient_id"]) for row in rows] == [
        ("a" * 32, "public", "1"),
        ("a" * 32, "internal", "1"),
        ("b" * 32, "", ""),
    ]


def test_a_write_whose_patients_the_log_could_not_all_read_is_found_by_every_patient_filter(tmp_path: Path) -> None:
    """A body the log could not scan ("?") or a list cut after 16 ids may have acted on any
    patient (HOSP may take the last of 17): no patient filter may leave it out."""
    cut = ",".join(str(n) for n in range(101, 117)) + ",\\..."
    note = {"method": "POST", "path": "/notes", "normalized_path": "/notes"}
    lines = [
        entry("2026-11-27 10:00:00.000", request_id=rid(1), body_patient_id="?", **note),
        entry("2026-11-27 10:00:01.000", request_id=rid(2), body_patient_id=cut, **note),
        entry("2026-11-27 10:00:02.000", request_id=rid(3), body_patient_id="5", **note),
    ]

    assert ids(trail(tmp_path, lines, patient_id="2")) == [rid(1), rid(2)]
    assert ids(trail(tmp_path, lines, patient_id="5")) == [rid(1), rid(2), rid(3)]
    assert ids(trail(tmp_path, lines, patient_id="101")) == [rid(1), rid(2)]
