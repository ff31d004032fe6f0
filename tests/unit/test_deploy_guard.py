"""`chalice deploy` is refused, saying what to run instead; `chalice package` and `local` are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib import deploy_guard

REPO = Path(__file__).resolve().parents[2]
CHALICE = str(Path(sys.executable).with_name("chalice"))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/venv/bin/chalice", "deploy", "--stage", "dev"], "deploy"),
        (["chalice", "--project-dir", "deploy", "package", "out"], "package"),
        (["chalice", "--project-dir=.", "--debug", "deploy"], "deploy"),
        (["chalice", "local", "--stage", "local"], "local"),
        (["chalice", "--debug"], None),
        (["/var/runtime/bootstrap.py"], None),
        (["python", "-m", "pytest", "deploy"], None),
        ([], None),
    ],
)
def test_the_chalice_command_is_read_after_chalices_own_options(argv: list[str], command: str | None) -> None:
    assert deploy_guard.chalice_command(argv) == command


@pytest.mark.parametrize("stage", ["dev", "prod", "local"])
def test_chalice_deploy_is_refused_before_any_call_to_aws(stage: str, tmp_path: Path) -> None:
    # No credentials and an endpoint where nothing listens: a call would fail another way.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_DEFAULT_REGION": "eu-west-2", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    done = subprocess.run(
        [CHALICE, "deploy", "--stage", stage],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == deploy_guard.REFUSAL
    assert "make deploy STAGE=dev" in done.stderr
    assert not (REPO / ".chalice" / "deployed" / f"{stage}.json").exists()


def test_other_programs_importing_the_app_are_not_refused() -> None:
    deploy_guard.refuse_chalice_deploy(["chalice", "package", "--stage", "dev", "dist"])
    deploy_guard.refuse_chalice_deploy(["/var/runtime/bootstrap"])
