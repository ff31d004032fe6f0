"""`make package`'s output for each stage, checkov on every template, and `make deploy`'s plan.

Each stage is packaged once per test module (`chalice package` with infra/app/merge.json,
exactly as `make package` runs it), with no AWS credentials in reach: packaging must need
none. The first packaging on a machine downloads the Lambda platform's wheels of
requirements.txt from the package index; later ones reuse .chalice/deployments/.

The packaged templates are then checked the way CloudFormation would read them: cfn-lint,
checkov (one run over them and every template under infra/), and properties: the functions
run in the VPC on the network stack's exports, the API is private to the stage's
execute-api endpoint, and the roles hold the generated per-function policies.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib import constants
from chalicelib.audit import auth
from chalicelib.constants import STAGES
from infra import deploy
from infra.app import package, runtime
from infra.cloudfront import function as cloudfront_function
from infra.iam import policies
from infra.iam.policies import API_HANDLER, FUNCTIONS, NOTE_WORKER, StageResources
from scripts.lock import locked_versions
from tests.infra.cfn import INFRA, REPO, as_list, cfn_templates, decode, resources
from tests.infra.test_cloudfront_redirect import _event as redirect_event
from tests.infra.test_cloudfront_redirect import _run as run_function

# What AWS's AWSLambdaVPCAccessExecutionRole grants on "*", as the IAM tests state it apart from policies.py.
from tests.infra.test_iam_policies import VPC_ACTIONS

NETWORK_TEMPLATE = INFRA / "network" / "network.yaml"
AUDIT_TEMPLATE = INFRA / "athena" / "audit.yaml"
# Logical ids of the functions in Chalice's template.
LOGICAL_IDS = {API_HANDLER: "APIHandler", NOTE_WORKER: "WriteNote"}
APP_IDS = [f"dist/app-{stage}" for stage in STAGES]


@pytest.fixture(scope="module")
def packaged(dist: Path) -> dict[str, Path]:
    return {stage: package.output_dir(stage, dist) / package.TEMPLATE_NAME for stage in STAGES}


@pytest.fixture
def template(packaged: dict[str, Path], stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(packaged[stage].read_text(encoding="utf-8"))
    return loaded


def _imported(stage: str, key: str) -> dict[str, Any]:
    """What the merge template writes for the network stack's export `key`."""
    return {"Fn::ImportValue": {"Fn::Sub": f"{constants.APP_NAME}-${{Stage}}-{key}"}}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources(template, "AWS::Serverless::Function") | resources(template, "AWS::Lambda::Function")
    assert found, "the packaged template has no function"
    return found


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM statement of the template's roles and policies, with its resource's id.

    A grant whose statements the template does not hold fails the test that asks, since
    what it allows cannot be checked: a role's ManagedPolicyArns (an empty list is none),
    a SAM Policies entry given as a managed policy's name or ARN or as a policy template,
    and a SAM function without a Role (SAM gives it a role with AWS's managed policies).
    """
    found = []
    unreadable: list[tuple[str, Any]] = []
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        unreadable += [(name, arn) for arn in as_list(properties.get("ManagedPolicyArns", []))]
        if resource["Type"] == "AWS::Serverless::Function" and "Role" not in properties:
            unreadable.append((name, "no Role: SAM creates one with AWS's managed policies"))
        documents = []
        for entry in as_list(properties.get("Policies", [])):
            if isinstance(entry, dict) and "PolicyDocument" in entry:  # AWS::IAM::Role, AWS::IAM::Policy
                documents.append(entry["PolicyDocument"])
            elif isinstance(entry, dict) and "Statement" in entry:  # SAM: an inline policy document
                documents.append(entry)
            else:  # SAM: a managed policy's name or ARN, or a policy template
                unreadable.append((name, entry))
        if "PolicyDocument" in properties:
            documents.append(properties["PolicyDocument"])
        for document in documents:
            found += [(name, statement) for statement in as_list(document["Statement"])]
    assert not unreadable, f"grants whose statements the template does not hold: {unreadable}"
    return found


def _any_resource(resource: Any) -> bool:
    """Whether a Resource entry stands for no resource in particular: "*", or an ARN whose
    region or account holds a wildcard, or whose resource part starts with one (for the
    resource's name, after its type if it has one): arn:aws:s3:::*, arn:aws:sqs:*:*:*,
    arn:aws:sqs:eu-west-2:*:queue, arn:aws:logs:r:a:log-group:*. A Fn::Sub counts as its
    text; its ${...} (the stack's region and account) name one value each. Ref, GetAtt and
    ImportValue name one resource."""
    if isinstance(resource, dict) and set(resource) <= {"Ref", "Fn::GetAtt", "Fn::ImportValue"}:
        return False
    text = resource["Fn::Sub"] if isinstance(resource, dict) and "Fn::Sub" in resource else resource
    text = text[0] if isinstance(text, list) else text
    assert isinstance(text, str), f"a Resource that cannot be read: {resource}"
    if text == "*":
        return True
    fields = re.sub(r"\$\{[^}]*\}", "x", text).split(":", 5)
    assert len(fields) == 6, f"not an ARN: {resource}"
    assert fields[0] == "arn", f"not an ARN: {resource}"
    _, _, service, region, account, rest = fields
    names = re.split(r"[:/]", rest)
    named = names[0] if service == "s3" or len(names) == 1 else names[1]
    return "*" in region or "*" in account or names[0].startswith("*") or named.startswith("*")


# ----------------------------------------------------------------- packaging


def test_each_stage_packages_offline_into_a_template_and_its_code(packaged: dict[str, Path]) -> None:
    for template in packaged.values():
        assert template.is_file()
        assert (template.parent / "deployment.zip").is_file()


# cfn-lint's rules on the runtime's lifecycle compare its dates with today: `make package`
# keeps them, the tests leave them out so that they pass on any day. The lifecycle itself
# is tested with a pinned clock (tests/unit/test_runtime.py).
RUNTIME_LIFECYCLE_RULES = ["W2531", "E2531", "E2533"]


@pytest.mark.parametrize("stage_", STAGES)
def test_the_packaged_template_is_cfn_lint_clean(
    cfnlint_api: ModuleType, packaged: dict[str, Path], stage_: str
) -> None:
    # The SAM transform is applied first, so the resources CloudFormation creates are linted.
    config = cfnlint_api.ManualArgs(ignore_checks=RUNTIME_LIFECYCLE_RULES)
    assert [str(f) for f in cfnlint_api.lint_file(packaged[stage_], config=config)] == []


def test_every_function_names_the_pinned_runtime(template: dict[str, Any]) -> None:
    runtimes = package.function_runtimes(template)
    assert set(runtimes) == set(LOGICAL_IDS.values())
    assert set(runtimes.values()) == {runtime.LAMBDA_RUNTIME}


def test_the_package_holds_every_locked_package_at_its_locked_version(packaged: dict[str, Path]) -> None:
    """boto3 and botocore included: the functions run the versions the tests ran, not the runtime's."""
    locked = locked_versions(package.LAMBDA_LOCK)
    assert {"boto3", "botocore", "requests", "pyjwt", "cryptography"} <= set(locked)
    for template in packaged.values():
        zipped = package.zipped_versions(template.parent / package.ZIP_NAME)
        assert {name: zipped.get(name) for name in locked} == locked
        assert zipped["botocore"] == importlib.metadata.version("botocore")


def test_the_packaged_template_needs_only_the_stage(template: dict[str, Any]) -> None:
    """Everything else has a default or comes from the network stack's exports."""
    required = [name for name, spec in template["Parameters"].items() if "Default" not in spec]
    assert required == ["Stage"]


# ------------------------------------------------------------------ the VPC


def test_every_function_runs_in_the_vpc_on_the_network_stacks_exports(template: dict[str, Any], stage: str) -> None:
    for name, function in _functions(template).items():
        vpc = function["Properties"].get("VpcConfig")
        assert vpc, f"{name} is not in the VPC"
        assert vpc["SecurityGroupIds"] == [_imported(stage, "LambdaSecurityGroupId")], name
        assert vpc["SubnetIds"] == {"Fn::Split": [",", _imported(stage, "LambdaSubnetIds")]}, name


def test_every_function_reaches_hosp_at_the_network_stacks_url(template: dict[str, Any], stage: str) -> None:
    """No placeholder: HOSP_BASE_URL is the internal load balancer's, from the network stack."""
    for name, function in _functions(template).items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables[constants.HOSP_BASE_URL] == _imported(stage, "HospBaseUrl"), name
        assert variables[constants.STAGE] == stage


def test_every_imported_export_is_one_the_network_stack_exports(template: dict[str, Any], stage: str) -> None:
    """The names agree with infra/network/network.yaml's Export Names, not just with the contract."""
    network = decode(NETWORK_TEMPLATE)
    exported = {_export_name(o["Export"]["Name"], stage) for o in network["Outputs"].values() if "Export" in o}
    imported = {_export_name(name, stage) for name in _imports(template)}
    assert {constants.stack(stage, key) for key in ("LambdaSubnetIds", "ExecuteApiVpcEndpointId")} <= imported
    assert imported <= exported, sorted(imported - exported)


def _export_name(name: Any, stage: str) -> str:
    """An export's name for `stage`: a literal, or a Fn::Sub of ${Stage}."""
    text = name["Fn::Sub"] if isinstance(name, dict) else name
    assert isinstance(text, str), name
    return text.replace("${Stage}", stage)


def _imports(node: Any) -> list[Any]:
    """The argument of every Fn::ImportValue in `node`."""
    if isinstance(node, list):
        return [found for item in node for found in _imports(item)]
    if not isinstance(node, dict):
        return []
    if set(node) == {"Fn::ImportValue"}:
        return [node["Fn::ImportValue"]]
    return [found for value in node.values() for found in _imports(value)]


def test_the_functions_are_named_as_their_policies_and_log_groups_expect(template: dict[str, Any], stage: str) -> None:
    names = StageResources(stage)
    groups = {
        json.dumps(group["Properties"]["LogGroupName"]): group
        for group in resources(template, "AWS::Logs::LogGroup").values()
    }
    for function, logical in LOGICAL_IDS.items():
        deployed_name = template["Resources"][logical]["Properties"]["FunctionName"]
        assert deployed_name["Fn::Sub"].replace("${Stage}", stage) == names.function_name(function)
        group = groups[json.dumps({"Fn::Sub": "/aws/lambda/" + deployed_name["Fn::Sub"]})]
        assert "RetentionInDays" in group["Properties"]
        assert group["DeletionPolicy"] == "RetainExceptOnCreate"
        # Created before the function, which may not create it itself.
        assert f"{logical}LogGroup" in as_list(template["Resources"][logical]["DependsOn"])


def test_the_audit_route_is_given_the_audit_stacks_names(template: dict[str, Any], stage: str) -> None:
    """The buckets are computed the way infra/athena/audit.yaml names them (it is deployed
    after the app and exports nothing); its user pool comes in as parameters."""
    audit = decode(AUDIT_TEMPLATE)
    bucket_names = {json.dumps(b["Properties"]["BucketName"]) for b in resources(audit, "AWS::S3::Bucket").values()}
    variables = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    for variable in (constants.AUDIT_LOG_BUCKET, constants.AUDIT_RESULTS_BUCKET):
        assert json.dumps(variables[variable]) in bucket_names, variable
    assert variables[constants.AUDIT_COGNITO_ISSUER] == {"Ref": "AuditCognitoIssuer"}
    assert variables[constants.AUDIT_COGNITO_CLIENT_ID] == {"Ref": "AuditCognitoClientId"}
    assert variables[constants.AUDIT_COGNITO_JWKS] == {"Ref": "AuditCognitoJwks"}
    assert variables[constants.AUDIT_WORKGROUP] == StageResources(stage).audit_workgroup


def test_both_functions_name_the_service_account_secret_and_the_worker_alone_gets_audit_settings(
    template: dict[str, Any], stage: str
) -> None:
    """The worker reads the secret; the API handler only checks it has a value, for /health
    (its policy grants DescribeSecret, never GetSecretValue: tests/infra/test_iam_policies.py)."""
    api = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    worker = template["Resources"]["WriteNote"]["Properties"]["Environment"]["Variables"]
    secret = StageResources(stage).service_secret
    assert worker[constants.HOSP_SERVICE_SECRET_ID] == api[constants.HOSP_SERVICE_SECRET_ID] == secret
    assert not [name for name in worker if name.startswith("AUDIT_")]


# ------------------------------------------------------------ the private API


def test_the_api_is_private_to_the_stages_execute_api_endpoint(template: dict[str, Any], stage: str) -> None:
    api = one_api(template)["Properties"]
    assert api["EndpointConfiguration"] == {
        "Type": "PRIVATE",
        "VPCEndpointIds": [_imported(stage, "ExecuteApiVpcEndpointId")],
    }
    endpoint = {"Fn::ImportValue": constants.stack(stage, "ExecuteApiVpcEndpointId")}
    statements = api["DefinitionBody"]["x-amazon-apigateway-policy"]["Statement"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert [d["Condition"] for d in denies] == [{"StringNotEquals": {"aws:SourceVpce": endpoint}}]
    assert denies[0]["Resource"] == "execute-api:/*"
    assert denies[0]["Principal"] == "*"
    for allow in (s for s in statements if s["Effect"] == "Allow"):
        assert allow["Condition"] == {"StringEquals": {"aws:SourceVpce": endpoint}}, allow


def one_api(template: dict[str, Any]) -> dict[str, Any]:
    apis = resources(template, "AWS::Serverless::Api")
    assert list(apis) == ["RestAPI"]
    return apis["RestAPI"]


def test_the_fleet_is_given_the_apis_host(template: dict[str, Any]) -> None:
    """proxy.yaml's InterceptorHost comes from this output (infra/deploy.py)."""
    host = template["Outputs"]["ApiHost"]["Value"]["Fn::Sub"]
    assert host == "${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"


# -------------------------------------------------------------------- IAM


def test_each_function_has_its_own_role_with_its_generated_policy(template: dict[str, Any], stage: str) -> None:
    roles = []
    for function, logical in LOGICAL_IDS.items():
        role = template["Resources"][logical]["Properties"]["Role"]["Fn::GetAtt"][0]
        roles.append(role)
        documents = [p["PolicyDocument"] for p in template["Resources"][role]["Properties"]["Policies"]]
        assert documents == [policies.policy(stage, function)], function
    assert len(set(roles)) == len(FUNCTIONS)


def test_no_statement_has_a_wildcard_action(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert statements
    for resource, statement in statements:
        assert "NotAction" not in statement, resource
        for action in as_list(statement.get("Action", [])):
            assert "*" not in action, f"{resource}: {action}"


def test_only_the_vpc_network_interface_actions_are_granted_on_any_resource(template: dict[str, Any]) -> None:
    """ "*" and ARNs with a wildcard region, account or name alike (_any_resource)."""
    for resource, statement in _statements(template):
        assert "NotResource" not in statement, resource
        if any(_any_resource(r) for r in as_list(statement.get("Resource", []))):
            assert set(as_list(statement["Action"])) <= VPC_ACTIONS, (resource, statement.get("Sid"))


def test_the_iam_checks_see_managed_policies_and_wildcard_arns() -> None:
    """What the two tests above rely on: grants they cannot read fail, and every form of
    "any resource" is one."""
    role = {"Type": "AWS::IAM::Role", "Properties": {"Policies": []}}
    readable = {"Resources": {"Role": role}}
    assert _statements(readable) == []
    for properties in (
        {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
        {"Policies": ["AWSLambdaBasicExecutionRole"]},
        {"Policies": [{"SQSPollerPolicy": {"QueueName": "q"}}]},
    ):
        function = {"Type": "AWS::Serverless::Function", "Properties": {"Role": "r", **properties}}
        with pytest.raises(AssertionError, match="does not hold"):
            _statements({"Resources": {"F": function}})
    with pytest.raises(AssertionError, match="does not hold"):
        _statements({"Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {}}}})
    inline = {"Type": "AWS::Serverless::Function", "Properties": {"Role": "r", "Policies": [{"Statement": [{}]}]}}
    assert _statements({"Resources": {"F": inline}}) == [("F", {})]
    for wildcard in (
        "*",
        "arn:aws:s3:::*",
        "arn:aws:s3:::*/key",
        "arn:aws:sqs:*:*:*",
        "arn:aws:sqs:eu-west-2:*:hosp-reliability-prod-notes.fifo",
        "arn:aws:sqs:*:123456789012:hosp-reliability-prod-notes.fifo",
        "arn:aws:logs:eu-west-2:123456789012:log-group:*",
        "arn:aws:athena:eu-west-2:123456789012:workgroup/*",
        {"Fn::Sub": "arn:aws:secretsmanager:${AWS::Region}:*:secret:x-??????"},
    ):
        assert _any_resource(wildcard), wildcard
    for named in (
        "arn:aws:s3:::hosp-reliability-prod-audit-log-${aws:PrincipalAccount}/access/*",
        {"Fn::Sub": "arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/f:*"},
        {"Fn::Sub": "arn:aws:glue:${AWS::Region}:${AWS::AccountId}:catalog"},
        {"Fn::ImportValue": "hosp-reliability-prod-OriginSecretArn"},
    ):
        assert not _any_resource(named), named


# ------------------------------------------------------------------ checkov


def _checkov_targets(packaged: dict[str, Path]) -> list[Path]:
    return [*cfn_templates(), *packaged.values()]


@pytest.fixture(scope="module")
def checkov_report(packaged: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """One checkov run over every template under infra/ and both packaged stages; results by file."""
    if not package.CHECKOV.exists():
        pytest.fail(package.MISSING_CHECKOV, pytrace=False)
    targets = _checkov_targets(packaged)
    reports = package.scan(targets)
    by_file: dict[str, dict[str, Any]] = {
        str(path.resolve()): {"failed": [], "skipped": [], "passed": 0} for path in targets
    }
    for report in reports:
        assert report["check_type"] == "cloudformation", report["check_type"]
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        for kind in ("failed", "skipped"):
            for check in report["results"][f"{kind}_checks"]:
                by_file[_target_of(check, targets)][kind].append(check)
        for check in report["results"]["passed_checks"]:
            by_file[_target_of(check, targets)]["passed"] += 1
    return by_file


def _target_of(check: dict[str, Any], targets: list[Path]) -> str:
    """The scanned file a result belongs to (checkov reports paths relative to its cwd)."""
    reported = (REPO / check["file_path"].lstrip("/")).resolve()
    by_path = {str(t.resolve()): t for t in targets}
    if str(reported) in by_path:
        return str(reported)
    absolute = Path(check.get("file_abs_path", "")).resolve()
    assert str(absolute) in by_path, f"checkov reported a file it was not given: {check['file_path']}"
    return str(absolute)


@pytest.mark.parametrize("path", cfn_templates(), ids=lambda p: str(p.relative_to(REPO)))
def test_template_passes_checkov(checkov_report: dict[str, dict[str, Any]], path: Path) -> None:
    report = checkov_report[str(path.resolve())]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["failed"]]
    assert failed == []
    # A file checkov did not read gives no result at all; one whose every applicable check
    # is skipped (with its reason) was read.
    assert report["passed"] + len(report["skipped"]) > 0, "checkov checked nothing in it"


@pytest.mark.parametrize("stage_", STAGES)
def test_the_packaged_template_passes_checkov(
    checkov_report: dict[str, dict[str, Any]], packaged: dict[str, Path], stage_: str
) -> None:
    report = checkov_report[str(packaged[stage_].resolve())]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["failed"]]
    assert failed == []
    assert report["passed"] > 0


def test_every_skipped_check_has_a_written_reason(checkov_report: dict[str, dict[str, Any]]) -> None:
    """As checkov itself read them: each skip carries its comment."""
    for path, report in checkov_report.items():
        for check in report["skipped"]:
            reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
            assert len(reason) >= 20, f"{path}: {check['check_id']} on {check['resource']} is skipped without a reason"


# ------------------------------------------------------------- deploy plan


@pytest.fixture
def plan(dist: Path, bundle: Path, stage: str) -> deploy.Plan:
    return deploy.build_plan(stage, dist=dist, bundle=bundle)


def test_the_plan_deploys_every_stack_in_the_contracts_order(plan: deploy.Plan, stage: str) -> None:
    assert [step.key for step in plan.steps] == [
        "network",
        "notes",
        "app",
        "proxy",
        "monitoring",
        "notes",
        "audit",
        "app",
        "edge",
    ]
    assert plan.steps[2].template == plan.steps[7].template
    assert plan.steps[1].template == plan.steps[5].template
    assert plan.steps[2].template.name == package.TEMPLATE_NAME
    assert deploy.stack_name(stage, "app") == constants.stack(stage, "app")


def test_every_parameter_without_a_default_is_given_by_the_plan(plan: deploy.Plan) -> None:
    for step in plan.steps:
        declared = deploy.template_parameters(step.template)
        required = {name for name, spec in declared.items() if "Default" not in spec}
        assert required <= set(step.parameters), (step.title, sorted(required - set(step.parameters)))
        assert set(step.parameters) <= set(declared), (step.title, sorted(set(step.parameters) - set(declared)))


def test_a_missing_operator_value_stops_the_plan(dist: Path, bundle: Path, tmp_path: Path, stage: str) -> None:
    values = json.loads(deploy.stage_file(stage).read_text())
    del values["parameters"]["edge"]["CertificateArn"]
    edited = tmp_path / "stage.json"
    edited.write_text(json.dumps(values))
    with pytest.raises(deploy.PlanError, match="CertificateArn"):
        deploy.build_plan(stage, stage_path=edited, dist=dist, bundle=bundle)


def test_a_parameter_the_template_lacks_stops_the_plan(dist: Path, bundle: Path, tmp_path: Path, stage: str) -> None:
    values = json.loads(deploy.stage_file(stage).read_text())
    values["parameters"]["notes"]["AlarmTopic"] = "arn:aws:sns:eu-west-2:123456789012:alarms"
    edited = tmp_path / "stage.json"
    edited.write_text(json.dumps(values))
    with pytest.raises(deploy.PlanError, match="AlarmTopic"):
        deploy.build_plan(stage, stage_path=edited, dist=dist, bundle=bundle)


def test_another_stages_package_stops_the_plan(dist: Path, bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "app-prod").symlink_to(package.output_dir("dev", dist), target_is_directory=True)
    with pytest.raises(deploy.PlanError, match="packaged for stage 'dev'"):
        deploy.build_plan("prod", dist=tmp_path, bundle=bundle)


def test_the_dry_run_prints_the_plan_and_runs_nothing(
    dist: Path, bundle: Path, stage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the dry run ran {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    assert deploy.main(["--stage", stage, "--dry-run", "--dist", str(dist), "--bundle", str(bundle)]) == 0
    printed = capsys.readouterr().out
    stacks = re.findall(r"^\[\d/9\] (\S+)", printed, re.M)
    expected = ["network", "notes", "app", "proxy", "monitoring", "notes", "audit", "app", "edge"]
    assert stacks == [constants.stack(stage, key) for key in expected]
    assert f"    InterceptorHost = <output ApiHost of {constants.prefix(stage)}-app>" in printed
    assert f"    AccessLogGroupName = <output AccessLogGroupName of {constants.prefix(stage)}-proxy>" in printed
    assert "dry run: nothing deployed" in printed


def test_no_echo_values_are_masked(tmp_path: Path) -> None:
    template = tmp_path / "t.json"
    template.write_text(
        json.dumps({"Parameters": {"Token": {"Type": "String", "NoEcho": True}, "Name": {"Type": "String"}}})
    )
    step = deploy.Step("edge", template, {"Token": "s3cr3t-value-never-shown", "Name": "shown"}, "edge")
    deploy.check_parameters(step)
    plan = deploy.Plan("dev", "eu-west-2", "bucket", [step], [])
    lines: list[str] = []
    deploy.print_plan(plan, lines.append)
    assert "    Token = ****" in lines
    assert "    Name = shown" in lines
    assert "s3cr3t" not in "\n".join(lines)


class FakeRunner(deploy.Runner):
    """Records the AWS CLI commands; stacks answer with canned outputs; fails on request."""

    def __init__(self, outputs: dict[str, dict[str, str]], fail_on: str | None = None) -> None:
        self.lines: list[str] = []
        super().__init__("eu-west-2", self.lines.append)
        self.stack_outputs = outputs
        self.fail_on = fail_on
        self.commands: list[list[str]] = []
        self.parameter_files: list[dict[str, Any]] = []

    def run(self, *args: str, capture: bool = False) -> str:
        self.commands.append(list(args))
        for arg in args:
            if arg.startswith("file://"):
                self.parameter_files.append(json.loads(Path(arg.removeprefix("file://")).read_text()))
        if self.fail_on and self.fail_on in args:
            raise deploy.StepFailed(f"failed: {self.fail_on}")
        return ""

    def outputs(self, stack: str) -> dict[str, str] | None:
        return self.stack_outputs.get(stack)

    def jwks(self, issuer: str) -> str:
        return f"<keys of {issuer}>"


def _deployable(plan: deploy.Plan) -> deploy.Plan:
    plan.placeholders = []
    return plan


def _topic(stage: str) -> str:
    return f"arn:aws:sns:eu-west-2:123456789012:{constants.prefix(stage)}-alarms"


def _outputs(stage: str) -> dict[str, dict[str, str]]:
    return {
        constants.stack(stage, "app"): {"ApiHost": "abc123.execute-api.eu-west-2.amazonaws.com", "EndpointURL": "x"},
        constants.stack(stage, "proxy"): {
            "AccessLogGroupName": f"/{constants.APP_NAME}/{stage}/proxy-access",
            "AutoScalingGroupName": f"{constants.prefix(stage)}-proxy-ProxyAutoScalingGroup-AbC123",
        },
        constants.stack(stage, "monitoring"): {"AlarmTopicArn": _topic(stage)},
        constants.stack(stage, "audit"): {
            "CognitoIssuer": "https://cognito-idp.eu-west-2.amazonaws.com/p",
            "AdminAppClientId": "c",
        },
        constants.stack(stage, "edge"): {"DistributionDomainName": "d111.cloudfront.net"},
    }


def test_a_deploy_runs_each_stack_in_order_with_its_resolved_parameters(plan: deploy.Plan, stage: str) -> None:
    runner = FakeRunner(_outputs(stage))
    deploy.deploy(_deployable(plan), runner)
    deployed = [c[c.index("--stack-name") + 1] for c in runner.commands if c[:2] == ["cloudformation", "deploy"]]
    expected = ["network", "notes", "app", "proxy", "monitoring", "notes", "audit", "app", "edge"]
    assert deployed == [constants.stack(stage, key) for key in expected]
    proxy = runner.parameter_files[3]["Parameters"]
    assert proxy["InterceptorHost"] == "abc123.execute-api.eu-west-2.amazonaws.com"
    assert re.fullmatch(
        rf"s3://{plan.artifact_bucket}/{constants.APP_NAME}/{stage}/proxy-bundle/[0-9a-f]{{16}}\.tar\.gz",
        proxy["ProxyBundleS3Uri"],
    )
    assert runner.parameter_files[7]["Parameters"]["AuditCognitoClientId"] == "c"
    assert runner.parameter_files[7]["Parameters"]["AuditCognitoJwks"] == (
        "<keys of https://cognito-idp.eu-west-2.amazonaws.com/p>"
    )
    # Before the audit stack exists (a first deploy), the app gets no keys and no issuer.
    first_app = plan.steps[2]
    before_audit = {k: v for k, v in _outputs(stage).items() if not k.endswith("-audit")}
    resolved = deploy.resolve(plan, first_app, FakeRunner(before_audit))
    assert resolved["AuditCognitoJwks"] == resolved["AuditCognitoIssuer"] == ""
    # The app's code goes up with `aws cloudformation package` before each of its deploys.
    assert sum(c[:2] == ["cloudformation", "package"] for c in runner.commands) == 2
    assert "  CloudFront distribution:    https://d111.cloudfront.net/" in runner.lines


def test_a_deploy_stops_at_the_first_failure(plan: deploy.Plan, stage: str) -> None:
    runner = FakeRunner(_outputs(stage), fail_on=constants.stack(stage, "notes"))
    with pytest.raises(deploy.StepFailed):
        deploy.deploy(_deployable(plan), runner)
    deployed = [c[c.index("--stack-name") + 1] for c in runner.commands if "--stack-name" in c]
    assert deployed == [constants.stack(stage, "network"), constants.stack(stage, "notes")]


def test_a_deploy_refuses_placeholder_values(plan: deploy.Plan, stage: str) -> None:
    """The committed stage files hold documentation values until operators fill them in."""
    assert plan.placeholders
    runner = FakeRunner(_outputs(stage))
    with pytest.raises(deploy.StepFailed, match="placeholder"):
        deploy.deploy(plan, runner)
    assert runner.commands == []


def test_each_stack_acknowledges_the_capabilities_its_template_needs(plan: deploy.Plan) -> None:
    """IAM resources need CAPABILITY_IAM (NAMED_IAM when named), the app's SAM transform
    CAPABILITY_AUTO_EXPAND; CloudFormation refuses the change set otherwise."""
    by_key = {step.key: step.capabilities for step in plan.steps}
    assert by_key["app"] == ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
    assert by_key["proxy"] == ("CAPABILITY_IAM",)
    named = {"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "r"}}}}
    assert deploy.capabilities(named) == ("CAPABILITY_NAMED_IAM",)
    assert deploy.capabilities({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}) == ()


class _Answer:
    """What requests.get returns, for Cognito's JWKS URL (Cognito is unreachable here)."""

    def __init__(self, document: Any, status: int = 200) -> None:
        self.document, self.status_code = document, status

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code}")

    def json(self) -> Any:
        if isinstance(self.document, str):
            raise ValueError("not JSON")
        return self.document


def _rsa_jwk() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}


def test_the_deploy_passes_the_user_pools_keys_as_the_route_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    document = {"keys": [_rsa_jwk()]}
    asked: list[str] = []

    def get(url: str, timeout: Any) -> _Answer:
        asked.append(url)
        return _Answer(document)

    monkeypatch.setattr(deploy.requests, "get", get)

    text = deploy.Runner("eu-west-2", lambda line: None).jwks("https://cognito-idp.eu-west-2.amazonaws.com/pool/")

    assert asked == ["https://cognito-idp.eu-west-2.amazonaws.com/pool/.well-known/jwks.json"]
    assert json.loads(text) == document
    keys = auth.configured_keys(text)  # what the route does with AUDIT_COGNITO_JWKS
    assert keys.get("k1") is not None


@pytest.mark.parametrize("answer", [_Answer({"keys": []}), _Answer("<html>"), _Answer({}, status=503)])
def test_a_user_pool_without_readable_keys_stops_the_deploy(monkeypatch: pytest.MonkeyPatch, answer: _Answer) -> None:
    monkeypatch.setattr(deploy.requests, "get", lambda url, timeout: answer)
    with pytest.raises(deploy.StepFailed, match="could not read the user pool's keys"):
        deploy.Runner("eu-west-2", lambda line: None).jwks("https://cognito-idp.eu-west-2.amazonaws.com/pool")


# ------------------------------------------------------------- the redirect function


class CloudFrontRunner(FakeRunner):
    """FakeRunner that answers CloudFront's function commands as the AWS CLI does."""

    def __init__(self, outputs: dict[str, dict[str, str]], existing: bool) -> None:
        super().__init__(outputs)
        self.existing = existing
        self.published_code: list[str] = []

    def run(self, *args: str, capture: bool = False) -> str:
        super().run(*args, capture=capture)
        if args[:2] == ("cloudfront", "describe-function"):
            if not self.existing:
                raise deploy.StepFailed("An error occurred (NoSuchFunctionExists) when calling DescribeFunction")
            return json.dumps({"ETag": "E-OLD"})
        if args[:2] in (("cloudfront", "create-function"), ("cloudfront", "update-function")):
            code = args[args.index("--function-code") + 1].removeprefix("fileb://")
            self.published_code.append(Path(code).read_text(encoding="utf-8"))
            return json.dumps({"ETag": "E-NEW"})
        if args[:2] == ("cloudfront", "publish-function"):
            assert args[args.index("--if-match") + 1] == "E-NEW"
            arn = "arn:aws:cloudfront::123456789012:function/hosp-reliability-dev-old-domain-redirect"
            return json.dumps({"FunctionSummary": {"FunctionMetadata": {"FunctionARN": arn}}})
        return ""


def _publishing_plan(dist: Path, bundle: Path, tmp_path: Path, stage: str) -> deploy.Plan:
    values = json.loads(deploy.stage_file(stage).read_text())
    values["parameters"]["edge"].update(
        DomainName="hosp.new.test", OldDomainNames="hosp.old.test, www.hosp.old.test", RedirectFunctionArn="publish"
    )
    edited = tmp_path / "stage.json"
    edited.write_text(json.dumps(values))
    return _deployable(deploy.build_plan(stage, stage_path=edited, dist=dist, bundle=bundle))


@pytest.mark.parametrize("existing", [False, True], ids=["created", "updated"])
def test_the_deploy_publishes_the_redirect_with_the_stages_names_and_attaches_it(
    dist: Path, bundle: Path, tmp_path: Path, stage: str, existing: bool
) -> None:
    plan = _publishing_plan(dist, bundle, tmp_path, stage)
    runner = CloudFrontRunner(_outputs(stage), existing=existing)

    deploy.deploy(plan, runner)

    verbs = [c[1] for c in runner.commands if c[0] == "cloudfront"]
    assert verbs == ["describe-function", "update-function" if existing else "create-function", "publish-function"]
    assert runner.parameter_files[-1]["Parameters"]["RedirectFunctionArn"].endswith("old-domain-redirect")
    # The code published is redirect.js with the stage's names, and it redirects them.
    (code,) = runner.published_code
    assert code == cloudfront_function.with_names(["hosp.old.test", "www.hosp.old.test"], "hosp.new.test")
    published = tmp_path / "published.js"
    published.write_text(code, encoding="utf-8")
    answer = run_function(redirect_event(host="WWW.hosp.old.test", method="POST", uri="/notes"), published)
    assert answer["statusCode"] == 308
    assert answer["headers"]["location"] == {"value": "https://hosp.new.test/notes"}


def test_publishing_the_redirect_without_old_names_stops_the_plan(
    dist: Path, bundle: Path, tmp_path: Path, stage: str
) -> None:
    values = json.loads(deploy.stage_file(stage).read_text())
    values["parameters"]["edge"].update(OldDomainNames="", RedirectFunctionArn="publish")
    edited = tmp_path / "stage.json"
    edited.write_text(json.dumps(values))
    with pytest.raises(deploy.PlanError, match="OldDomainNames"):
        deploy.build_plan(stage, stage_path=edited, dist=dist, bundle=bundle)
