"""A generated block of a checked-in file: the lines between a BEGIN and an END marker comment.

A generator (infra/athena/table.py, infra/audit_escaping.py) renders the block
from its one Python source; `main` writes it into the file, or with --check
writes nothing and exits 1 if the file's block differs, which a test runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class BlockError(ValueError):
    """The file does not hold exactly one block between the markers."""


@dataclass(frozen=True)
class MarkedBlock:
    """The markers, and the lines between them given the BEGIN line's indentation."""

    begin: str
    end: str
    render: Callable[[str], list[str]]

    def rendered(self, indent: str) -> str:
        """The marker lines and the rendered lines between them."""
        return "\n".join([f"{indent}{self.begin}", *self.render(indent), f"{indent}{self.end}"])

    def update(self, text: str) -> str:
        """The text with its block rendered anew; BlockError unless it holds exactly one."""
        pattern = re.compile(
            rf"^(?P<indent>[ ]*){re.escape(self.begin)}\n.*?^[ ]*{re.escape(self.end)}$", re.MULTILINE | re.DOTALL
        )
        blocks = list(pattern.finditer(text))
        if len(blocks) != 1:
            raise BlockError(f"expected one block between {self.begin!r} and {self.end!r}, found {len(blocks)}")
        (block,) = blocks
        return text[: block.start()] + self.rendered(block.group("indent")) + text[block.end() :]


def main(
    argv: Sequence[str] | None,
    block: MarkedBlock,
    *,
    command: str,
    description: str,
    option: str,
    default: Path,
    differs: str,
) -> int:
    """Write the block into the file named by `option` (default `default`), or --check it.

    `differs` says what differs from what, for the message of a failed check.
    """
    parser = argparse.ArgumentParser(prog=command, description=description)
    parser.add_argument("--check", action="store_true", help=f"write nothing; exit 1 if {differs}")
    parser.add_argument(option, dest="path", type=Path, default=default, help="default: %(default)s")
    args = parser.parse_args(argv)
    path: Path = args.path
    try:
        text = path.read_text(encoding="utf-8")
        rendered = block.update(text)
    except (OSError, BlockError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    if args.check:
        if rendered != text:
            print(f"{path}: {differs}; run {command}", file=sys.stderr)
            return 1
        return 0
    if rendered != text:
        path.write_text(rendered, encoding="utf-8")
        print(f"wrote {path}")
    return 0
