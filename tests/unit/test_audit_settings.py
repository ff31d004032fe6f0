"""The audit route's settings (chalicelib/audit/settings.py) as the route uses them: the local work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import constants
from chalicelib.audit import jobs, settings
from local import audit_engine
from local.stack import AUDIT_WORK_DIR, Ports, Stack


def local_environment(work_dir: str | None) -> dict[str, str]:
    environment = {
        constants.AUDIT_ENGINE: "duckdb",
        constants.AUDIT_LOCAL_LOG: "/nowhere/access.json",
        constants.AUDIT_RESULTS_BUCKET: "results",
        constants.AUDIT_LOG_BUCKET: "log",
    }
    if work_dir is not None:
        environment[constants.AUDIT_LOCAL_WORK_DIR] = work_dir
    return environment


def local_engine(environment: dict[str, str]) -> audit_engine.LocalEngine:
    audit_engine.install()  # as python -m local.chalice_local does
    engine = jobs.engine(settings.export(environment))
    assert isinstance(engine, audit_engine.LocalEngine)
    return engine


def test_the_local_engine_writes_in_the_work_dir_it_is_given(tmp_path: Path) -> None:
    assert local_engine(local_environment(str(tmp_path / "exports"))).work_dir == tmp_path / "exports"


@pytest.mark.parametrize("work_dir", [None, "", "  "])
def test_the_local_engine_without_a_work_dir_is_a_configuration_error(work_dir: str | None) -> None:
    with pytest.raises(settings.AuditConfigError) as missing:
        settings.export(local_environment(work_dir))

    assert missing.value.problems == [f"{constants.AUDIT_LOCAL_WORK_DIR} is not set"]


def test_athena_needs_no_local_work_dir() -> None:
    chosen = settings.export(
        {
            constants.AUDIT_DATABASE: "db",
            constants.AUDIT_WORKGROUP: "wg",
            constants.AUDIT_RESULTS_BUCKET: "results",
            constants.AUDIT_LOG_BUCKET: "log",
        }
    )

    assert (chosen.engine, chosen.local_work_dir) == ("athena", "")


def test_two_stacks_with_different_run_dirs_export_through_different_work_dirs(tmp_path: Path) -> None:
    ports = Ports(*range(40001, 40009))  # nothing is started: the stacks are only built
    first = Stack(ports, tmp_path / "first", faults=None, seed=1)
    second = Stack(ports, tmp_path / "second", faults=None, seed=1)

    work_dirs = [local_engine(stack.audit_export_environment()).work_dir for stack in (first, second)]

    assert work_dirs == [tmp_path / "first" / AUDIT_WORK_DIR, tmp_path / "second" / AUDIT_WORK_DIR]
