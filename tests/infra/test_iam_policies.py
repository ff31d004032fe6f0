"""infra/iam/policies.py and the .chalice/policy-<stage>-<function>.json files it writes.

The committed files are the generated ones; each function's policy grants what that
function does, on the resources infra/notes/queues.yaml creates for its stage, and
nothing of another function or another stage. Grants are checked by evaluating IAM's wildcard matching against the ARNs
a deployment would have, not by comparing strings: each Resource is first given the value CloudFormation gives it
when the app stack is deployed in ACCOUNT and REGION.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chalicelib import config as app_config
from chalicelib import constants
from chalicelib.constants import STAGES
from infra.iam import policies
from infra.iam.policies import (
    API_HANDLER,
    FUNCTIONS,
    NOTE_WORKER,
    PRINCIPAL_ACCOUNT,
    REST_API,
    STACK_ACCOUNT,
    STACK_REGION,
    StageResources,
)
from tests.infra import lambdas
from tests.infra.cfn import ACCOUNT, INFRA, REGION, Deployed, decode, resources

NOTES_TEMPLATE = INFRA / "notes" / "queues.yaml"
# What AWS's AWSLambdaVPCAccessExecutionRole grants a function in a VPC, on "*".
VPC_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


@pytest.fixture(params=FUNCTIONS)
def function(request: pytest.FixtureRequest) -> str:
    """Each function of the app in turn."""
    return str(request.param)


@pytest.fixture
def policy(stage: str, function: str) -> dict[str, Any]:
    return policies.policy(stage, function)


@pytest.fixture
def interceptor(stage: str) -> dict[str, Any]:
    return policies.policy(stage, API_HANDLER)


@pytest.fixture
def worker(stage: str) -> dict[str, Any]:
    return policies.policy(stage, NOTE_WORKER)


@pytest.fixture
def deployed(stage: str) -> Deployed:
    return Deployed(decode(NOTES_TEMPLATE), Stage=stage)


# ------------------------------------------------------------------ helpers


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters (":" and "/" too), `?` any one."""
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# The app stack, deployed in ACCOUNT and REGION: what CloudFormation makes of a policy's Fn::Sub.
_APP_STACK = Deployed({"Resources": {}})


def _deployed(resource: Any) -> str:
    """A Resource entry as IAM receives it from the app stack."""
    return str(_APP_STACK.value(resource))


def _allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether the (Allow-only) policy grants `action` on `resource`. Actions are
    case-insensitive in IAM, resources are not."""
    return any(
        statement["Effect"] == "Allow"
        and any(_matches(a, action, ignore_case=True) for a in _as_list(statement["Action"]))
        and any(_matches(_deployed(r), resource) for r in _as_list(statement["Resource"]))
        for statement in policy["Statement"]
    )


def _queue_arn(deployed: Deployed, name: str) -> str:
    logical = next(
        q for q in resources(deployed.template, "AWS::SQS::Queue") if deployed.name(f"{q}.QueueName") == name
    )
    return str(deployed.name(f"{logical}.Arn"))


def _secret_arn(deployed: Deployed) -> str:
    (logical,) = resources(deployed.template, "AWS::SecretsManager::Secret")
    return str(deployed.name(logical))


def _log_group_arn(function: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function}"


def _other_stages(stage: str) -> list[str]:
    return [other for other in STAGES if other != stage]


# ------------------------------------------------------- one source of truth


def test_committed_policy_files_are_the_generated_ones() -> None:
    assert policies.main(["--check"]) == 0, "run: python -m infra.iam.policies"


def test_check_names_a_file_that_differs_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = ["--chalice-dir", str(tmp_path)]
    assert policies.main(["--check", *directory]) == 1  # no files yet
    assert policies.main(directory) == 0
    assert policies.main(["--check", *directory]) == 0
    edited = tmp_path / policies.policy_file("prod", NOTE_WORKER)
    edited.write_text(edited.read_text().replace("GetSecretValue", "PutSecretValue"))
    capsys.readouterr()
    assert policies.main(["--check", *directory]) == 1
    assert str(edited) in capsys.readouterr().err
    assert policies.main(directory) == 0
    assert json.loads(edited.read_text()) == policies.policy("prod", NOTE_WORKER)


def test_a_left_over_policy_file_is_stale_and_writing_removes_it(tmp_path: Path) -> None:
    """A file no function uses any more would look deployed; the check names it."""
    directory = ["--chalice-dir", str(tmp_path)]
    assert policies.main(directory) == 0
    left_over = tmp_path / "policy-prod.json"
    left_over.write_text("{}")
    assert policies.stale_files(tmp_path) == [left_over]
    assert policies.main(directory) == 0
    assert not left_over.exists()


def test_the_functions_are_the_apps(stage: str) -> None:
    """One policy per function Chalice deploys: the API handler and every event handler."""
    names = StageResources(stage)
    assert sorted(names.function_name(f) for f in FUNCTIONS) == sorted(lambdas.function_names(stage))


def test_each_function_deploys_its_generated_policy_file(stage: str, function: str) -> None:
    """Chalice uses iam_policy_file only with autogen_policy false; otherwise it writes its own.
    No stage-wide file: a function without its own would get no policy file and fail to
    package, rather than share another function's grants."""
    config = lambdas.chalice_config(stage, function)
    assert config.autogen_policy is False
    assert config.iam_policy_file == policies.policy_file(stage, function)
    on_disk = json.loads(lambdas.CHALICE_CONFIG.read_text())
    assert "iam_policy_file" not in on_disk
    assert "iam_policy_file" not in on_disk["stages"][stage]


def test_each_stage_deploys_its_rest_api_policy(stage: str) -> None:
    config = lambdas.chalice_config(stage)
    assert config.api_gateway_endpoint_type == "PRIVATE"
    assert config.api_gateway_policy_file == policies.policy_file(stage, REST_API)


def test_an_unknown_stage_or_function_has_no_policy() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        policies.policy("staging")
    with pytest.raises(ValueError, match="unknown stage"):
        policies.rest_api_policy("staging")
    with pytest.raises(ValueError, match="unknown function"):
        policies.policy("dev", "authorizer")


def test_the_rest_api_answers_only_through_the_stages_execute_api_endpoint(stage: str) -> None:
    """A Deny for every other source, whatever may allow a call; the endpoint is the
    network stack's export of the same stage."""
    endpoint = {"Fn::ImportValue": constants.stack(stage, "ExecuteApiVpcEndpointId")}
    statements = policies.rest_api_policy(stage)["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Condition"] == {"StringNotEquals": {"aws:SourceVpce": endpoint}}
    assert deny[0]["Action"] == "execute-api:Invoke"
    assert deny[0]["Resource"] == "execute-api:/*"
    for allow in (s for s in statements if s["Effect"] == "Allow"):
        assert allow["Condition"] == {"StringEquals": {"aws:SourceVpce": endpoint}}, allow


# ------------------------------------------------------------ least privilege


def test_every_action_is_a_real_iam_action(cfnlint_api: ModuleType, policy: dict[str, Any]) -> None:
    """cfn-lint knows every service's actions (W3037): a misspelt action grants nothing."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": policy}}},
    }
    assert [str(f) for f in cfnlint_api.lint(json.dumps(template))] == []


def test_no_statement_grants_a_wildcard_action(policy: dict[str, Any]) -> None:
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement["Sid"]
        assert not {"NotAction", "NotResource"} & set(statement), statement["Sid"]
        for action in _as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{statement['Sid']}: {action}"


def test_only_the_vpc_network_interface_actions_are_granted_on_any_resource(policy: dict[str, Any]) -> None:
    """AWS requires "*" for them; every other grant names this stage's resources."""
    for statement in policy["Statement"]:
        if "*" in _as_list(statement["Resource"]):
            assert set(statement["Action"]) <= VPC_ACTIONS, statement["Sid"]
            assert _as_list(statement["Resource"]) == ["*"], statement["Sid"]


def test_every_named_resource_belongs_to_the_stage(policy: dict[str, Any], stage: str) -> None:
    """Named for this stage, and in the account (and region) the app stack is deployed to:
    a resource of the same name in another account is out of reach. S3 ARNs have no region
    or account field; the bucket name carries the account instead."""
    names = StageResources(stage)
    # Queues, functions, buckets and the workgroup are named <app>-<stage>...; the secret
    # <app>/<stage>/...; the Glue database <app>_<stage>_audit (Athena allows no "-").
    owned = (f":{names.prefix}", f"/{names.prefix}", f":secret:{names.service_secret}-", f"/{names.audit_database}")
    # Glue authorises a table read on the account's one Data Catalog as well: no stage owns it,
    # and it grants nothing on another database or table.
    shared = {f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"}
    for statement in policy["Statement"]:
        if statement["Resource"] == "*":  # the network-interface actions only (test above)
            continue
        for resource in _as_list(statement["Resource"]):
            arn = _deployed(resource)
            where = f"{statement['Sid']}: {resource}"
            if arn not in shared:
                assert any(mark in arn for mark in owned), where
            _, _, service, region, account, name = arn.split(":", 5)
            if service == "s3":
                assert (region, account) == ("", ""), where
                assert name.split("/")[0].endswith(f"-{PRINCIPAL_ACCOUNT}"), where
            else:
                assert (region, account) == (REGION, ACCOUNT), where


def test_the_account_and_region_are_the_app_stacks(policy: dict[str, Any]) -> None:
    """IAM allows a policy variable in an ARN's resource part only (after the fifth colon),
    never in the region or account field, so those come from CloudFormation's pseudo
    parameters; an IAM variable inside a Fn::Sub would be taken for one of CloudFormation's."""
    for statement in policy["Statement"]:
        for resource in _as_list(statement["Resource"]):
            where = f"{statement['Sid']}: {resource}"
            if isinstance(resource, dict):
                assert list(resource) == ["Fn::Sub"], where
                arn = resource["Fn::Sub"]
                fields = re.escape(f":{STACK_REGION}:{STACK_ACCOUNT}:")
                assert re.match(rf"arn:aws:[a-z0-9-]+{fields}[^$]", arn), where
                assert re.findall(r"\$\{([^}]*)\}", arn) == ["AWS::Region", "AWS::AccountId"], where
            elif resource != "*":
                assert "${" not in ":".join(resource.split(":")[:5]), where
                assert "AWS::" not in resource, where


def test_a_stages_policy_names_and_reaches_no_other_stages_resources(policy: dict[str, Any], stage: str) -> None:
    template = decode(NOTES_TEMPLATE)
    for other in _other_stages(stage):
        theirs = StageResources(other)
        text = json.dumps(policy)
        assert theirs.prefix not in text
        assert theirs.service_secret not in text
        # Wildcards reach no resource of theirs either.
        deployed = Deployed(template, Stage=other)
        arns = [
            _queue_arn(deployed, theirs.note_queue),
            _queue_arn(deployed, theirs.dead_letter_queue),
            _secret_arn(deployed),
            *(_log_group_arn(f) for f in lambdas.function_names(other)),
            *(f"{_log_group_arn(f)}:log-stream:x" for f in lambdas.function_names(other)),
        ]
        for statement in policy["Statement"]:
            if statement["Resource"] == "*":
                continue
            for arn in arns:
                assert not any(_matches(_deployed(r), arn) for r in statement["Resource"]), (statement["Sid"], arn)


# ------------------------------------------------------ what each Lambda does


def test_every_function_may_write_its_own_logs(policy: dict[str, Any], stage: str, function: str) -> None:
    """Into the group the app stack creates for it (infra/app/merge.json): streams and
    events, not groups. The API handler's name has no suffix (<app>-<stage>)."""
    group = _log_group_arn(StageResources(stage).function_name(function))
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert _allows(policy, action, f"{group}:log-stream:2026/11/28/[$LATEST]0123abcd"), action
    assert not _allows(policy, "logs:CreateLogGroup", group)


def test_logs_of_another_function_are_out_of_reach(policy: dict[str, Any], stage: str, function: str) -> None:
    others = [f for f in lambdas.function_names(stage) if f != StageResources(stage).function_name(function)]
    outsiders = [*others, f"{constants.prefix(stage)}x", f"{constants.prefix(stage)}2-worker", "other-app-worker"]
    for outsider in outsiders:
        group = _log_group_arn(outsider)
        assert not _allows(policy, "logs:PutLogEvents", f"{group}:log-stream:x"), outsider


def test_the_interceptor_may_queue_note_jobs_and_nothing_else_of_the_worker(
    interceptor: dict[str, Any], deployed: Deployed, stage: str
) -> None:
    names = StageResources(stage)
    queue = _queue_arn(deployed, names.note_queue)
    for action in ("sqs:GetQueueUrl", "sqs:SendMessage"):
        assert _allows(interceptor, action, queue), action
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert not _allows(interceptor, action, queue), action
    assert not _allows(interceptor, "sqs:SendMessage", _queue_arn(deployed, names.dead_letter_queue))
    assert not _allows(interceptor, "secretsmanager:GetSecretValue", _secret_arn(deployed))
    # /health says when the secret has no value, from its metadata alone.
    assert _allows(interceptor, "secretsmanager:DescribeSecret", _secret_arn(deployed))


def test_the_worker_may_not_queue_jobs_nor_run_audit_queries(
    worker: dict[str, Any], deployed: Deployed, stage: str
) -> None:
    names = StageResources(stage)
    assert not _allows(worker, "sqs:SendMessage", _queue_arn(deployed, names.note_queue))
    assert not any(a.startswith(("athena:", "glue:", "s3:")) for s in worker["Statement"] for a in s["Action"])


def test_the_worker_may_consume_note_jobs(worker: dict[str, Any], deployed: Deployed, stage: str) -> None:
    """What the Lambda event source needs to poll (Receive, Delete, GetQueueAttributes),
    and what the worker does itself (look the queue up, defer a job)."""
    queue = _queue_arn(deployed, StageResources(stage).note_queue)
    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
    ):
        assert _allows(worker, action, queue), action


def test_the_worker_may_dead_letter_a_job_but_not_consume_dead_jobs(
    worker: dict[str, Any], policy: dict[str, Any], deployed: Deployed, stage: str
) -> None:
    dead = _queue_arn(deployed, StageResources(stage).dead_letter_queue)
    assert _allows(worker, "sqs:GetQueueUrl", dead)
    assert _allows(worker, "sqs:SendMessage", dead)
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:PurgeQueue"):
        assert not _allows(policy, action, dead), action


def test_no_queue_may_be_created_changed_or_emptied(policy: dict[str, Any], deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    for queue in (names.note_queue, names.dead_letter_queue):
        arn = _queue_arn(deployed, queue)
        for action in ("sqs:CreateQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes", "sqs:PurgeQueue"):
            assert not _allows(policy, action, arn), (queue, action)


def test_only_the_stages_service_account_secret_is_readable(
    worker: dict[str, Any], policy: dict[str, Any], deployed: Deployed, stage: str
) -> None:
    secret = _secret_arn(deployed)
    assert _allows(worker, "secretsmanager:GetSecretValue", secret)
    assert not _allows(policy, "secretsmanager:PutSecretValue", secret)
    prefix = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{constants.APP_NAME}/{stage}"
    for other in (f"{prefix}/other-secret-AbC123", f"{prefix}/hosp-service-account-admin-AbC123"):
        assert not _allows(policy, "secretsmanager:GetSecretValue", other), other


def test_a_function_in_a_vpc_may_manage_its_network_interfaces(policy: dict[str, Any]) -> None:
    interface = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123456789abcdef0"
    for action in VPC_ACTIONS:
        assert _allows(policy, action, interface), action


def test_the_lambdas_use_the_names_the_policy_grants(stage: str) -> None:
    """The stage's environment (.chalice/config.json) and chalicelib.config's defaults
    name the resources the policy covers."""
    names = StageResources(stage)
    environment = {constants.STAGE: stage, **lambdas.chalice_config(stage, NOTE_WORKER).environment_variables}
    assert app_config.note_queue_name(environment) == names.note_queue
    assert app_config.note_dead_letter_queue_name(environment) == names.dead_letter_queue
    secret = environment.get(constants.HOSP_SERVICE_SECRET_ID)
    if secret is not None:  # the name, or the full ARN
        assert secret == names.service_secret or _matches(_deployed(names.service_secret_arn), secret), secret
