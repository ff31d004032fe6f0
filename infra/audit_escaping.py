"""The audit trail's escaped cells in chalicelib/audit/trail.sql, from one definition.

No cell of the audit CSV holds a control character (U+0000 to U+001F, U+007F to
U+009F) or a line or paragraph separator (U+2028, U+2029): each is written as
\\xHH (below U+0080) or \\uHHHH, in lowercase hex digits (docs/audit.md, "The CSV").
Athena runs trail.sql as it is and has no macros, so the `shown` CTE spells that
escaping out for every text column. This module is its one definition: it writes
those columns between two marker comments in trail.sql, or checks that they are what
it gives:

    python -m infra.audit_escaping            # rewrite the escaped columns in trail.sql
    python -m infra.audit_escaping --check    # exit 1 if they differ from the definition
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chalicelib.audit.query import SQL_FILE
from infra.marked_block import MarkedBlock
from infra.marked_block import main as generate

COMMAND = "python -m infra.audit_escaping"

# The characters a cell never holds raw, in the order they are replaced: the C0 controls
# and DEL; the C1 controls, valid UTF-8 that the log writes as it is (U+0085 is a line
# break to some readers, U+009B starts a terminal's escape sequence to some terminals);
# and the line and paragraph separators, line breaks to Python's str.splitlines and others.
CONTROL_CODES: tuple[int, ...] = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
# Each escaped column of the `shown` CTE: what it reads from `chosen`, and the name it is shown as.
COLUMNS: tuple[tuple[str, str], ...] = (
    ('"user"', '"user"'),
    ("on_behalf_of", "on_behalf_of"),
    ("client", "client_ip"),
    ("method", "method"),
    ("path", "path"),
    ("patient", "patient_id"),
    ("request_id", "request_id"),
    ("user_agent", "user_agent"),
)
# How many replacements one line of the generated SQL holds.
_PER_LINE = 4


def escaped_text(code: int) -> str:
    """What a cell shows for the character `code`: below U+0080, \\x and two lowercase hex
    digits, as the access log writes a byte that is not UTF-8; above, \\u and four, so that
    the character U+0085 (\\u0085) and a byte 0x85 the log escaped (\\x85) stay apart."""
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


# The same characters as Unicode categories, for the regular expression that finds a
# cell needing escapes: control characters (Cc: exactly U+0000 to U+001F and U+007F to
# U+009F), the line separator (Zl) and the paragraph separator (Zp). Trino's engine
# (Joni, Java syntax) and DuckDB's (RE2) both read \p{..}; they do not share a
# spelling of a code point above U+00FF (Trino's Java syntax has no \x{...}).
CATEGORIES: tuple[str, ...] = ("Cc", "Zl", "Zp")


def _character_class() -> str:
    """A regular expression class matching any of CONTROL_CODES (tests/unit/test_audit_escaping.py
    checks that CATEGORIES hold exactly those)."""
    return "[" + "".join(f"\\p{{{category}}}" for category in CATEGORIES) + "]"


def render_column(source: str, alias: str, indent: str) -> list[str]:
    """One column's CASE: the value, with each control character replaced, if it holds any."""
    value = f"coalesce({source}, '')"
    replacements = [f"chr({code}), '{escaped_text(code)}')" for code in CONTROL_CODES]
    lines = [
        f"{indent}CASE",
        f"{indent}    WHEN regexp_like({value}, '{_character_class()}') THEN",
        f"{indent}        {'replace(' * len(replacements)}{value}",
    ]
    for start in range(0, len(replacements), _PER_LINE):
        lines.append(f"{indent}        , " + ", ".join(replacements[start : start + _PER_LINE]))
    lines += [f"{indent}    ELSE {value}", f"{indent}END AS {alias}"]
    return lines


def render_columns(indent: str) -> list[str]:
    """The escaped columns, separated by commas, each line starting with indent."""
    lines: list[str] = []
    for index, (source, alias) in enumerate(COLUMNS):
        column = render_column(source, alias, indent)
        if index < len(COLUMNS) - 1:
            column[-1] += ","
        lines += column
    return lines


BLOCK = MarkedBlock("-- BEGIN escaped columns", "-- END escaped columns", render_columns)


def main(argv: Sequence[str] | None = None) -> int:
    return generate(
        argv,
        BLOCK,
        command=COMMAND,
        description="Write (or check) the escaped columns of chalicelib/audit/trail.sql.",
        option="--query",
        default=SQL_FILE,
        differs="the escaped columns differ from infra/audit_escaping.py",
    )


if __name__ == "__main__":
    sys.exit(main())
