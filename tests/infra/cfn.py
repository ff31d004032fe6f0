"""Reading the CloudFormation templates under infra/ in tests: cfn-lint's decoder and accessors.

cfn-lint is a dev requirement (requirements/dev.in); `make test` installs it. A missing
cfn-lint fails the tests that need it rather than skipping them: an unlinted template must
not pass as a green run.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

MISSING_CFN_LINT = (
    "cfn-lint is not installed in this Python environment; `make test` installs it "
    "(it is pinned in requirements/dev.in)."
)

# A file is a CloudFormation template when it has either top-level key.
_CFN_MARKER = re.compile(r"^(AWSTemplateFormatVersion|Resources)\s*:", re.MULTILINE)


def cfn_templates() -> list[Path]:
    """Every CloudFormation template under infra/."""
    files = sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])
    return [f for f in files if _CFN_MARKER.search(f.read_text(encoding="utf-8"))]


def import_cfnlint(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(MISSING_CFN_LINT, pytrace=False)


def decode(path: Path) -> dict[str, Any]:
    """A template parsed by cfn-lint's decoder, so that !Ref and friends parse."""
    template, matches = import_cfnlint("cfnlint.decode").decode(str(path))
    assert not matches, [str(m) for m in matches]
    assert isinstance(template, dict)
    return template


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_}


def one(template: dict[str, Any], type_: str) -> dict[str, Any]:
    """The template's only resource of a type."""
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------- deployed values

REGION = "eu-west-2"
ACCOUNT = "123456789012"
# Secrets Manager appends "-" and six random characters to a secret's name in its ARN.
SECRET_SUFFIX = "-AbC123"
_SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")


class Deployed:
    """The values a template's intrinsic functions take in one deployment.

    Region and account are fixed (REGION, ACCOUNT); parameters not given take their
    defaults. Physical ids follow the services' own formats (a queue's Ref is its URL,
    a secret's Ref its ARN), so a test compares values the way AWS would produce them,
    not the template's text. Only the functions and attributes the templates use are
    known; anything else fails the test that needs it.
    """

    def __init__(self, template: dict[str, Any], **parameters: str) -> None:
        self.template = template
        self.parameters = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        unknown = set(parameters) - set(self.parameters)
        assert not unknown, f"the template has no parameters {sorted(unknown)}"

    def value(self, node: Any) -> Any:
        """`node` with every intrinsic function evaluated; None where it is AWS::NoValue."""
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not None]
        if not isinstance(node, dict):
            return node
        functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self.name,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self.sub,
            "Fn::If": self._if,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
        }
        if len(node) == 1 and next(iter(node)) in functions:
            key, argument = next(iter(node.items()))
            return functions[key](argument)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not None}

    def _get_att(self, argument: str | list[str]) -> Any:
        logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return self.name(f"{logical}.{attribute}")

    def _if(self, argument: list[Any]) -> Any:
        condition, if_true, if_false = argument
        return self.value(if_true if self.condition(condition) else if_false)

    def _join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(item) for item in self.value(items))

    def _split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return str(self.value(text)).split(delimiter)

    def sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        replaced = _SUB_REFERENCE.sub(
            lambda m: str(self.value(variables[m.group(1)]) if m.group(1) in variables else self.name(m.group(1))),
            text,
        )
        # "${!Literal}" is Fn::Sub's escape for a literal "${Literal}".
        return replaced.replace("${!", "${")

    def condition(self, name: str) -> bool:
        return bool(self._test(self.template["Conditions"][name]))

    def _test(self, node: Any) -> Any:
        if isinstance(node, dict) and "Fn::Not" in node:
            return not self._test(node["Fn::Not"][0])
        if isinstance(node, dict) and "Fn::Equals" in node:
            left, right = (self._test(v) for v in node["Fn::Equals"])
            return left == right
        if isinstance(node, dict) and "Condition" in node:
            return self.condition(node["Condition"])
        return self.value(node)

    def name(self, reference: str) -> Any:
        """What `!Ref reference` or `!GetAtt reference` (Logical.Attribute) gives."""
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::NoValue": None}
        if reference in pseudo:
            return pseudo[reference]
        if reference in self.parameters:
            if self.template["Parameters"][reference]["Type"] == "CommaDelimitedList":
                return self.parameters[reference].split(",")
            return self.parameters[reference]
        logical, _, attribute = reference.partition(".")
        type_ = self.template["Resources"][logical]["Type"]
        attributes = {
            ("AWS::SQS::Queue", "QueueName"): lambda: self.value(self._property(logical, "QueueName")),
            ("AWS::SQS::Queue", "Arn"): lambda: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.name(f'{logical}.QueueName')}",
            ("AWS::SQS::Queue", ""): lambda: (
                f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(f'{logical}.QueueName')}"
            ),
            ("AWS::SecretsManager::Secret", ""): lambda: (
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{self.value(self._property(logical, 'Name'))}"
                f"{SECRET_SUFFIX}"
            ),
            ("AWS::CloudWatch::Alarm", "Arn"): lambda: (
                f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{self.value(self._property(logical, 'AlarmName'))}"
            ),
            ("AWS::CloudWatch::Dashboard", ""): lambda: self.value(self._property(logical, "DashboardName")),
            # A topic's Ref is its ARN.
            ("AWS::SNS::Topic", ""): lambda: (
                f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.value(self._property(logical, 'TopicName'))}"
            ),
            ("AWS::S3::Bucket", ""): lambda: self.value(self._property(logical, "BucketName")),
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:aws:s3:::{self.name(logical)}",
            ("AWS::S3::Bucket", "RegionalDomainName"): lambda: f"{self.name(logical)}.s3.{REGION}.amazonaws.com",
            # An unnamed role's name is generated by CloudFormation; the logical id stands in for it.
            ("AWS::IAM::Role", "Arn"): lambda: f"arn:aws:iam::{ACCOUNT}:role/{logical}",
            ("AWS::KinesisFirehose::DeliveryStream", ""): lambda: self.value(
                self._property(logical, "DeliveryStreamName")
            ),
            ("AWS::KinesisFirehose::DeliveryStream", "Arn"): lambda: (
                f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{self.name(logical)}"
            ),
            ("AWS::Logs::LogGroup", ""): lambda: self.value(self._property(logical, "LogGroupName")),
            ("AWS::Logs::LogStream", ""): lambda: self.value(self._property(logical, "LogStreamName")),
            ("AWS::Glue::Database", ""): lambda: self.value(self._property(logical, "DatabaseInput")["Name"]),
            ("AWS::Glue::Table", ""): lambda: self.value(self._property(logical, "TableInput")["Name"]),
            ("AWS::Athena::WorkGroup", ""): lambda: self.value(self._property(logical, "Name")),
            # Cognito makes up the pool's id ("<region>_<random>"); a stand-in of that shape.
            ("AWS::Cognito::UserPool", ""): lambda: f"{REGION}_{logical}",
            # CloudFront makes up the ids of its policies and distributions; the logical id stands in.
            ("AWS::CloudFront::OriginRequestPolicy", ""): lambda: logical,
            ("AWS::CloudFront::ResponseHeadersPolicy", ""): lambda: logical,
            ("AWS::CloudFront::Distribution", ""): lambda: logical,
            ("AWS::CloudFront::Distribution", "DomainName"): lambda: f"{logical.lower()}.cloudfront.net",
        }
        evaluate = attributes.get((type_, attribute))
        assert evaluate, f"tests/infra/cfn.py cannot evaluate {reference} ({type_})"
        return evaluate()

    def _property(self, logical: str, name: str) -> Any:
        return self.template["Resources"][logical]["Properties"][name]

    def properties(self, logical: str) -> dict[str, Any]:
        """A resource's properties, evaluated."""
        evaluated: dict[str, Any] = self.value(self.template["Resources"][logical].get("Properties", {}))
        return evaluated


# ---------------------------------------------------------------- alarms and dashboards


def breaches(alarm: dict[str, Any], value: float) -> bool:
    """Whether `value` breaches the alarm's threshold, by its ComparisonOperator."""
    compare = {
        "GreaterThanThreshold": value > alarm["Threshold"],
        "GreaterThanOrEqualToThreshold": value >= alarm["Threshold"],
        "LessThanThreshold": value < alarm["Threshold"],
        "LessThanOrEqualToThreshold": value <= alarm["Threshold"],
    }
    return compare[alarm["ComparisonOperator"]]


def dashboard(deployed: Deployed) -> dict[str, Any]:
    """The body of the template's one dashboard, as CloudWatch reads it."""
    (logical,) = resources(deployed.template, "AWS::CloudWatch::Dashboard")
    body: dict[str, Any] = json.loads(deployed.properties(logical)["DashboardBody"])
    return body


def charted(body: dict[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(namespace, metric, dimensions) of every metric the dashboard's metric widgets draw.

    Each entry is written out in full ([namespace, name, dim, value, ..., {options}]);
    the "." shorthand of the console is not read here.
    """
    found = set()
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        for entry in widget["properties"]["metrics"]:
            fields = [f for f in entry if not isinstance(f, dict)]
            namespace, metric, *pairs = fields
            assert "." not in (namespace, metric), f"shorthand entry {entry}"
            found.add((namespace, metric, tuple(zip(pairs[::2], pairs[1::2], strict=True))))
    return found
