"""CloudFormation templates under infra/: cfn-lint clean, and properties the proxy fleet must keep.

Each test states a property (who can reach the fleet, where its logs go, in which order
it bootstraps) rather than the template's current text, so a refactor that keeps the
property passes and a change that breaks it fails. The note queues' own properties are
in test_notes_template.py.

A missing cfn-lint fails these tests rather than skipping them (tests/infra/cfn.py).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from infra.nginx.render import ProxySettings
from tests.infra.cfn import INFRA, REPO, as_list, cfn_templates, decode, one, resources

PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"
NOTES_TEMPLATE = INFRA / "notes" / "queues.yaml"
# The file the distribution's nginx.service loads (and `nginx -t` tests) by default.
NGINX_CONF = "/etc/nginx/nginx.conf"

# Ingress keys that open a group to addresses rather than to a named set of peers.
_CIDR_KEYS = ("CidrIp", "CidrIpv6")
# A command line that runs infra/nginx/render.py (not one that merely names the file).
_RUNS_RENDER = r"^\S*python3?\s+\S*render\.py\s"
_PEER_KEYS = ("SourcePrefixListId", "SourceSecurityGroupId", "SourceSecurityGroupName")


@pytest.fixture(scope="module")
def proxy() -> dict[str, Any]:
    return decode(PROXY_TEMPLATE)


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


def _fleet_groups(template: dict[str, Any]) -> set[str]:
    """Logical ids of the security groups the launch template puts on the proxy instances."""
    data = one(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    ids = as_list(data.get("SecurityGroupIds", []))
    for interface in data.get("NetworkInterfaces", []):
        ids += as_list(interface.get("Groups", []))
    return {name for name in map(_referenced_resource, ids) if name is not None}


def _user_data(template: dict[str, Any]) -> str:
    data = one(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    sub = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


def _commands(script: str) -> list[str]:
    """The script's logical lines: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _first(commands: list[str], pattern: str) -> int:
    """Index of the first command matching pattern."""
    for index, command in enumerate(commands):
        if re.search(pattern, command):
            return index
    pytest.fail(f"the user data runs no command matching {pattern!r}")


def _heredoc(script: str, target: str) -> str:
    """Body of the `cat > target <<'EOF'` here-document in script."""
    match = re.search(rf"^\s*cat > {re.escape(target)} <<'EOF'\n(.*?)^\s*EOF$", script, re.S | re.M)
    assert match, f"no here-document writes {target}"
    return match.group(1)


def _heredocs_under(script: str, directory: str) -> list[str]:
    pattern = rf"^\s*cat > {re.escape(directory)}/\S+ <<'EOF'\n(.*?)^\s*EOF$"
    return re.findall(pattern, script, re.S | re.M)


def _render_command(script: str) -> argparse.Namespace:
    """The options the user data passes to infra/nginx/render.py, production defaults filled in."""
    command = next((c for c in _commands(script) if re.search(_RUNS_RENDER, c)), None)
    assert command, "the user data never renders the NGINX config with render.py"
    words = shlex.split(command)
    argv = words[next(i for i, word in enumerate(words) if word.endswith("render.py")) + 1 :]
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--variant", "--output", "--listen", "--access-log", "--error-log"):
        parser.add_argument(option)
    args, _ = parser.parse_known_args(argv)
    assert args.variant == "production", "instances must render the production variant"
    given = {name: getattr(args, name) for name in ("listen", "access_log", "error_log")}
    settings = ProxySettings.for_variant(
        "production", "hosp.internal:80", Path("/unused"), **{k: v for k, v in given.items() if v is not None}
    )
    return argparse.Namespace(
        output=args.output, listen=settings.listen, access_log=settings.access_log, error_log=settings.error_log
    )


def _listen_port(listen: str) -> int:
    """Port of an NGINX `listen` value: "80", "0.0.0.0:80" or "[::]:80"."""
    return int(listen.rsplit(":", 1)[-1])


def _agent_config(script: str) -> dict[str, Any]:
    """The CloudWatch agent config the user data starts the agent with (`-c file:PATH`)."""
    match = re.search(r"amazon-cloudwatch-agent-ctl\b.*?-c file:(\S+)", " ".join(_commands(script)))
    assert match, "the user data never starts the CloudWatch agent with a config file"
    config: dict[str, Any] = json.loads(_heredoc(script, match.group(1)))
    return config


def _shipped(script: str) -> list[dict[str, Any]]:
    return list(_agent_config(script)["logs"]["logs_collected"]["files"]["collect_list"])


# ------------------------------------------------------------------ cfn-lint


def test_infra_has_cloudformation_templates() -> None:
    """Both templates are found, so both are linted below and the shared checks apply to both."""
    assert {PROXY_TEMPLATE, NOTES_TEMPLATE} <= set(cfn_templates())


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


def test_proxy_instances_admit_traffic_only_on_the_port_nginx_listens_on(proxy: dict[str, Any]) -> None:
    port = _listen_port(_render_command(_user_data(proxy)).listen)
    groups = _fleet_groups(proxy)
    assert groups, "the proxy instances get no security group of this template (the VPC default applies)"
    assert groups <= set(resources(proxy, "AWS::EC2::SecurityGroup"))
    rules = [rule for group, rule in _ingress_rules(proxy) if group in groups]
    assert rules, "nothing can reach the proxy instances"
    for rule in rules:
        assert (rule["FromPort"], rule["ToPort"]) == (port, port), rule


def test_no_ssh_or_other_management_port_is_open(template: dict[str, Any]) -> None:
    """Operators use SSM Session Manager (the instance role has it), never an open port."""
    for group, rule in _ingress_rules(template):
        assert rule["FromPort"] not in (22, 3389), f"ingress of {group}: {rule}"


def test_instances_can_use_session_manager(proxy: dict[str, Any]) -> None:
    managed = one(proxy, "AWS::IAM::Role")["Properties"].get("ManagedPolicyArns", [])
    assert any("AmazonSSMManagedInstanceCore" in json.dumps(arn) for arn in managed)


# -------------------------------------------------------- instance hardening


def test_instances_require_imdsv2(proxy: dict[str, Any]) -> None:
    data = one(proxy, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    # 1 hop keeps the credentials from anything forwarded through the host.
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


def test_every_volume_is_encrypted(proxy: dict[str, Any]) -> None:
    data = one(proxy, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    mappings = data["BlockDeviceMappings"]
    assert mappings
    for mapping in mappings:
        assert mapping["Ebs"]["Encrypted"] is True, mapping


def test_inline_policies_have_no_wildcardresources(proxy: dict[str, Any]) -> None:
    role = one(proxy, "AWS::IAM::Role")["Properties"]
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert "*" not in as_list(statement["Resource"]), policy["PolicyName"]
            assert "*" not in as_list(statement["Action"]), policy["PolicyName"]


# --------------------------------------------------------- fleet operation


def test_fleet_spans_the_subnets_parameter(proxy: dict[str, Any]) -> None:
    """The AZs come from a list of subnets given at deploy time, not from the template."""
    zones = one(proxy, "AWS::AutoScaling::AutoScalingGroup")["Properties"]["VPCZoneIdentifier"]
    parameter = _referenced_resource(zones)
    assert parameter in proxy["Parameters"], zones
    assert proxy["Parameters"][parameter]["Type"] == "List<AWS::EC2::Subnet::Id>"


def test_a_rolling_update_keeps_the_fleet_serving(proxy: dict[str, Any]) -> None:
    """An update replaces instances while one serves, and stops at an instance that fails
    to bootstrap (it never signals) instead of rolling a broken bundle over the fleet."""
    group = one(proxy, "AWS::AutoScaling::AutoScalingGroup")
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert int(rolling["MinInstancesInService"]) >= 1
    assert rolling["WaitOnResourceSignals"] is True
    assert "ResourceSignal" in group["CreationPolicy"]


# ------------------------------------------------------------------ bootstrap


def test_user_data_is_valid_bash(proxy: dict[str, Any], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to syntax-check the user data"
    script = tmp_path / "user-data.sh"
    # Fn::Sub references become placeholders; bash only parses (-n), runs nothing.
    script.write_text(re.sub(r"\$\{(?!!)[A-Za-z0-9:]+\}", "x", _user_data(proxy)))
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_failing_bootstrap_step_fails_the_instance(proxy: dict[str, Any]) -> None:
    """Any failing command stops the script and signals failure to CloudFormation, so a
    broken instance never counts as healthy."""
    script = _user_data(proxy)
    assert script.startswith("#!/bin/bash\n")
    commands = _commands(script)
    options = _first(commands, r"^set -[a-z]*e[a-z]* .*pipefail|^set -o errexit")
    assert "pipefail" in commands[options]
    trap = _first(commands, r"^trap .*\bERR\b")
    assert "signal 1" in commands[trap] or "cfn-signal" in commands[trap]
    # Both take effect before the first command that can fail.
    assert max(options, trap) < _first(commands, r"^(dnf|yum|aws|curl|python3|nginx) ")


def test_nginx_starts_only_after_its_rendered_config_passed_nginx_t(proxy: dict[str, Any]) -> None:
    script = _user_data(proxy)
    assert _render_command(script).output == NGINX_CONF
    commands = _commands(script)
    render = _first(commands, _RUNS_RENDER)
    check = _first(commands, r"^nginx -t\b")
    start = _first(commands, r"^systemctl (enable --now|start|restart) nginx\b")
    health = _first(commands, r"^curl --fail\b.*/_proxy/health")
    assert render < check < start < health


def test_every_log_nginx_writes_is_shipped(proxy: dict[str, Any]) -> None:
    script = _user_data(proxy)
    render = _render_command(script)
    shipped = {entry["file_path"] for entry in _shipped(script)}
    assert {render.access_log, render.error_log} <= shipped


def test_every_shipped_log_goes_to_a_log_group_of_the_template(proxy: dict[str, Any]) -> None:
    """The agent creates no log group (its role may not); a name it is given must exist."""
    groups = set(resources(proxy, "AWS::Logs::LogGroup"))
    for entry in _shipped(_user_data(proxy)):
        match = re.fullmatch(r"\$\{(\w+)\}", entry["log_group_name"])
        assert match, f"{entry['file_path']} goes to a log group named by hand: {entry['log_group_name']}"
        assert match.group(1) in groups, entry


def test_instances_may_write_to_every_shipped_log_group(proxy: dict[str, Any]) -> None:
    writable: list[Any] = []
    for policy in one(proxy, "AWS::IAM::Role")["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow" and "logs:PutLogEvents" in as_list(statement["Action"]):
                writable += as_list(statement["Resource"])
    for entry in _shipped(_user_data(proxy)):
        group = entry["log_group_name"].strip("${}")
        # The group's Arn attribute ends in ":*", which covers its log streams.
        assert {"Fn::GetAtt": [group, "Arn"]} in writable, group


def test_log_timestamps_are_read_in_the_timezone_nginx_writes_them(proxy: dict[str, Any]) -> None:
    """NGINX writes local time; the agent must parse it in that same zone, or every
    event lands hours off in CloudWatch."""
    script = _user_data(proxy)
    drop_ins = "".join(_heredocs_under(script, "/etc/systemd/system/nginx.service.d"))
    match = re.search(r"^Environment=TZ=(\S+)\s*$", drop_ins, re.M)
    nginx_tz = match.group(1) if match else None
    for entry in _shipped(script):
        if entry.get("timezone") == "UTC":
            assert nginx_tz == "UTC", f"{entry['file_path']} is parsed as UTC, NGINX runs with TZ={nginx_tz}"


# ----------------------------------------------------------------------- logs


def test_every_log_group_expires_and_outlives_the_stack(template: dict[str, Any]) -> None:
    """Logs are kept for a bounded time (cost, data protection) and survive a stack
    deletion or replacement (they are the record of an incident)."""
    for name, group in resources(template, "AWS::Logs::LogGroup").items():
        assert "RetentionInDays" in group["Properties"], name
        assert group.get("DeletionPolicy") == "Retain", name
        assert group.get("UpdateReplacePolicy") == "Retain", name
