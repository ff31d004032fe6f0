"""infra/ec2/proxy.yaml, the proxy fleet: properties it must keep.

The fleet sits behind the stage's two internal load balancers and is reachable through
nothing else: its instances carry only the network stack's fleet security group (which
admits only those load balancers, tests of infra/network/), and the Auto Scaling group
puts them in both target groups and replaces the ones they find unhealthy. Its user data
only fetches the bootstrap bundle and runs its install.sh (the bundle's own checks are in
test_proxy_bundle.py). Each test states a property rather than the template's text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chalicelib import constants
from infra.ec2 import build_bundle
from tests.infra.cfn import INFRA, as_list, decode, one, resources

PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"
NETWORK_TEMPLATE = INFRA / "network" / "network.yaml"
INSTALL_SH = "infra/ec2/bundle/install.sh"
# Where the user data unpacks the bundle.
BUNDLE_ROOT = "/opt/hosp-proxy"
# What the network stack exports for the fleet (the shared contract of the stacks).
NETWORK_EXPORTS = {
    "FleetSecurityGroupId",
    "FleetSubnetIds",
    "OriginTargetGroupArn",
    "InternalTargetGroupArn",
    "OriginSecretArn",
}
# The user data is a few lines that fetch and run the bundle; anything long belongs there.
MAX_USER_DATA_BYTES = 2048


@pytest.fixture(scope="module")
def proxy() -> dict[str, Any]:
    return decode(PROXY_TEMPLATE)


# ------------------------------------------------------------------ helpers


def _imported(node: Any) -> str | None:
    """The key K of `Fn::ImportValue: !Sub hosp-reliability-${Stage}-K`, else None."""
    if not (isinstance(node, dict) and set(node) == {"Fn::ImportValue"}):
        return None
    name = node["Fn::ImportValue"]
    assert isinstance(name, dict), f"an import not named by stage: {node}"
    assert set(name) == {"Fn::Sub"}, f"an import not named by stage: {node}"
    match = re.fullmatch(re.escape(f"{constants.APP_NAME}-${{Stage}}-") + r"(\w+)", name["Fn::Sub"])
    assert match, f"an import outside the stage's stacks: {name}"
    return match.group(1)


def _all_imports(node: Any) -> list[str]:
    if isinstance(node, list):
        return [key for item in node for key in _all_imports(item)]
    if not isinstance(node, dict):
        return []
    key = _imported(node)
    if key is not None:
        return [key]
    return [key for value in node.values() for key in _all_imports(value)]


def _launch_data(template: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = one(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    return data


def _user_data(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The user data's script and its Fn::Sub variables."""
    sub = _launch_data(template)["UserData"]["Fn::Base64"]["Fn::Sub"]
    return (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])


def _commands(script: str) -> list[str]:
    """The script's logical lines: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _first(commands: list[str], pattern: str) -> int:
    for index, command in enumerate(commands):
        if re.search(pattern, command):
            return index
    pytest.fail(f"the user data runs no command matching {pattern!r}")


def _install_environment(script: str) -> dict[str, str]:
    """NAME -> value of the assignments in front of the command that runs install.sh."""
    command = _commands(script)[_first(_commands(script), re.escape(INSTALL_SH) + r"$")]
    return dict(re.findall(r"(\w+)='([^']*)' ", command))


def _required_by_install() -> set[str]:
    """The environment values install.sh refuses to run without (its `require NAME ...` lines)."""
    text = (build_bundle.REPO / INSTALL_SH).read_text()
    return set(re.findall(r"^require (\w+) ", text, re.M))


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = one(template, "AWS::IAM::Role")["Properties"]
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


# ------------------------------------------------------------------ cfn-lint


def test_the_template_is_cfn_lint_clean(cfnlint_api: ModuleType) -> None:
    findings = cfnlint_api.lint_file(PROXY_TEMPLATE)
    assert [str(f) for f in findings] == []


# ------------------------------------------------------- behind the load balancers


def test_instances_carry_only_the_network_stacks_fleet_group(proxy: dict[str, Any]) -> None:
    """The one group that admits only the two load balancers; no group of this template,
    whose rules the network stack would not see, and no default group."""
    data = _launch_data(proxy)
    assert "NetworkInterfaces" not in data, "groups set on an interface would escape this check"
    assert [_imported(group) for group in as_list(data["SecurityGroupIds"])] == ["FleetSecurityGroupId"]
    assert not resources(proxy, "AWS::EC2::SecurityGroup")
    assert not resources(proxy, "AWS::EC2::SecurityGroupIngress")


def test_the_group_serves_both_target_groups_and_heeds_their_health_checks(proxy: dict[str, Any]) -> None:
    group = one(proxy, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    arns = [_imported(arn) for arn in group["TargetGroupARNs"]]
    assert sorted(arns, key=str) == ["InternalTargetGroupArn", "OriginTargetGroupArn"]
    assert "LoadBalancerNames" not in group
    # ELB: an instance whose NGINX stopped answering /_proxy/health is replaced.
    assert group["HealthCheckType"] == "ELB"
    assert int(group["HealthCheckGracePeriod"]) >= 300, "the bootstrap needs minutes before it can answer"


def test_the_fleet_runs_in_the_network_stacks_subnets(proxy: dict[str, Any]) -> None:
    zones = one(proxy, "AWS::AutoScaling::AutoScalingGroup")["Properties"]["VPCZoneIdentifier"]
    assert set(zones) == {"Fn::Split"}
    delimiter, subnets = zones["Fn::Split"]
    assert delimiter == ","
    assert _imported(subnets) == "FleetSubnetIds"


def test_every_import_is_an_export_of_the_stages_network_stack(proxy: dict[str, Any]) -> None:
    imports = set(_all_imports(proxy["Resources"])) | set(_all_imports(proxy.get("Outputs", {})))
    assert imports == NETWORK_EXPORTS
    # The network template exports each of them under the same name.
    exports = {
        output["Export"]["Name"]["Fn::Sub"]
        for output in decode(NETWORK_TEMPLATE).get("Outputs", {}).values()
        if "Export" in output
    }
    missing = {key for key in imports if f"{constants.APP_NAME}-${{Stage}}-{key}" not in exports}
    assert not missing, f"{NETWORK_TEMPLATE.name} exports none of {sorted(missing)}"


def test_the_template_has_no_parameters_of_the_network_stack(proxy: dict[str, Any]) -> None:
    """Subnets, VPC and CloudFront's prefix list are the network stack's: given once, there."""
    parameters = set(proxy["Parameters"])
    assert not parameters & {"VpcId", "SubnetIds", "CloudFrontOriginPrefixListId"}
    for name, spec in proxy["Parameters"].items():
        assert "AWS::EC2::Subnet" not in spec["Type"], name
        assert "AWS::EC2::SecurityGroup" not in spec["Type"], name


# -------------------------------------------------------- instance hardening


def test_instances_can_use_session_manager(proxy: dict[str, Any]) -> None:
    managed = one(proxy, "AWS::IAM::Role")["Properties"].get("ManagedPolicyArns", [])
    assert any("AmazonSSMManagedInstanceCore" in json.dumps(arn) for arn in managed)


def test_instances_require_imdsv2(proxy: dict[str, Any]) -> None:
    options = _launch_data(proxy)["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    # 1 hop keeps the credentials from anything forwarded through the host.
    assert options["HttpPutResponseHopLimit"] == 1


def test_every_volume_is_encrypted(proxy: dict[str, Any]) -> None:
    mappings = _launch_data(proxy)["BlockDeviceMappings"]
    assert mappings
    for mapping in mappings:
        assert mapping["Ebs"]["Encrypted"] is True, mapping


def test_inline_policies_have_no_wildcards(proxy: dict[str, Any]) -> None:
    for statement in _statements(proxy):
        assert "*" not in as_list(statement["Resource"]), statement
        assert "*" not in as_list(statement["Action"]), statement


def test_instances_read_the_origin_secret_and_no_other(proxy: dict[str, Any]) -> None:
    granting = [s for s in _statements(proxy) if any("secretsmanager" in a for a in as_list(s["Action"]))]
    assert len(granting) == 1, granting
    statement = granting[0]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"]
    assert [_imported(resource) for resource in as_list(statement["Resource"])] == ["OriginSecretArn"]


# --------------------------------------------------------- fleet operation


def test_a_rolling_update_keeps_the_fleet_serving(proxy: dict[str, Any]) -> None:
    """An update launches each new instance before an old one goes (as many in service as
    desired), and stops at an instance that fails to bootstrap (it never signals) instead
    of rolling a broken bundle over the fleet."""
    group = one(proxy, "AWS::AutoScaling::AutoScalingGroup")
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MinInstancesInService"] == {"Ref": "DesiredCapacity"}
    assert int(rolling["MaxBatchSize"]) == 1
    defaults = proxy["Parameters"]
    assert int(defaults["DesiredCapacity"]["Default"]) < int(defaults["MaxSize"]["Default"])
    assert rolling["WaitOnResourceSignals"] is True
    assert "ResourceSignal" in group["CreationPolicy"]


def test_public_names_are_a_list_of_dns_names(proxy: dict[str, Any]) -> None:
    """Each name goes into NGINX's config and a shell line: lowercase DNS names only."""
    spec = proxy["Parameters"]["PublicNames"]
    assert spec["Type"] == "CommaDelimitedList"
    # CloudFormation applies a CommaDelimitedList's pattern to each value.
    pattern = re.compile(spec["AllowedPattern"])
    for good in ("hosp.example.org", "hosp-old.example.co.uk", "localhost"):
        assert pattern.fullmatch(good), good
    for bad in ("Hosp.example.org", "hosp.example.org.", "-hosp.example.org", "a'b", "a b", "*.example.org", ""):
        assert not pattern.fullmatch(bad), bad


# ------------------------------------------------------------------ bootstrap


def test_the_user_data_only_fetches_and_runs_the_bundle(proxy: dict[str, Any]) -> None:
    script, _ = _user_data(proxy)
    assert len(script.encode()) <= MAX_USER_DATA_BYTES, len(script.encode())
    assert "<<" not in script, "a here-document writes a file that belongs in the bundle"
    commands = _commands(script)
    fetch = _first(commands, r"^aws s3 cp\b.*'\$\{ProxyBundleS3Uri\}'")
    unpack = _first(commands, rf"^tar -xzf \S+ -C {BUNDLE_ROOT}\b")
    install = _first(commands, re.escape(f"{BUNDLE_ROOT}/{INSTALL_SH}") + "$")
    done = _first(commands, r"^signal 0$")
    assert fetch < unpack < install < done
    # The script it runs is where the bundle puts it.
    assert INSTALL_SH in build_bundle.members()


def test_the_user_data_gives_install_sh_every_value_it_requires(proxy: dict[str, Any]) -> None:
    script, variables = _user_data(proxy)
    environment = _install_environment(script)
    required = _required_by_install()
    assert required, "install.sh requires no value: the check below would pass on anything"
    assert set(environment) == required
    names = {m for value in environment.values() for m in re.findall(r"\$\{([\w:]+)\}", value)}
    known = set(proxy["Parameters"]) | set(proxy["Resources"]) | set(variables) | {"AWS::Region"}
    assert names <= known, names - known
    assert environment["PUBLIC_NAMES"] == "${PublicNameList}"
    assert variables["PublicNameList"] == {"Fn::Join": [",", {"Ref": "PublicNames"}]}
    assert _imported(variables[environment["ORIGIN_SECRET_ARN"].strip("${}")]) == "OriginSecretArn"


def test_the_agent_ships_to_the_templates_log_groups_which_the_role_may_write(proxy: dict[str, Any]) -> None:
    """The agent creates no log group (its role may not): each group install.sh is given
    is one of this template, and the instance role may write to it."""
    environment = _install_environment(_user_data(proxy)[0])
    groups = {environment[name] for name in ("ACCESS_LOG_GROUP", "ERROR_LOG_GROUP", "HANDOFF_LOG_GROUP")}
    writable = [
        resource
        for statement in _statements(proxy)
        if statement["Effect"] == "Allow" and "logs:PutLogEvents" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    for group in groups:
        match = re.fullmatch(r"\$\{(\w+)\}", group)
        assert match, f"a log group named by hand: {group}"
        assert match.group(1) in resources(proxy, "AWS::Logs::LogGroup"), group
        # The group's Arn attribute ends in ":*", which covers its log streams.
        assert {"Fn::GetAtt": [match.group(1), "Arn"]} in writable, group


def test_the_user_data_is_valid_bash(proxy: dict[str, Any], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to syntax-check the user data"
    script = tmp_path / "user-data.sh"
    # Fn::Sub references become placeholders; bash only parses (-n), runs nothing.
    script.write_text(re.sub(r"\$\{(?!!)[A-Za-z0-9:]+\}", "x", _user_data(proxy)[0]))
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_failing_bootstrap_step_fails_the_instance(proxy: dict[str, Any]) -> None:
    """Any failing command stops the script and signals failure to CloudFormation, so a
    broken instance never counts as healthy."""
    script, _ = _user_data(proxy)
    assert script.startswith("#!/bin/bash\n")
    commands = _commands(script)
    options = _first(commands, r"^set -[a-z]*e[a-z]* .*pipefail|^set -o errexit")
    assert "pipefail" in commands[options]
    trap = _first(commands, r"^trap .*\bERR\b")
    assert "signal 1" in commands[trap]
    # Both take effect before the first command that can fail (signal()'s body runs later).
    body_end = commands.index("}")
    first = body_end + 1 + _first(commands[body_end + 1 :], r"^(apt-get|command|aws|curl|python3|tar|install) ")
    assert max(options, trap) < first
