"""GET /audit's filters: what is accepted, what is refused and how it is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.audit import query
from chalicelib.audit.filters import DEFAULT_SPAN, MAX_SPAN, BadFilter, Filters, parse
from tests.unit.test_audit_query import placeholders

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def params(**values: str) -> dict[str, list[str]]:
    return {name.replace("from_", "from"): [value] for name, value in values.items()}


def test_no_filters_means_the_last_day_up_to_now() -> None:
    chosen = parse({}, NOW)

    assert (chosen.start, chosen.end) == (NOW - DEFAULT_SPAN, NOW)
    assert chosen.applied() == {"from": "2026-11-27T12:00:00.000Z", "to": "2026-11-28T12:00:00.000Z"}


def test_every_filter_is_applied_as_given() -> None:
    chosen = parse(
        {
            "from": ["2026-11-27T08:00:00Z"],
            "to": ["2026-11-27T09:30:15.250+00:00"],
            "user": ["O'Brien"],
            "patient_id": ["5"],
            "method": ["post"],
            "path_prefix": ["/notes"],
            "status": ["5XX"],
        },
        NOW,
    )

    assert chosen.applied() == {
        "from": "2026-11-27T08:00:00.000Z",
        "to": "2026-11-27T09:30:15.250Z",
        "user": "O'Brien",
        "patient_id": "5",
        "method": "POST",
        "path_prefix": "/notes",
        "status": "5xx",
    }
    assert chosen.status_range() == (500, 599)
    assert chosen.file_name() == "audit_20261127T080000Z_20261127T093015Z.csv"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"from": ["2026-11-27"]}, "from"),  # a date without a time or zone
        ({"from": ["2026-11-27T08:00:00"]}, "from"),  # no time zone
        ({"to": ["2026-11-27T08:00:00+02:00"]}, "to"),  # not UTC
        ({"to": ["yesterday"]}, "to"),
        ({"to": ["2026-02-30T00:00:00Z"]}, "to"),  # the right shape, no such day
        ({"from": ["2026-11-28T10:00:00Z"], "to": ["2026-11-28T09:00:00Z"]}, "from"),  # after to
        ({"from": ["2026-11-28T09:00:00Z"], "to": ["2026-11-28T09:00:00Z"]}, "from"),  # empty range
        ({"from": ["2026-10-01T00:00:00Z"], "to": ["2026-11-28T00:00:00Z"]}, "to"),  # over the span
        ({"from": ["2026-10-01T00:00:00Z"]}, "from"),  # over the span up to now: from is the one given
        ({"to": ["0001-01-01T10:00Z"]}, "to"),  # would overflow
        ({"from": ["9999-12-31T00:00Z"], "to": ["9999-12-31T23:59Z"]}, "to"),  # to is checked first
        ({"to": ["1999-12-31T23:59:59Z"]}, "to"),
        ({"to": ["2000-01-01T00:00Z"]}, "to"),  # its default range would start in 1999
        ({"to": ["2026-11-27T08:00:00 00:00"]}, "to"),  # a + sent bare in a URL
        ({"patient_id": ["5' OR '1'='1"]}, "patient_id"),
        ({"patient_id": ["05"]}, "patient_id"),
        ({"patient_id": ["\u0665"]}, "patient_id"),  # an Arabic-Indic five is not an id
        ({"method": ["GET;DROP"]}, "method"),
        ({"method": ["G%"]}, "method"),
        ({"status": ["6xx"]}, "status"),
        ({"status": ["50"]}, "status"),
        ({"status": ["5__"]}, "status"),
        ({"path_prefix": ["notes"]}, "path_prefix"),  # not a path
        ({"path_prefix": ["/" + "a" * 300]}, "path_prefix"),
        ({"user": ["a" * 300]}, "user"),
        ({"user": ["alice\r\nX-Injected: 1"]}, "user"),
        ({"user": [""]}, "user"),
        ({"user": ["alice", "bob"]}, "user"),  # repeated
        ({"limit": ["10"]}, "limit"),  # unknown
        ({"from": ["2026-11-27T08:00:00Z"] * 2}, "from"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(given: dict[str, list[str]], field: str) -> None:
    with pytest.raises(BadFilter) as refused:
        parse(given, NOW)

    assert refused.value.field == field
    assert refused.value.accepts


@pytest.mark.parametrize(
    "value", ["'; DROP TABLE access_log; --", "a%", "_", "/* x */", "ünïcödé ✓", "a\\b", "x' OR ''='", "?", ":user"]
)
def test_text_filters_take_any_printable_value_and_go_only_into_parameters(value: str) -> None:
    chosen = parse({"user": [value], "path_prefix": ["/" + value]}, NOW)
    sql, names = query.positional()

    values = query.values(chosen.query_parameters())
    literals = [query.athena_literal(v) for v in values]

    assert len(values) == len(names) == placeholders(sql)
    by_name = dict(zip(names, values, strict=True))
    assert by_name["user"] == value.replace("\\", "\\\\")  # as the log writes client text
    assert by_name["path_prefix"] == "/" + value.replace("\\", "\\\\")
    # Each value is one literal: its quotes doubled, so none can end the string early.
    for literal in literals:
        assert literal.isdigit() or "'" not in literal[1:-1].replace("''", "")


def test_the_span_may_be_exactly_the_maximum() -> None:
    end = datetime(2026, 11, 28, tzinfo=UTC)
    chosen = parse(params(from_="2026-10-28T00:00:00Z", to="2026-11-28T00:00:00Z"), NOW)

    assert chosen.end - chosen.start == MAX_SPAN
    assert chosen.end == end


def test_the_query_scans_the_days_of_the_range_and_the_day_after() -> None:
    chosen = parse(params(from_="2026-11-27T00:00:00Z", to="2026-11-27T23:59:59.999Z"), NOW)

    values = chosen.query_parameters()

    assert (values["first_day"], values["last_day"]) == ("2026-11-27", "2026-11-28")
    assert (values["from_time"], values["to_time"]) == ("2026-11-27 00:00:00.000", "2026-11-27 23:59:59.999")


def test_filters_come_back_from_the_parameters_a_job_ran_with() -> None:
    for status in ("", "404", "5xx"):
        chosen = Filters(
            start=NOW - timedelta(hours=3),
            end=NOW,
            user="DOMAIN\\alice",
            patient_id="7",
            method="PUT",
            path_prefix="/notes\\x",
            status=status,
        )
        literals = [query.athena_literal(v) for v in query.values(chosen.query_parameters())]
        _, names = query.positional()
        back = dict(zip(names, (query.from_athena_literal(v) for v in literals), strict=True))

        assert Filters.from_query_parameters(back) == chosen


def test_a_log_value_with_backslashes_is_matched_as_the_log_writes_it() -> None:
    chosen = parse({"user": ["DOMAIN\\alice"]}, NOW)

    assert chosen.query_parameters()["user"] == "DOMAIN\\\\alice"


def test_an_unknown_filter_is_told_which_names_are_accepted() -> None:
    """`accepts` says what would do, as for every other field: never a sentence about the field."""
    with pytest.raises(BadFilter) as refused:
        parse({"limit": ["10"]}, NOW)

    assert refused.value.field == "limit"
    assert refused.value.accepts == "a filter's name, one of: from, to, user, patient_id, method, path_prefix, status"
