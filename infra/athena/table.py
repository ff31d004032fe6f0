"""The Columns of the access_log table in infra/athena/audit.yaml, from the log's schema.

chalicelib/audit/log_schema.py is the one list of the fields NGINX writes and of
their types; the Glue table must have exactly its columns, in its order. The
template holds them between two marker comments, and this module writes them
there, or checks that they are what the schema gives:

    python -m infra.athena.table            # rewrite the Columns in audit.yaml
    python -m infra.athena.table --check    # exit 1 if they differ from the schema
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from chalicelib.audit.log_schema import athena_columns

TEMPLATE = Path(__file__).resolve().parent / "audit.yaml"
COMMAND = "python -m infra.athena.table"
BEGIN = "# BEGIN access-log columns"
END = "# END access-log columns"

# The two markers and what lies between them; the BEGIN line's indentation is kept.
_BLOCK = re.compile(rf"^(?P<indent>[ ]*){re.escape(BEGIN)}\n.*?^[ ]*{re.escape(END)}$", re.MULTILINE | re.DOTALL)
# What a column's name and type may hold, so that they need no YAML quoting.
_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")


class TemplateError(ValueError):
    """The template does not hold exactly one block of columns between the markers."""


def render_columns(indent: str) -> str:
    """The marker lines and one flow mapping per column, each line starting with indent."""
    lines = [f"{indent}{BEGIN}"]
    for column in athena_columns():
        name, type_ = column["Name"], column["Type"]
        if not (_PLAIN.match(name) and _PLAIN.match(type_)):
            raise ValueError(f"column {name!r} of type {type_!r} would need YAML quoting")
        lines.append(f"{indent}- {{Name: {name}, Type: {type_}}}")
    lines.append(f"{indent}{END}")
    return "\n".join(lines)


def update(text: str) -> str:
    """The template's text with its block of columns rendered from the schema."""
    blocks = list(_BLOCK.finditer(text))
    if len(blocks) != 1:
        raise TemplateError(f"expected one block between {BEGIN!r} and {END!r}, found {len(blocks)}")
    (block,) = blocks
    return text[: block.start()] + render_columns(block.group("indent")) + text[block.end() :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Write (or check) the access_log table's Columns in infra/athena/audit.yaml "
        "from chalicelib/audit/log_schema.py.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the Columns differ from the schema"
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="default: %(default)s")
    args = parser.parse_args(argv)
    path: Path = args.template
    try:
        text = path.read_text(encoding="utf-8")
        rendered = update(text)
    except (OSError, TemplateError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    if args.check:
        if rendered != text:
            print(
                f"{path}: the access_log Columns differ from chalicelib/audit/log_schema.py; run {COMMAND}",
                file=sys.stderr,
            )
            return 1
        return 0
    if rendered != text:
        path.write_text(rendered, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
