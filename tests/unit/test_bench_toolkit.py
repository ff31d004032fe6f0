"""What every benchmark shares (bench/toolkit.py): its run directory and its pre-flight checks' table."""

from __future__ import annotations

import pytest

from bench.toolkit import Check, checks_table, run_directory


def test_a_run_directory_is_removed_at_the_end() -> None:
    with run_directory(False, "toolkit-test", "files") as path:
        (path / "log").write_text("x")
        assert path.name.startswith("toolkit-test-")
    assert not path.exists()


def test_a_kept_run_directory_stays_and_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with run_directory(True, "toolkit-test", "the logs") as path:
        (path / "log").write_text("x")
    try:
        assert (path / "log").read_text() == "x"
        assert capsys.readouterr().out == f"the logs are kept in {path}\n"
    finally:
        (path / "log").unlink()
        path.rmdir()


def test_the_checks_table_says_which_check_failed() -> None:
    checks = [Check("A", "GET /", "200", "200"), Check("B", "GET /", "403", "error: ConnectionError")]

    table = checks_table("Pre-flight", "target", checks)

    assert table.headers == ["target", "case", "expected", "seen", ""]
    assert table.rows == [["A", "GET /", "200", "200", "ok"], ["B", "GET /", "403", "error: ConnectionError", "FAILED"]]
