"""`make deploy STAGE=...`: every stack of a stage, in order, with its parameters; then the URLs.

    python -m infra.deploy --stage dev --dry-run   # the plan: stacks, templates, parameters; touches nothing
    python -m infra.deploy --stage dev             # deploys (the AWS CLI v2, with the operator's credentials)

The stacks, in the order of docs/runbooks/deploy.md:

1. network  infra/network/network.yaml      VPC pieces, load balancers, endpoints; exports the rest's inputs
2. notes    infra/notes/queues.yaml         note queue, dead-letter queue, service account secret
3. app      dist/app-<stage>/sam.json       the Chalice app (`make package`), its code uploaded to S3
4. proxy    infra/ec2/proxy.yaml            the fleet; its bootstrap bundle (`make bundle`) uploaded to S3
5. monitoring infra/monitoring/monitoring.yaml  the alarm topic; metrics, alarms, dashboard over the fleet's log
6. notes    (again, only its alarm topic)   the monitoring stack's topic for the note alarms
7. audit    infra/athena/audit.yaml         the audit trail over the fleet's access log; alarms to the topic
8. app      (again, only its audit sign-in) the audit stack's Cognito issuer, client and keys for GET /audit
9. edge     infra/cloudfront/distribution.yaml

The notes stack must exist before the app (the worker's queue) and so before the fleet
and the monitoring stack that reads its log; its first deploy keeps the topic the
monitoring stack already has (none on a stage's first deploy), and the second gives it
the topic, a change set with nothing to change once the stage exists.

A parameter's value comes from one of: the stage (Stage), the stage's file
(infra/app/deploy-<stage>.json: the values only operators know, such as names and
certificates), an earlier stack's output, an upload to the artifact bucket, or the
audit user pool's public keys (fetched here: the functions have no route to them). The
plan is checked before anything runs: every template parameter without a default
is given, and no parameter is given that a template does not have (CloudFormation
would refuse the change set). Values of NoEcho parameters are never printed.

Every command is printed before it runs, and the first one that fails stops the
deploy (exit status 1). Each stack is deployed with `aws cloudformation deploy`,
which creates a change set and waits for it; a stack with nothing to change is
left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chalicelib import constants
from chalicelib.audit import auth
from infra.cloudfront import function
from infra.ec2.build_bundle import PACKAGES as BUNDLE_PACKAGES

REPO = Path(__file__).resolve().parents[1]
# The stacks of a stage (the stage file's sections), in the order of their first deploy.
STACKS = ("network", "notes", "app", "proxy", "monitoring", "audit", "edge")
# The monitoring stack's output, and the parameter of the stacks whose alarms notify it.
ALARM_TOPIC = "AlarmTopicArn"
TOPIC_STACKS = ("notes", "audit")
STAGE_FILES = REPO / "infra" / "app"
DIST = REPO / "dist"
BUNDLE = DIST / "hosp-proxy-bundle.tar.gz"
MASK = "****"
PUBLISH = "publish"  # the stage file's RedirectFunctionArn that has make deploy publish the function
# What an unfilled stage file holds: ids and accounts of zeros, names under example.
PLACEHOLDER = re.compile(r"0{7}|(^|[.])example([.:]|$)", re.IGNORECASE)


def stack_name(stage: str, key: str) -> str:
    return constants.stack(stage, key)


def stage_file(stage: str) -> Path:
    return STAGE_FILES / f"deploy-{stage}.json"


def app_template(stage: str, dist: Path = DIST) -> Path:
    """The packaged app of `stage` (python -m infra.app.package)."""
    return dist / f"app-{stage}" / "sam.json"


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Output:
    """An output of an earlier stack of the stage; `default` when the stack does not exist yet."""

    stack: str
    key: str
    default: str | None = None

    def describe(self, stage: str) -> str:
        text = f"<output {self.key} of {stack_name(stage, self.stack)}>"
        return text if self.default is None else f"{text} (or {self.default!r} before it exists)"


@dataclass(frozen=True)
class Upload:
    """A local file uploaded to the artifact bucket under a key with its sha256; its s3:// URI."""

    path: Path
    prefix: str

    def key(self, stage: str) -> str:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16] if self.path.is_file() else "<sha256>"
        return f"{constants.APP_NAME}/{stage}/{self.prefix}/{digest}{''.join(self.path.suffixes)}"


@dataclass(frozen=True)
class Jwks:
    """The JWKS document of the user pool whose issuer is `issuer`, fetched here at deploy.

    The functions run in private subnets with no route to Cognito's JWKS URL, so the
    deploy (on the operator's machine) fetches the pool's public keys and passes them
    as a parameter (AUDIT_COGNITO_JWKS). An empty issuer gives an empty document.
    """

    issuer: Output

    def describe(self, stage: str) -> str:
        return f"<the JWKS document at {self.issuer.describe(stage)}/.well-known/jwks.json>"


@dataclass(frozen=True)
class RedirectFunction:
    """The old-domain redirect with the stage's names, published as the stage's CloudFront Function.

    Given when the stage file's edge section says `"RedirectFunctionArn": "publish"`
    (docs/runbooks/domain-migration.md, step 6); its value is the published function's ARN.
    """

    old_hosts: tuple[str, ...]
    new_host: str

    def describe(self, stage: str) -> str:
        names = f"{', '.join(self.old_hosts)} -> {self.new_host}"
        return f"<ARN of {function.function_name(stage)} published from infra/cloudfront/redirect.js ({names})>"


Value = str | Output | Upload | Jwks | RedirectFunction


@dataclass
class Step:
    """One `aws cloudformation deploy` of one stack."""

    key: str  # network, notes, app, proxy, monitoring, audit, edge
    template: Path
    parameters: dict[str, Value]
    title: str
    packaged: bool = False  # code to upload with `aws cloudformation package` first
    capabilities: tuple[str, ...] = ()  # from the template (check_parameters)
    masked: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Plan:
    stage: str
    region: str
    artifact_bucket: str
    steps: list[Step]
    placeholders: list[str]
    problems: list[str] = field(default_factory=list)  # what would make the deploy fail; it refuses


class PlanError(Exception):
    """The plan cannot be deployed as it is; the message says why."""


# ------------------------------------------------------------------- plan


def load_stage_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PlanError(f"{path} does not exist: it holds the stage's region, bucket and parameters")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path} must hold one JSON object: region, artifact_bucket and parameters")
    for name in ("region", "artifact_bucket", "parameters"):
        if name not in data:
            raise PlanError(f"{path} has no {name!r}")
    parameters = data["parameters"]
    if not isinstance(parameters, dict) or not all(isinstance(values, dict) for values in parameters.values()):
        raise PlanError(f"{path}: parameters must map each stack to an object of its parameters")
    return data


def template_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """A template's Parameters."""
    return dict(read_template(path).get("Parameters", {}))


def read_template(path: Path) -> dict[str, Any]:
    """A template (YAML with CloudFormation's tags, or JSON)."""
    if not path.is_file():
        raise PlanError(f"{path} does not exist")
    if path.suffix == ".json":
        template = json.loads(path.read_text(encoding="utf-8"))
    else:
        from cfnlint.decode import decode  # noqa: PLC0415 - a dev dependency, only needed here

        template, matches = decode(str(path))
        if matches or template is None:
            raise PlanError(f"{path} cannot be read: {[str(m) for m in matches]}")
    return dict(template)


# IAM resources whose name the template may set (CAPABILITY_NAMED_IAM then).
_IAM_NAMES = {"RoleName", "PolicyName", "ManagedPolicyName", "UserName", "GroupName", "InstanceProfileName"}


def capabilities(template: dict[str, Any]) -> tuple[str, ...]:
    """What `aws cloudformation deploy` must acknowledge for the template."""
    found = []
    iam = [r for r in template.get("Resources", {}).values() if str(r.get("Type", "")).startswith("AWS::IAM::")]
    if iam:
        named = any(_IAM_NAMES & set(r.get("Properties", {})) and r["Type"] != "AWS::IAM::Policy" for r in iam)
        found.append("CAPABILITY_NAMED_IAM" if named else "CAPABILITY_IAM")
    if "Transform" in template:
        found.append("CAPABILITY_AUTO_EXPAND")
    return tuple(found)


def build_plan(stage: str, *, stage_path: Path | None = None, dist: Path = DIST, bundle: Path = BUNDLE) -> Plan:
    """The stage's steps, checked against the templates; raises PlanError."""
    if stage not in constants.STAGES:
        raise PlanError(f"unknown stage {stage!r}; stages: {', '.join(constants.STAGES)}")
    path = stage_path or stage_file(stage)
    config = load_stage_file(path)
    given: dict[str, dict[str, str]] = config["parameters"]
    unknown_stacks = set(given) - set(STACKS)
    if unknown_stacks:
        raise PlanError(f"{path} names no stack {sorted(unknown_stacks)}")
    for key in TOPIC_STACKS:
        if ALARM_TOPIC in given.get(key, {}):
            raise PlanError(
                f"{path}: {key}.{ALARM_TOPIC} is the monitoring stack's topic, which make deploy gives; "
                "subscribe to it instead (monitoring.AlarmEmail, docs/runbooks/monitoring.md)"
            )

    def operator(key: str) -> dict[str, Value]:
        return {name: str(value) for name, value in given.get(key, {}).items()}

    edge = given.get("edge", {})
    old_names = [name.strip() for name in str(edge.get("OldDomainNames", "")).split(",") if name.strip()]
    public_names = [edge.get("DomainName", ""), *old_names]
    edge_values = operator("edge")
    if edge.get("RedirectFunctionArn") == PUBLISH:
        if not old_names:
            raise PlanError(f"{path}: the redirect is published for OldDomainNames, which is empty")
        function.with_names(old_names, str(edge.get("DomainName", "")))  # refuses a file it cannot fill
        edge_values["RedirectFunctionArn"] = RedirectFunction(tuple(old_names), str(edge["DomainName"]))
    infra = REPO / "infra"
    app = app_template(stage, dist)
    audit_sign_in: dict[str, Value] = {
        "AuditCognitoIssuer": Output("audit", "CognitoIssuer", default=""),
        "AuditCognitoClientId": Output("audit", "AdminAppClientId", default=""),
        "AuditCognitoJwks": Jwks(Output("audit", "CognitoIssuer", default="")),
    }
    notes = infra / "notes" / "queues.yaml"
    steps = [
        Step("network", infra / "network" / "network.yaml", {"Stage": stage, **operator("network")}, "network"),
        # The topic the monitoring stack already has: none before the stage's first deploy.
        Step(
            "notes",
            notes,
            {"Stage": stage, ALARM_TOPIC: Output("monitoring", ALARM_TOPIC, default=""), **operator("notes")},
            "notes",
        ),
        Step(
            "app",
            app,
            {"Stage": stage, **audit_sign_in, **operator("app")},
            "app",
            packaged=True,
        ),
        Step(
            "proxy",
            infra / "ec2" / "proxy.yaml",
            {
                "Stage": stage,
                "PublicNames": ",".join(filter(None, public_names)),
                "InterceptorHost": Output("app", "ApiHost"),
                "ProxyBundleS3Uri": Upload(bundle, "proxy-bundle"),
                **operator("proxy"),
            },
            "proxy",
        ),
        # After the fleet whose access log it reads; its topic goes to the notes and
        # audit stacks.
        Step(
            "monitoring",
            infra / "monitoring" / "monitoring.yaml",
            {
                "Stage": stage,
                "AccessLogGroupName": Output("proxy", "AccessLogGroupName"),
                "AutoScalingGroupName": Output("proxy", "AutoScalingGroupName"),
                **operator("monitoring"),
            },
            "monitoring",
        ),
        Step(
            "notes",
            notes,
            {"Stage": stage, ALARM_TOPIC: Output("monitoring", ALARM_TOPIC), **operator("notes")},
            "notes: the monitoring stack's alarm topic",
        ),
        Step(
            "audit",
            infra / "athena" / "audit.yaml",
            {
                "Stage": stage,
                "AccessLogGroupName": Output("proxy", "AccessLogGroupName"),
                ALARM_TOPIC: Output("monitoring", ALARM_TOPIC),
                **operator("audit"),
            },
            "audit",
        ),
        # The audit stack comes after the fleet whose log it reads, and GET /audit
        # needs its user pool: the app is updated with it (nothing else changes).
        Step(
            "app",
            app,
            {
                "Stage": stage,
                "AuditCognitoIssuer": Output("audit", "CognitoIssuer"),
                "AuditCognitoClientId": Output("audit", "AdminAppClientId"),
                "AuditCognitoJwks": Jwks(Output("audit", "CognitoIssuer")),
                **operator("app"),
            },
            "app: the audit stack's sign-in for GET /audit",
            packaged=True,
        ),
        Step("edge", infra / "cloudfront" / "distribution.yaml", {"Stage": stage, **edge_values}, "edge"),
    ]
    for step in steps:
        check_parameters(step)
    problems = fleet_package_problems(given.get("network", {}), bundle)
    packaged_stage = _packaged_stage(app)
    if packaged_stage != stage:
        raise PlanError(
            f"{app} was packaged for stage {packaged_stage!r}, not {stage!r}; run make package STAGE={stage}"
        )
    placeholders = [
        f"{key}.{name}"
        for key, values in given.items()
        for name, value in values.items()
        if PLACEHOLDER.search(str(value))
    ]
    if PLACEHOLDER.search(str(config["artifact_bucket"])):
        placeholders.append("artifact_bucket")
    return Plan(stage, str(config["region"]), str(config["artifact_bucket"]), steps, placeholders, problems)


def check_parameters(step: Step) -> None:
    """Every parameter without a default is given; nothing is given that the template lacks."""
    declared = template_parameters(step.template)
    missing = [name for name, spec in declared.items() if "Default" not in spec and name not in step.parameters]
    extra = [name for name in step.parameters if name not in declared]
    if missing:
        raise PlanError(f"{step.title}: {step.template} needs {missing}, which the plan does not give")
    if extra:
        raise PlanError(f"{step.title}: {step.template} has no parameter {extra}")
    step.masked = frozenset(name for name, spec in declared.items() if str(spec.get("NoEcho", "")).lower() == "true")
    step.capabilities = capabilities(read_template(step.template))


def fleet_package_problems(network: dict[str, Any], bundle: Path) -> list[str]:
    """The fleet installs the pinned Debian packages (infra/nginx/debian-packages.txt) from
    the bundle's packages/ or from Debian's mirror; the network stack gives it no route to
    the mirror unless FleetHttpsToInternet is true (with a NAT gateway of the VPC). Without
    either, every instance would fail its bootstrap."""
    if str(network.get("FleetHttpsToInternet", "false")).lower() == "true" or not bundle.is_file():
        return []  # a missing bundle is reported when it is uploaded
    try:
        with tarfile.open(bundle) as archive:
            names = archive.getnames()
    except (OSError, tarfile.TarError) as exc:
        return [f"{_shown(bundle)} is not a bundle ({exc}); make bundle builds it"]
    if any(name.startswith(f"{BUNDLE_PACKAGES}/") and name.endswith(".deb") for name in names):
        return []
    return [
        f"{_shown(bundle)} carries no NGINX packages and the network stack gives the fleet no route to "
        "Debian's mirror: build it with make bundle BUNDLE_PACKAGES=<dir of the pinned .deb files> "
        '(infra/ec2/README.md), or set the network\'s "FleetHttpsToInternet": "true" with a NAT gateway in the VPC'
    ]


def _packaged_stage(template: Path) -> str:
    resources = json.loads(template.read_text(encoding="utf-8"))["Resources"]
    return str(resources["APIHandler"]["Properties"]["Environment"]["Variables"].get(constants.STAGE))


# ------------------------------------------------------------------ output


def describe(plan: Plan, step: Step, name: str) -> str:
    value = step.parameters[name]
    if name in step.masked:
        return MASK
    if isinstance(value, (Output, Jwks, RedirectFunction)):
        return value.describe(plan.stage)
    if isinstance(value, Upload):
        return f"s3://{plan.artifact_bucket}/{value.key(plan.stage)} (upload of {_shown(value.path)})"
    return value


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def print_plan(plan: Plan, out: Callable[[str], None] = print) -> None:
    out(f"Deploy plan for stage {plan.stage}, region {plan.region}, artifacts in s3://{plan.artifact_bucket}")
    for number, step in enumerate(plan.steps, 1):
        where = f"{stack_name(plan.stage, step.key)} ({step.title}) from {_shown(step.template)}"
        out(f"[{number}/{len(plan.steps)}] {where}")
        for name in step.parameters:
            out(f"    {name} = {describe(plan, step, name)}")
    if plan.placeholders:
        out(f"placeholder values still in {_shown(stage_file(plan.stage))}: {', '.join(plan.placeholders)}")
    for problem in plan.problems:
        out(f"the deploy would stop here: {problem}")


# ----------------------------------------------------------------- deploy


class StepFailed(Exception):
    """A command failed; the deploy stops."""


class Runner:
    """Runs the AWS CLI; prints each command before it runs."""

    def __init__(self, region: str, out: Callable[[str], None] = print) -> None:
        self.region = region
        self.out = out

    def run(self, *args: str, capture: bool = False) -> str:
        command = ["aws", *args, "--region", self.region]
        self.out("+ " + " ".join(command))
        result = subprocess.run(command, check=False, text=True, capture_output=capture)
        if result.returncode != 0:
            detail = (result.stderr or "").strip() if capture else ""
            raise StepFailed(f"failed (exit {result.returncode}): {' '.join(command)} {detail}".strip())
        return result.stdout if capture else ""

    def publish_function(self, name: str, code: str) -> str:
        """Creates or updates the CloudFront Function `name` with `code`, publishes it; its ARN."""
        config = f"Comment={constants.APP_NAME} old-domain redirect,Runtime={function.RUNTIME}"
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "redirect.js"
            path.write_text(code, encoding="utf-8")
            code_arg = f"fileb://{path}"
            try:
                etag = json.loads(self.run("cloudfront", "describe-function", "--name", name, capture=True))["ETag"]
            except StepFailed as exc:
                if "NoSuchFunctionExists" not in str(exc):
                    raise
                created = self.run(
                    "cloudfront", "create-function", "--name", name,
                    "--function-config", config, "--function-code", code_arg, capture=True,
                )  # fmt: skip
                etag = json.loads(created)["ETag"]
            else:
                updated = self.run(
                    "cloudfront", "update-function", "--name", name, "--if-match", etag,
                    "--function-config", config, "--function-code", code_arg, capture=True,
                )  # fmt: skip
                etag = json.loads(updated)["ETag"]
        published = self.run("cloudfront", "publish-function", "--name", name, "--if-match", etag, capture=True)
        return str(json.loads(published)["FunctionSummary"]["FunctionMetadata"]["FunctionARN"])

    def jwks(self, issuer: str) -> str:
        """The user pool's JWKS document, compact, checked to hold its RS256 signing keys."""
        url = f"{issuer.rstrip('/')}/.well-known/jwks.json"
        if not url.startswith("https://"):
            raise StepFailed(f"the issuer {issuer!r} is not an https URL")
        self.out(f"+ GET {url}")
        try:
            answer = requests.get(url, timeout=(5, 10))
            answer.raise_for_status()
            document = answer.json()
            auth.parse_jwks(document)
        except (requests.RequestException, ValueError) as exc:
            raise StepFailed(f"could not read the user pool's keys at {url}: {exc}") from None
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    def outputs(self, stack: str) -> dict[str, str] | None:
        """A stack's outputs; None when it does not exist."""
        command = ["aws", "cloudformation", "describe-stacks", "--stack-name", stack, "--region", self.region]
        self.out("+ " + " ".join(command))
        result = subprocess.run([*command, "--output", "json"], check=False, text=True, capture_output=True)
        if result.returncode != 0:
            if "does not exist" in result.stderr:
                return None
            raise StepFailed(f"failed: {' '.join(command)}: {result.stderr.strip()}")
        stacks = json.loads(result.stdout)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def resolve_output(plan: Plan, step: Step, value: Output, runner: Runner) -> str:
    outputs = runner.outputs(stack_name(plan.stage, value.stack))
    if outputs is None and value.default is not None:
        return value.default
    if outputs is None or value.key not in outputs:
        raise StepFailed(f"{step.title}: {value.describe(plan.stage)} is not there")
    return outputs[value.key]


def resolve(plan: Plan, step: Step, runner: Runner) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in step.parameters.items():
        if isinstance(value, Output):
            values[name] = resolve_output(plan, step, value, runner)
        elif isinstance(value, Jwks):
            issuer = resolve_output(plan, step, value.issuer, runner)
            values[name] = runner.jwks(issuer) if issuer else ""
        elif isinstance(value, RedirectFunction):
            code = function.with_names(list(value.old_hosts), value.new_host)
            values[name] = runner.publish_function(function.function_name(plan.stage), code)
        elif isinstance(value, Upload):
            if not value.path.is_file():
                raise StepFailed(f"{step.title}: {_shown(value.path)} does not exist (make bundle builds it)")
            uri = f"s3://{plan.artifact_bucket}/{value.key(plan.stage)}"
            runner.run("s3", "cp", "--only-show-errors", str(value.path), uri)
            values[name] = uri
        else:
            values[name] = value
    return values


def deploy_step(plan: Plan, step: Step, runner: Runner, workdir: Path) -> None:
    values = resolve(plan, step, runner)
    for name, value in values.items():
        runner.out(f"    {name} = {MASK if name in step.masked else value}")
    template = step.template
    if step.packaged:
        template = workdir / f"{step.key}-packaged.json"
        runner.run(
            "cloudformation", "package", "--template-file", str(step.template),
            "--s3-bucket", plan.artifact_bucket, "--s3-prefix", f"{constants.APP_NAME}/{plan.stage}/{step.key}",
            "--output-template-file", str(template), "--use-json",
        )  # fmt: skip
    # The values go in a file only the operator can read, never on a command line.
    parameters = workdir / f"{step.key}-parameters.json"
    parameters.write_text(json.dumps({"Parameters": values}), encoding="utf-8")
    parameters.chmod(0o600)
    command = [
        "cloudformation", "deploy", "--stack-name", stack_name(plan.stage, step.key),
        "--template-file", str(template), "--s3-bucket", plan.artifact_bucket,
        "--s3-prefix", f"{constants.APP_NAME}/{plan.stage}/templates",
        "--parameter-overrides", f"file://{parameters}", "--no-fail-on-empty-changeset",
        "--tags", f"app={constants.APP_NAME}", f"stage={plan.stage}",
    ]  # fmt: skip
    if step.capabilities:
        command += ["--capabilities", *step.capabilities]
    runner.run(*command)


def urls(plan: Plan, runner: Runner) -> list[str]:
    """What to open once it is all deployed."""
    edge = runner.outputs(stack_name(plan.stage, "edge")) or {}
    app = runner.outputs(stack_name(plan.stage, "app")) or {}
    domain = dict(plan.steps[-1].parameters).get("DomainName")
    lines = []
    if isinstance(domain, str) and domain:
        lines.append(f"HOSP (new domain):          https://{domain}/")
    if "DistributionDomainName" in edge:
        lines.append(f"CloudFront distribution:    https://{edge['DistributionDomainName']}/")
    if "EndpointURL" in app:
        lines.append(f"Chalice API (private, VPC): {app['EndpointURL']}")
    return lines


def only(plan: Plan, keys: Sequence[str]) -> Plan:
    """The plan's steps of the stacks `keys` only, in the plan's order (a roll-back, a fix of one
    stack); the others are left as they are. Raises PlanError on a key that is no stack."""
    unknown = sorted(set(keys) - {step.key for step in plan.steps})
    if not keys:
        raise PlanError("--only names no stack")
    if unknown:
        raise PlanError(f"no stack {unknown}; stacks: {', '.join(dict.fromkeys(s.key for s in plan.steps))}")
    plan.steps = [step for step in plan.steps if step.key in keys]
    return plan


def deploy(plan: Plan, runner: Runner) -> None:
    if plan.problems:
        raise StepFailed("; ".join(plan.problems))
    if plan.placeholders:
        raise StepFailed(
            f"{_shown(stage_file(plan.stage))} still holds placeholder values ({', '.join(plan.placeholders)}); "
            "put the stage's real values in it"
        )
    with tempfile.TemporaryDirectory(prefix="hosp-deploy-") as directory:
        os.chmod(directory, 0o700)
        for number, step in enumerate(plan.steps, 1):
            runner.out(f"== [{number}/{len(plan.steps)}] {stack_name(plan.stage, step.key)}: {step.title}")
            deploy_step(plan, step, runner, Path(directory))
    runner.out("Deployed. URLs:")
    for line in urls(plan, runner):
        runner.out("  " + line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=constants.STAGES)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and deploy nothing")
    parser.add_argument("--stage-file", type=Path, help="default: infra/app/deploy-<stage>.json")
    parser.add_argument("--dist", type=Path, default=DIST, help="where make package put the app; default: dist/")
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help=f"the fleet's bundle; default: {_shown(BUNDLE)}")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated stacks (network, notes, app, proxy, audit, edge) to deploy, the others left alone",
    )
    args = parser.parse_args(argv)
    try:
        plan = build_plan(args.stage, stage_path=args.stage_file, dist=args.dist, bundle=args.bundle)
        if args.only:
            plan = only(plan, [key.strip() for key in args.only.split(",") if key.strip()])
    except PlanError as exc:
        print(f"cannot deploy {args.stage}: {exc}", file=sys.stderr)
        return 1
    print_plan(plan)
    if args.dry_run:
        print("dry run: nothing deployed")
        return 0
    if shutil.which("aws") is None:
        print("the AWS CLI v2 (aws) is not installed: https://docs.aws.amazon.com/cli/", file=sys.stderr)
        return 1
    try:
        deploy(plan, Runner(plan.region))
    except StepFailed as exc:
        print(f"deploy of {args.stage} stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
