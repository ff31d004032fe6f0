"""A small evaluator of CloudWatch Logs JSON filter patterns: the subset the templates use.

CloudWatch's metric filters cannot be run offline, so the tests evaluate the patterns of
infra/monitoring/monitoring.yaml (and any other JSON pattern that keeps to this subset)
against real access-log lines with this module. The subset, with CloudWatch's semantics
as its documentation states them ("Filter pattern syntax for metric filters, subscription
filters, and filter log events", the JSON log events section):

- a pattern is `{ EXPRESSION }`; a log event that is not a JSON object matches nothing;
- a selector is `$.name` (a top-level field) or `$.a.b` (nested objects);
- `SELECTOR = "text"` and `SELECTOR != "text"`: a string field compared with the text;
  `*` in the text matches any run of characters (`"5*"`: text starting with 5; `"*"`:
  any string); no other character is special. Whether CloudWatch's `"*"` matches the
  empty string is not documented: no pattern here relies on it (request_id, the one field
  matched with `"*"`, is never empty);
- `SELECTOR OP NUMBER` with OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`: a numeric field
  (a JSON number, not a string of digits) compared with the number;
- `&&` binds tighter than `||`; parentheses group;
- a selector naming a field the event lacks, or a field of the other type (a number
  compared with text, a string with a number), makes that comparison false, `!=` too.

Anything else (`IS NULL`, `EXISTS`, regular expressions, arrays, booleans, unquoted text)
raises PatternError: a pattern outside the subset fails its test rather than passing
unchecked. Keep the templates' patterns to the subset.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<selector>\$(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\)|\{|\})
    )""",
    re.VERBOSE,
)


class PatternError(ValueError):
    """The pattern is not in the subset this evaluator knows."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(pattern: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(pattern):
        if not pattern[position:].strip():
            break
        match = _TOKEN.match(pattern, position)
        if not match or match.end() == position:
            raise PatternError(f"cannot read {pattern[position:]!r} in {pattern!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    return tokens


@dataclass(frozen=True)
class _Comparison:
    path: tuple[str, ...]
    op: str
    value: str | float

    def test(self, event: dict[str, Any]) -> bool:
        found: Any = event
        for name in self.path:
            if not isinstance(found, dict) or name not in found:
                return False
            found = found[name]
        if isinstance(self.value, str):
            if not isinstance(found, str):
                return False
            equal = _wildcard(self.value).fullmatch(found) is not None
            return equal if self.op == "=" else not equal
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            return False
        compare = {
            "=": found == self.value,
            "!=": found != self.value,
            "<": found < self.value,
            "<=": found <= self.value,
            ">": found > self.value,
            ">=": found >= self.value,
        }
        return compare[self.op]


def _wildcard(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


@dataclass(frozen=True)
class _Any:
    parts: tuple[Any, ...]

    def test(self, event: dict[str, Any]) -> bool:
        return any(part.test(event) for part in self.parts)


@dataclass(frozen=True)
class _All:
    parts: tuple[Any, ...]

    def test(self, event: dict[str, Any]) -> bool:
        return all(part.test(event) for part in self.parts)


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.tokens = _tokens(pattern)
        self.position = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token is None or token.kind != kind or (text is not None and token.text != text):
            raise PatternError(f"expected {text or kind} at {token.text if token else 'the end'!r} in {self.pattern!r}")
        self.position += 1
        return token

    def pattern_(self) -> Any:
        self.take("op", "{")
        expression = self.either()
        self.take("op", "}")
        if self.peek() is not None:
            raise PatternError(f"text after the closing brace in {self.pattern!r}")
        return expression

    def either(self) -> Any:
        parts = [self.both()]
        while (token := self.peek()) is not None and token.text == "||":
            self.position += 1
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def both(self) -> Any:
        parts = [self.term()]
        while (token := self.peek()) is not None and token.text == "&&":
            self.position += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def term(self) -> Any:
        token = self.peek()
        if token is not None and token.text == "(":
            self.position += 1
            inner = self.either()
            self.take("op", ")")
            return inner
        selector = self.take("selector").text
        op = self.take("op").text
        if op not in ("=", "!=", "<", "<=", ">", ">="):
            raise PatternError(f"{op!r} is not a comparison in {self.pattern!r}")
        value = self.peek()
        if value is not None and value.kind == "string":
            if op not in ("=", "!="):
                raise PatternError(f"text is compared with = or != only, not {op!r}, in {self.pattern!r}")
            self.position += 1
            text = json.loads(value.text)
            return _Comparison(tuple(selector.split(".")[1:]), op, text)
        number = self.take("number").text
        return _Comparison(tuple(selector.split(".")[1:]), op, float(number))


@dataclass(frozen=True)
class FilterPattern:
    """A parsed JSON filter pattern; `matches(line)` says whether CloudWatch would count the line."""

    text: str

    def __post_init__(self) -> None:
        _Parser(self.text).pattern_()  # refuses a pattern outside the subset at once

    def matches(self, line: str) -> bool:
        try:
            event = json.loads(line)
        except ValueError:
            return False
        if not isinstance(event, dict):
            return False
        return bool(_Parser(self.text).pattern_().test(event))


def metric_value(selector: str, line: str) -> float | None:
    """The value a metric transformation's `$.field` MetricValue takes from a line; None when it has none."""
    if not re.fullmatch(r"\$(\.[A-Za-z_][A-Za-z0-9_]*)+", selector):
        raise PatternError(f"{selector!r} is not a selector")
    found: Any = json.loads(line)
    for name in selector.split(".")[1:]:
        if not isinstance(found, dict) or name not in found:
            return None
        found = found[name]
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    return float(found)
