"""trail.sql's parameters: named in the file, positional for the engines, never pasted in."""

from __future__ import annotations

import re

import pytest

from chalicelib.audit import query

LITERALS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|--[^\n]*")


def placeholders(sql: str) -> int:
    """The `?`s the engines bind, outside string literals and comments."""
    return LITERALS_AND_COMMENTS.sub("", sql).count("?")


def test_every_named_parameter_becomes_one_placeholder_in_order() -> None:
    sql, names = query.positional()

    assert placeholders(sql) == len(names)
    assert not re.search(r"(?<![:\w]):[a-z_]+\b", LITERALS_AND_COMMENTS.sub("", sql))
    assert set(names) == {
        "first_day",
        "last_day",
        "from_time",
        "to_time",
        "user",
        "patient_id",
        "method",
        "path_prefix",
        "status_low",
        "status_high",
        "screen_path",
    }


def test_string_literals_and_comments_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A :name inside a literal or a comment is text, not a parameter, whatever trail.sql says today."""
    sql = (
        "-- :user in a comment\n"
        "SELECT ':user', 'it''s :method', x FROM t -- and :status here\n"
        "WHERE a = :user AND b = ':path_prefix' AND c = :method AND d::text = e"
    )
    monkeypatch.setattr(query, "text", lambda: sql)
    query.positional.cache_clear()
    try:
        swapped, names = query.positional()
    finally:
        query.positional.cache_clear()

    assert names == ("user", "method")
    assert swapped == sql.replace("a = :user", "a = ?").replace("c = :method", "c = ?")


def test_a_missing_value_is_named() -> None:
    with pytest.raises(KeyError, match="user"):
        query.values({"first_day": "2026-11-27"})


@pytest.mark.parametrize("value", ["", "O'Brien", "''", "'; DROP TABLE access_log; --", "\\'", "ünï"])
def test_athena_literals_quote_strings_and_come_back_unchanged(value: str) -> None:
    literal = query.athena_literal(value)

    assert literal[0] == literal[-1] == "'"
    assert "'" not in literal[1:-1].replace("''", "")
    assert query.from_athena_literal(literal) == value


def test_athena_literals_of_numbers_are_digits() -> None:
    assert query.athena_literal(599) == "599"
    with pytest.raises(TypeError):
        query.athena_literal(True)
