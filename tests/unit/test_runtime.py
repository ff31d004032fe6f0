"""The Lambda runtime: one choice (infra/app/runtime.py) that the packager, the Makefile's
Python, the tools' target version and the locks all follow; its lifecycle read with a
pinned clock, never today's."""

from __future__ import annotations

import json
import re
import sys
import tomllib
import zipfile
from datetime import date
from pathlib import Path

import pytest

from infra.app import package, runtime
from infra.app.runtime import LAMBDA_RUNTIME, Lifecycle
from scripts.lock import LOCKS

REPO = Path(__file__).resolve().parents[2]
MAJOR, MINOR = runtime.python_version(LAMBDA_RUNTIME)

LIFECYCLE = Lifecycle(
    runtime="python3.99",
    deprecated=date(2027, 6, 30),
    create_block=date(2027, 7, 31),
    update_block=date(2027, 8, 31),
    successor="python3.100",
)


def test_the_tests_run_on_the_runtimes_python() -> None:
    assert sys.version_info[:2] == (MAJOR, MINOR)
    assert runtime.interpreter_problem() is None


def test_another_python_is_refused_naming_the_runtime() -> None:
    problem = runtime.interpreter_problem((MAJOR, MINOR + 1, 2))
    assert problem is not None
    assert f"Python {MAJOR}.{MINOR + 1}.2" in problem
    assert LAMBDA_RUNTIME in problem
    assert f"PYTHON=python{MAJOR}.{MINOR}" in problem


def test_the_makefile_builds_every_environment_with_the_runtimes_python() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.findall(r"^PYTHON \?= (\S+)$", makefile, re.MULTILINE) == [f"python{MAJOR}.{MINOR}"]


def test_the_tools_and_the_locks_target_the_runtimes_python() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == f"=={MAJOR}.{MINOR}.*"
    assert project["tool"]["ruff"]["target-version"] == f"py{MAJOR}{MINOR}"
    assert project["tool"]["mypy"]["python_version"] == f"{MAJOR}.{MINOR}"
    for lock in LOCKS:
        command = lock.compile_command("uv")
        assert command[command.index("--python-version") + 1] == f"{MAJOR}.{MINOR}", lock.lock


def test_the_runtimes_lifecycle_comes_from_cfn_lints_data() -> None:
    known = runtime.lifecycle()
    assert known.runtime == LAMBDA_RUNTIME
    assert known.deprecated < known.create_block <= known.update_block
    with pytest.raises(LookupError, match=r"python2\.1"):
        runtime.lifecycle("python2.1")


@pytest.mark.parametrize(
    ("today", "warns", "says"),
    [
        (date(2026, 12, 6), False, "(206 days away)"),
        (date(2027, 1, 1), False, "(180 days away)"),
        (date(2027, 1, 2), True, "179 days left; its successor is python3.100"),
        (date(2027, 6, 30), True, "0 days left"),
        (date(2027, 7, 1), True, "deprecated 1 days ago"),
        (date(2028, 12, 6), True, "deprecated 525 days ago"),
    ],
)
def test_packaging_warns_once_the_deprecation_is_less_than_180_days_away(today: date, warns: bool, says: str) -> None:
    notice, warning = LIFECYCLE.notice(today)
    assert warning is warns
    assert says in notice
    assert notice.startswith("Lambda runtime python3.99: deprecated on 2027-06-30, ")
    assert "blocked from 2027-07-31" in notice


def test_a_lifecycle_is_read_from_data_of_cfn_lints_shape() -> None:
    data: dict[str, dict[str, str | None]] = {
        "python3.99": {"deprecated": "2027-06-30", "create-block": "2027-07-31", "update-block": "2027-08-31"}
    }
    data["python3.99"]["successor"] = "python3.100"
    assert runtime.lifecycle("python3.99", data) == LIFECYCLE


# ------------------------------------------------------- the package's check


def _package(tmp_path: Path, runtimes: dict[str, str | None], zipped: dict[str, str]) -> tuple[Path, Path]:
    functions = {
        name: {"Type": "AWS::Serverless::Function", "Properties": {} if found is None else {"Runtime": found}}
        for name, found in runtimes.items()
    }
    template = tmp_path / "sam.json"
    template.write_text(json.dumps({"Resources": {**functions, "Queue": {"Type": "AWS::SQS::Queue"}}}))
    archive = tmp_path / "deployment.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("app.py", "")
        for name, version in zipped.items():
            out.writestr(f"{name}-{version}.dist-info/METADATA", "")
    return template, archive


def test_a_package_as_tested_has_no_problem(tmp_path: Path) -> None:
    template, archive = _package(
        tmp_path, {"APIHandler": LAMBDA_RUNTIME, "WriteNote": LAMBDA_RUNTIME}, {"botocore": "1.44.8", "PyJWT": "2.15.1"}
    )
    assert package.package_problems(template, archive, {"botocore": "1.44.8", "pyjwt": "2.15.1"}) == []


def test_a_function_on_another_runtime_or_none_is_named(tmp_path: Path) -> None:
    template, archive = _package(tmp_path, {"APIHandler": "python3.12", "WriteNote": None}, {})
    assert package.package_problems(template, archive, {}) == [
        f"function APIHandler runs on python3.12, not {LAMBDA_RUNTIME}",
        f"function WriteNote runs on None, not {LAMBDA_RUNTIME}",
    ]


def test_a_zip_without_the_locked_botocore_is_named(tmp_path: Path) -> None:
    template, archive = _package(tmp_path, {"APIHandler": LAMBDA_RUNTIME}, {"botocore": "1.44.18"})
    locked = {"boto3": "1.44.8", "botocore": "1.44.8"}
    assert package.package_problems(template, archive, locked) == [
        "deployment.zip lacks boto3 (requirements.txt locks 1.44.8)",
        "deployment.zip holds botocore 1.44.18, requirements.txt locks 1.44.8",
    ]


def test_a_template_without_functions_is_a_problem(tmp_path: Path) -> None:
    template, archive = _package(tmp_path, {}, {})
    assert package.package_problems(template, archive, {}) == [f"{template} has no function"]
