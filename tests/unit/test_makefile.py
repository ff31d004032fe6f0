"""The Makefile a newcomer starts from: plain `make` lists what it can do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _make(*args: str) -> str:
    make = shutil.which("make")
    assert make, "GNU make is not installed (Debian: apt-get install make)"
    done = subprocess.run([make, "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plain_make_lists_the_targets_and_builds_nothing() -> None:
    listed = re.findall(r"^  make (\S+)", _make(), re.MULTILINE)
    assert listed[:4] == ["help", "lock", "run", "test"]
    assert {"package", "deploy", "check", "bench"} <= set(listed)
    assert _make("help") == _make()


def test_every_listed_target_is_a_rule() -> None:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    described = re.findall(r"^## ([a-z-]+): ", text, re.MULTILINE)
    rules = set(re.findall(r"^([a-z-]+):(?!=)", text, re.MULTILINE))
    assert described
    assert [name for name in described if name not in rules] == []
