"""CloudFormation templates under infra/: cfn-lint clean, and the proxy fleet's security.

cfn-lint is a dev requirement (requirements-dev.txt); `make test` installs it. A missing
cfn-lint fails these tests rather than skipping them: an unlinted template must not pass
as a green run.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"

MISSING_CFN_LINT = (
    "cfn-lint is not installed in this Python environment; `make test` installs it "
    "(it is pinned in requirements-dev.txt)."
)

# A file is a CloudFormation template when it has either top-level key.
_CFN_MARKER = re.compile(r"^(AWSTemplateFormatVersion|Resources)\s*:", re.MULTILINE)


def _cfn_templates() -> list[Path]:
    files = sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])
    return [f for f in files if _CFN_MARKER.search(f.read_text(encoding="utf-8"))]


def _import_cfnlint(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(MISSING_CFN_LINT, pytrace=False)


@pytest.fixture(scope="session")
def cfnlint_api() -> ModuleType:
    return _import_cfnlint("cfnlint.api")


@pytest.fixture(scope="module")
def proxy() -> dict[str, Any]:
    """The proxy template, parsed by cfn-lint's decoder so that !Ref and friends parse."""
    decode = _import_cfnlint("cfnlint.decode")
    template, matches = decode.decode(str(PROXY_TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert isinstance(template, dict)
    return template


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_}


def _one(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = _resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))


def _user_data(template: dict[str, Any]) -> str:
    data = _one(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    sub = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


def _heredoc(script: str, target: str) -> str:
    """Body of the `cat > target <<'EOF'` here-document in script."""
    match = re.search(rf"^\s*cat > {re.escape(target)} <<'EOF'\n(.*?)^\s*EOF$", script, re.S | re.M)
    assert match, f"no here-document writes {target}"
    return match.group(1)


# ------------------------------------------------------------------ cfn-lint


def test_infra_has_cloudformation_templates() -> None:
    assert PROXY_TEMPLATE in _cfn_templates()


@pytest.mark.parametrize("template", _cfn_templates(), ids=lambda p: str(p.relative_to(REPO)))
def test_template_is_cfn_lint_clean(cfnlint_api: ModuleType, template: Path) -> None:
    # Same rules and defaults as the `cfn-lint <file>` command: errors and warnings.
    findings = cfnlint_api.lint_file(template)
    assert [str(f) for f in findings] == []


def test_cfn_lint_reports_warnings(cfnlint_api: ModuleType) -> None:
    """Guards the test above against a linter that silently checks nothing."""
    broken = (
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Parameters:\n  Unused:\n    Type: String\n"
        "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
    )
    assert {f.rule.id for f in cfnlint_api.lint(broken)} == {"W2001"}


# ------------------------------------------------------- proxy fleet security


def test_instances_require_imdsv2(proxy: dict[str, Any]) -> None:
    data = _one(proxy, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


def test_root_volume_is_encrypted_gp3(proxy: dict[str, Any]) -> None:
    data = _one(proxy, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    for mapping in data["BlockDeviceMappings"]:
        assert mapping["Ebs"]["Encrypted"] is True
        assert mapping["Ebs"]["VolumeType"] == "gp3"


def test_only_cloudfront_reaches_the_proxy(proxy: dict[str, Any]) -> None:
    # Rules declared as separate resources would bypass the checks below.
    assert _resources(proxy, "AWS::EC2::SecurityGroupIngress") == {}
    group = _one(proxy, "AWS::EC2::SecurityGroup")["Properties"]
    assert group["SecurityGroupIngress"] == [
        {
            "Description": "HTTP from CloudFront origin-facing servers",
            "IpProtocol": "tcp",
            "FromPort": 80,
            "ToPort": 80,
            "SourcePrefixListId": {"Ref": "CloudFrontOriginPrefixListId"},
        }
    ]
    for rule in group["SecurityGroupIngress"]:
        assert rule.get("CidrIp") != "0.0.0.0/0"
        assert rule.get("CidrIpv6") != "::/0"


def test_fleet_spans_the_subnets_parameter(proxy: dict[str, Any]) -> None:
    assert proxy["Parameters"]["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    group = _one(proxy, "AWS::AutoScaling::AutoScalingGroup")
    assert group["Properties"]["VPCZoneIdentifier"] == {"Ref": "SubnetIds"}
    assert group["Properties"]["HealthCheckType"] == "EC2"
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MinInstancesInService"] == 1


def test_inline_policies_have_no_wildcard_resources(proxy: dict[str, Any]) -> None:
    role = _one(proxy, "AWS::IAM::Role")["Properties"]
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement["Resource"]
            if not isinstance(resources, list):
                resources = [resources]
            assert "*" not in resources, policy["PolicyName"]
            assert "*" not in statement["Action"], policy["PolicyName"]


def test_user_data_renders_the_production_config(proxy: dict[str, Any]) -> None:
    script = _user_data(proxy)
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    render = script.index("render.py --variant production")
    assert render < script.index("nginx -t") < script.index("systemctl enable --now nginx")
    assert "--output /etc/nginx/nginx.conf" in script
    assert "Environment=TZ=UTC" in _heredoc(script, "/etc/systemd/system/nginx.service.d/10-hosp-proxy.conf")
    timer = _heredoc(script, "/etc/systemd/system/hosp-proxy-dns-refresh.timer")
    assert "OnUnitActiveSec=30s" in timer


def test_user_data_ships_both_logs(proxy: dict[str, Any]) -> None:
    config = json.loads(_heredoc(_user_data(proxy), "/opt/aws/amazon-cloudwatch-agent/etc/hosp-proxy.json"))
    shipped = {
        entry["file_path"]: entry["log_group_name"]
        for entry in config["logs"]["logs_collected"]["files"]["collect_list"]
    }
    assert shipped == {
        "/var/log/hosp-proxy/access.json": "${AccessLogGroup}",
        "/var/log/hosp-proxy/error.log": "${ErrorLogGroup}",
    }


def test_user_data_is_valid_bash(proxy: dict[str, Any], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to syntax-check the user data"
    script = tmp_path / "user-data.sh"
    # Fn::Sub references become placeholders; bash only parses (-n), runs nothing.
    script.write_text(re.sub(r"\$\{(?!!)[A-Za-z0-9:]+\}", "x", _user_data(proxy)))
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_log_groups_are_retained(proxy: dict[str, Any]) -> None:
    groups = _resources(proxy, "AWS::Logs::LogGroup")
    names = {g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values()}
    assert names == {
        "/hosp-reliability/${Stage}/proxy-access",
        "/hosp-reliability/${Stage}/proxy-error",
    }
    for group in groups.values():
        assert group["DeletionPolicy"] == "Retain"
        assert group["UpdateReplacePolicy"] == "Retain"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
