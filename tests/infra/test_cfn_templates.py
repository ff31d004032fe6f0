"""CloudFormation templates under infra/: cfn-lint clean, and properties every template must keep.

Each test states a property (who can reach what, how long logs are kept) rather than a
template's current text, so a refactor that keeps the property passes and a change that
breaks it fails. Each template's own properties are in its own file: the proxy fleet's in
test_proxy_template.py (its bootstrap bundle's in test_proxy_bundle.py), the note queues'
in test_notes_template.py.

A missing cfn-lint fails these tests rather than skipping them (tests/infra/cfn.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra.cfn import INFRA, REPO, cfn_templates, decode, resources

PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"
NOTES_TEMPLATE = INFRA / "notes" / "queues.yaml"
MONITORING_TEMPLATE = INFRA / "monitoring" / "monitoring.yaml"

# Ingress keys that open a group to addresses rather than to a named set of peers.
_CIDR_KEYS = ("CidrIp", "CidrIpv6")
_PEER_KEYS = ("SourcePrefixListId", "SourceSecurityGroupId", "SourceSecurityGroupName")


@pytest.fixture(scope="module", params=cfn_templates(), ids=lambda p: str(p.relative_to(REPO)))
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each CloudFormation template under infra/ in turn."""
    path: Path = request.param
    return decode(path)


# ------------------------------------------------------------------ helpers


def _referenced_resource(value: Any) -> str | None:
    """The logical id behind `!Ref X` or `!GetAtt X.GroupId`, else None."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _ingress_rules(template: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Every ingress rule with the logical id of the group it opens (None: a group from outside).

    Rules written inline in an AWS::EC2::SecurityGroup and rules written as separate
    AWS::EC2::SecurityGroupIngress resources are both listed, so neither form escapes
    the checks below.
    """
    rules: list[tuple[str | None, dict[str, Any]]] = []
    for name, group in resources(template, "AWS::EC2::SecurityGroup").items():
        rules += [(name, rule) for rule in group["Properties"].get("SecurityGroupIngress", [])]
    for ingress in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        properties = ingress["Properties"]
        rules.append((_referenced_resource(properties.get("GroupId")), properties))
    return rules


# ------------------------------------------------------------------ cfn-lint


def test_infra_has_cloudformation_templates() -> None:
    """The templates are found, so each is linted below and the shared checks apply to each."""
    assert {PROXY_TEMPLATE, NOTES_TEMPLATE, MONITORING_TEMPLATE} <= set(cfn_templates())


@pytest.mark.parametrize("path", cfn_templates(), ids=lambda p: str(p.relative_to(REPO)))
def test_template_is_cfn_lint_clean(cfnlint_api: ModuleType, path: Path) -> None:
    # Same rules and defaults as the `cfn-lint <file>` command: errors and warnings.
    findings = cfnlint_api.lint_file(path)
    assert [str(f) for f in findings] == []


def test_cfn_lint_reports_warnings(cfnlint_api: ModuleType) -> None:
    """Guards the test above against a linter that silently checks nothing."""
    broken = (
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Parameters:\n  Unused:\n    Type: String\n"
        "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
    )
    assert {f.rule.id for f in cfnlint_api.lint(broken)} == {"W2001"}


# ------------------------------------------------------- network exposure


def test_ingress_comes_only_from_prefix_lists_or_security_groups(template: dict[str, Any]) -> None:
    """No security group is opened to an address range: a CIDR rule (0.0.0.0/0 or a
    hand-copied list of CloudFront addresses) bypasses the managed peers and goes stale."""
    for group, rule in _ingress_rules(template):
        cidrs = {key: rule[key] for key in _CIDR_KEYS if key in rule}
        assert not cidrs, f"ingress of {group} opens {cidrs}"
        peers = [key for key in _PEER_KEYS if key in rule]
        assert len(peers) == 1, f"ingress of {group} must name exactly one peer, has {peers}: {rule}"


def test_ingress_opens_single_tcp_ports(template: dict[str, Any]) -> None:
    """No "all protocols" rule and no port range: each rule admits one TCP port."""
    for group, rule in _ingress_rules(template):
        assert str(rule["IpProtocol"]).lower() in ("tcp", "6"), f"ingress of {group}: {rule}"
        assert rule["FromPort"] == rule["ToPort"], f"ingress of {group} opens a port range: {rule}"


def test_no_ssh_or_other_management_port_is_open(template: dict[str, Any]) -> None:
    """Operators use SSM Session Manager (the instance role has it), never an open port."""
    for group, rule in _ingress_rules(template):
        assert rule["FromPort"] not in (22, 3389), f"ingress of {group}: {rule}"


# ----------------------------------------------------------------------- logs


def test_every_log_group_expires_and_outlives_the_stack(template: dict[str, Any]) -> None:
    """Logs are kept for a bounded time (cost, data protection) and survive a stack
    deletion or replacement (they are the record of an incident)."""
    for name, group in resources(template, "AWS::Logs::LogGroup").items():
        assert "RetentionInDays" in group["Properties"], name
        assert group.get("DeletionPolicy") == KEPT_UNLESS_FIRST_CREATE_FAILS, name
        assert group.get("UpdateReplacePolicy") == "Retain", name


# -------------------------------------------------------------- what is kept

# What a stack deletion keeps, except when the stack's first create fails: CloudFormation
# then deletes it, so that retrying the create finds no resource of the same fixed name
# in its way ("already exists"). UpdateReplacePolicy has no such value: Retain.
KEPT_UNLESS_FIRST_CREATE_FAILS = "RetainExceptOnCreate"


def test_nothing_kept_blocks_retrying_a_failed_first_create(template: dict[str, Any]) -> None:
    kept = {name: r["DeletionPolicy"] for name, r in template["Resources"].items() if "DeletionPolicy" in r}
    assert {name: policy for name, policy in kept.items() if policy == "Retain"} == {}


def test_the_apps_merge_template_keeps_its_log_groups_unless_the_first_create_fails() -> None:
    """infra/app/merge.json is JSON merged into Chalice's template (the packaged one is tested too)."""
    merge = json.loads((INFRA / "app" / "merge.json").read_text(encoding="utf-8"))
    policies = {
        name: r.get("DeletionPolicy")
        for name, r in merge["Resources"].items()
        if r.get("Type") == "AWS::Logs::LogGroup"
    }
    assert policies
    assert set(policies.values()) == {KEPT_UNLESS_FIRST_CREATE_FAILS}
