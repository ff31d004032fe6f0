"""The audit query's text and its parameters, for Athena and for DuckDB.

trail.sql names its parameters (`:user`); both engines take positional `?`. This
module swaps each name for a `?` and lists the values in the same order. Only
the names, which are ours, are touched: no value is ever put into the text.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

SQL_FILE = Path(__file__).with_name("trail.sql")
# A :name outside string literals and comments; '::' casts are not used in trail.sql.
_TOKEN = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![:\w]):([a-z_]+)\b")


@functools.cache
def text() -> str:
    """trail.sql as written (Trino SQL, with :names)."""
    return SQL_FILE.read_text(encoding="utf-8")


@functools.cache
def positional() -> tuple[str, tuple[str, ...]]:
    """The query with `?` for each :name, and the names in the order of the `?`s."""
    names: list[str] = []

    def swap(found: re.Match[str]) -> str:
        if found.group(1) is None:  # a string literal or a comment: left as it is
            return found.group(0)
        names.append(found.group(1))
        return "?"

    return _TOKEN.sub(swap, text()), tuple(names)


def values(parameters: dict[str, Any]) -> list[Any]:
    """The values for the `?`s, in order; KeyError names a parameter the caller forgot."""
    _, names = positional()
    missing = sorted(set(names) - set(parameters))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return [parameters[name] for name in names]


def athena_literal(value: Any) -> str:
    """A value as Athena's ExecutionParameters take it: a SQL literal.

    Strings are quoted with their quotes doubled; Athena then binds each as one
    literal, so that a value can never become SQL.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"unsupported parameter type {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def from_athena_literal(literal: str) -> str:
    """The value an athena_literal stands for (an int comes back as its digits)."""
    if len(literal) >= 2 and literal[0] == literal[-1] == "'":
        return literal[1:-1].replace("''", "'")
    return literal
