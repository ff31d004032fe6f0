"""trail.sql's escaped columns are the ones infra/audit_escaping.py generates, and a stale query is refused."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pytest

from chalicelib.audit import query
from infra import audit_escaping


def test_the_committed_escaped_columns_are_the_generated_ones() -> None:
    assert audit_escaping.main(["--check"]) == 0, f"run: {audit_escaping.COMMAND}"
    text = query.SQL_FILE.read_text(encoding="utf-8")
    assert audit_escaping.BLOCK.update(text) == text


def test_every_control_character_and_every_column_is_escaped() -> None:
    block = "\n".join(audit_escaping.render_columns(""))

    for code in range(0x20):
        assert block.count(f"chr({code}), '\\x{code:02x}')") == len(audit_escaping.COLUMNS)
    # DEL, the C1 controls and the line and paragraph separators: \uHHHH from U+0080 on,
    # apart from the \xHH of a byte that is not UTF-8.
    shown = {0x7F: "\\x7f", 0x80: "\\u0080", 0x85: "\\u0085", 0x9B: "\\u009b", 0x9F: "\\u009f"}
    shown |= {0x2028: "\\u2028", 0x2029: "\\u2029"}
    for code, text in shown.items():
        assert block.count(f"chr({code}), '{text}')") == len(audit_escaping.COLUMNS)
    assert block.count("chr(") == len(audit_escaping.COLUMNS) * (0x20 + 0x21 + 2)
    assert block.count("regexp_like(") == len(audit_escaping.COLUMNS)
    assert "'[\\p{Cc}\\p{Zl}\\p{Zp}]'" in block
    for _, alias in audit_escaping.COLUMNS:
        assert f"END AS {alias}" in block


def test_the_categories_the_query_looks_for_are_exactly_the_characters_it_escapes() -> None:
    in_categories = {
        code for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) in audit_escaping.CATEGORIES
    }
    assert in_categories == set(audit_escaping.CONTROL_CODES)


def test_a_stale_query_is_refused_and_writing_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = query.SQL_FILE.read_text(encoding="utf-8")
    stale = tmp_path / "trail.sql"
    # A hand edit of one column: its tab is no longer escaped.
    edited = current.replace(", chr(9), '\\x09')", ", chr(9), chr(9))", 1)
    assert edited != current
    stale.write_text(edited, encoding="utf-8")

    assert audit_escaping.main(["--check", "--query", str(stale)]) == 1
    assert audit_escaping.COMMAND in capsys.readouterr().err
    assert audit_escaping.main(["--query", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == current
    assert audit_escaping.main(["--check", "--query", str(stale)]) == 0


@pytest.mark.parametrize("markers", [0, 2])
def test_a_query_without_exactly_one_block_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], markers: int
) -> None:
    block = audit_escaping.BLOCK.rendered("    ")
    path = tmp_path / "trail.sql"
    path.write_text("SELECT\n" + "\n".join([block] * markers) + "\nFROM t\n", encoding="utf-8")

    assert audit_escaping.main(["--check", "--query", str(path)]) == 1
    assert f"found {markers}" in capsys.readouterr().err
    assert audit_escaping.main(["--query", str(path)]) == 1
