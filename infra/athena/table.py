"""The Columns of the access_log table in infra/athena/audit.yaml, from the log's schema.

chalicelib/audit/log_schema.py is the one list of the fields NGINX writes and of
their types; the Glue table must have exactly its columns, in its order. The
template holds them between two marker comments, and this module writes them
there, or checks that they are what the schema gives:

    python -m infra.athena.table            # rewrite the Columns in audit.yaml
    python -m infra.athena.table --check    # exit 1 if they differ from the schema
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from chalicelib.audit.log_schema import athena_columns
from infra.marked_block import MarkedBlock
from infra.marked_block import main as generate

TEMPLATE = Path(__file__).resolve().parent / "audit.yaml"
COMMAND = "python -m infra.athena.table"
BEGIN = "# BEGIN access-log columns"
END = "# END access-log columns"

# What a column's name and type may hold, so that they need no YAML quoting.
_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")


def render_columns(indent: str) -> list[str]:
    """One flow mapping per column, each line starting with indent."""
    lines: list[str] = []
    for column in athena_columns():
        name, type_ = column["Name"], column["Type"]
        if not (_PLAIN.match(name) and _PLAIN.match(type_)):
            raise ValueError(f"column {name!r} of type {type_!r} would need YAML quoting")
        lines.append(f"{indent}- {{Name: {name}, Type: {type_}}}")
    return lines


BLOCK = MarkedBlock(BEGIN, END, render_columns)


def update(text: str) -> str:
    """The template's text with its block of columns rendered from the schema."""
    return BLOCK.update(text)


def main(argv: Sequence[str] | None = None) -> int:
    return generate(
        argv,
        BLOCK,
        command=COMMAND,
        description="Write (or check) the access_log table's Columns in infra/athena/audit.yaml "
        "from chalicelib/audit/log_schema.py.",
        option="--template",
        default=TEMPLATE,
        differs="the access_log Columns differ from chalicelib/audit/log_schema.py",
    )


if __name__ == "__main__":
    sys.exit(main())
