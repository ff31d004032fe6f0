"""infra/deploy.py's checks before anything runs, and deploying some stacks alone.

The plan is built from the stages packaged offline and a stand-in bundle (the `dist`
and `bundle` fixtures of conftest.py); nothing here calls AWS.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib import constants
from infra import deploy
from tests.infra.test_chalice_package import FakeRunner, _deployable, _outputs


def _stage_file(tmp_path: Path, stage: str, **network: str) -> Path:
    values: dict[str, Any] = json.loads(deploy.stage_file(stage).read_text())
    values["parameters"]["network"].update(network)
    path = tmp_path / "stage.json"
    path.write_text(json.dumps(values))
    return path


def _tarball(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    return path


# ------------------------------------------------------------ NGINX for the fleet


def test_a_bundle_without_packages_for_a_fleet_without_internet_stops_the_deploy(
    dist: Path, tmp_path: Path, stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every instance would fail its bootstrap: apt could not reach Debian's mirror. The dry run
    shows the plan and says so; the deploy refuses before running anything."""
    plain = _tarball(tmp_path / "plain.tar.gz", ["infra/ec2/bundle/install.sh"])
    stage_path = _stage_file(tmp_path, stage)
    plan = deploy.build_plan(stage, stage_path=stage_path, dist=dist, bundle=plain)
    assert len(plan.problems) == 1
    assert "BUNDLE_PACKAGES" in plan.problems[0]

    arguments = ["--stage", stage, "--stage-file", str(stage_path), "--dist", str(dist), "--bundle", str(plain)]
    assert deploy.main([*arguments, "--dry-run"]) == 0
    assert "the deploy would stop here: " in capsys.readouterr().out
    runner = FakeRunner(_outputs(stage))
    with pytest.raises(deploy.StepFailed, match="BUNDLE_PACKAGES"):
        deploy.deploy(_deployable(plan), runner)
    assert runner.commands == []


def test_a_bundle_with_packages_or_a_route_to_debians_mirror_passes(dist: Path, tmp_path: Path, stage: str) -> None:
    plain = _tarball(tmp_path / "plain.tar.gz", ["infra/ec2/bundle/install.sh"])
    packaged = _tarball(
        tmp_path / "debs.tar.gz", ["infra/ec2/bundle/install.sh", "packages/nginx_1.22.1-9+deb12u12_amd64.deb"]
    )
    assert deploy.build_plan(stage, stage_path=_stage_file(tmp_path, stage), dist=dist, bundle=packaged).problems == []
    internet = _stage_file(tmp_path, stage, FleetHttpsToInternet="true")
    assert deploy.build_plan(stage, stage_path=internet, dist=dist, bundle=plain).problems == []


# ----------------------------------------------------------------- --only


def test_only_deploys_the_named_stacks_and_leaves_the_others(
    dist: Path,
    bundle: Path,
    tmp_path: Path,
    stage: str,
) -> None:
    internet = _stage_file(tmp_path, stage, FleetHttpsToInternet="true")
    plan = deploy.only(deploy.build_plan(stage, stage_path=internet, dist=dist, bundle=bundle), ["edge"])
    runner = FakeRunner(_outputs(stage))

    deploy.deploy(_deployable(plan), runner)

    deployed = [c[c.index("--stack-name") + 1] for c in runner.commands if c[:2] == ["cloudformation", "deploy"]]
    assert deployed == [constants.stack(stage, "edge")]
    assert not any(c[:2] == ["cloudformation", "package"] for c in runner.commands)


def test_only_an_unknown_stack_stops_before_anything_runs(
    dist: Path,
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    internet = _stage_file(tmp_path, "dev", FleetHttpsToInternet="true")
    arguments = ["--stage", "dev", "--stage-file", str(internet), "--dist", str(dist), "--bundle", str(bundle)]
    code = deploy.main([*arguments, "--only", "edg"])
    assert code == 1
    assert "no stack ['edg']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case",
    [
        (b'{"region": ', "is not JSON"),
        (b"\xff\xfe{}", "is not JSON"),
        (b"[]", "one JSON object"),
        (b'{"region": "eu-west-2", "artifact_bucket": "b", "parameters": {"edge": []}}', "parameters must map"),
        (b'{"region": "eu-west-2", "artifact_bucket": "b"}', "no 'parameters'"),
    ],
)
def test_a_broken_stage_file_is_refused_with_what_is_wrong(
    dist: Path, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: tuple[bytes, str]
) -> None:
    content, says = case
    path = tmp_path / "stage.json"
    path.write_bytes(content)
    arguments = ["--stage", "dev", "--stage-file", str(path), "--dist", str(dist), "--bundle", str(bundle)]
    assert deploy.main([*arguments, "--dry-run"]) == 1
    assert says in capsys.readouterr().err


def test_only_with_no_stack_named_is_refused(dist: Path, bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--stage", "dev", "--dist", str(dist), "--bundle", str(bundle), "--dry-run"]
    assert deploy.main([*arguments, "--only", ",,"]) == 1
    assert "--only names no stack" in capsys.readouterr().err


# ------------------------------------------------------------ the monitoring stack


def test_the_monitoring_stack_comes_after_the_fleet_and_before_the_stacks_that_take_its_topic(
    dist: Path, bundle: Path, stage: str
) -> None:
    plan = deploy.build_plan(stage, dist=dist, bundle=bundle)
    keys = [step.key for step in plan.steps]
    monitoring = keys.index("monitoring")
    assert keys.index("proxy") < monitoring < keys.index("audit")
    (step,) = [s for s in plan.steps if s.key == "monitoring"]
    assert step.template == deploy.REPO / "infra" / "monitoring" / "monitoring.yaml"
    assert step.parameters["AccessLogGroupName"] == deploy.Output("proxy", "AccessLogGroupName")
    assert step.parameters["AutoScalingGroupName"] == deploy.Output("proxy", "AutoScalingGroupName")
    # The notes stack, needed by the app before the fleet exists, is deployed again after it.
    assert [i for i, key in enumerate(keys) if key == "notes"] == [1, monitoring + 1]


def test_the_notes_and_audit_stacks_get_the_monitoring_stacks_topic(dist: Path, bundle: Path, stage: str) -> None:
    plan = deploy.build_plan(stage, dist=dist, bundle=bundle)
    topic = deploy.Output("monitoring", "AlarmTopicArn")
    first_notes, second_notes = [s for s in plan.steps if s.key == "notes"]
    (audit,) = [s for s in plan.steps if s.key == "audit"]
    assert second_notes.parameters["AlarmTopicArn"] == topic
    assert audit.parameters["AlarmTopicArn"] == topic
    # Before the monitoring stack exists (a stage's first deploy), the notes stack gets none.
    assert first_notes.parameters["AlarmTopicArn"] == deploy.Output("monitoring", "AlarmTopicArn", default="")
    # The templates keep the parameter, so that either stack can still be deployed alone.
    for step in (first_notes, audit):
        assert deploy.template_parameters(step.template)["AlarmTopicArn"]["Default"] == ""


def test_a_deploy_gives_the_topic_it_made_to_notes_and_audit(
    dist: Path, bundle: Path, tmp_path: Path, stage: str
) -> None:
    internet = _stage_file(tmp_path, stage, FleetHttpsToInternet="true")
    plan = deploy.build_plan(stage, stage_path=internet, dist=dist, bundle=bundle)
    topic = f"arn:aws:sns:eu-west-2:123456789012:{constants.prefix(stage)}-alarms"
    runner = FakeRunner(_outputs(stage))
    runner.stack_outputs[constants.stack(stage, "monitoring")] = {"AlarmTopicArn": topic}

    deploy.deploy(_deployable(plan), runner)

    deployed = [c[c.index("--stack-name") + 1] for c in runner.commands if c[:2] == ["cloudformation", "deploy"]]
    given = dict(enumerate(runner.parameter_files))
    by_step = [(stack, given[i]["Parameters"]) for i, stack in enumerate(deployed)]
    for stack, parameters in by_step:
        if stack in (constants.stack(stage, "notes"), constants.stack(stage, "audit")):
            assert parameters["AlarmTopicArn"] == topic, stack
        if stack == constants.stack(stage, "monitoring"):
            assert parameters["AccessLogGroupName"] == f"/{constants.APP_NAME}/{stage}/proxy-access"
    # A stage's first deploy: no monitoring stack yet, so the notes stack's first step gets no topic.
    first_notes = plan.steps[1]
    before = {k: v for k, v in _outputs(stage).items() if not k.endswith("-monitoring")}
    assert deploy.resolve(plan, first_notes, FakeRunner(before))["AlarmTopicArn"] == ""


@pytest.mark.parametrize("key", ["notes", "audit"])
def test_a_stage_file_that_sets_a_topic_of_its_own_is_refused(
    dist: Path, bundle: Path, tmp_path: Path, stage: str, key: str
) -> None:
    values = json.loads(deploy.stage_file(stage).read_text())
    values["parameters"][key]["AlarmTopicArn"] = "arn:aws:sns:eu-west-2:123456789012:elsewhere"
    edited = tmp_path / "stage.json"
    edited.write_text(json.dumps(values))
    with pytest.raises(deploy.PlanError, match=rf"{key}\.AlarmTopicArn is the monitoring stack's topic"):
        deploy.build_plan(stage, stage_path=edited, dist=dist, bundle=bundle)


def test_the_stage_files_give_the_monitoring_stack_an_email_or_none(stage: str) -> None:
    values = json.loads(deploy.stage_file(stage).read_text())
    assert set(values["parameters"]) == set(deploy.STACKS)
    assert values["parameters"]["monitoring"] == {"AlarmEmail": ""}
