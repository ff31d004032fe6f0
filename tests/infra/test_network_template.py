"""infra/network/network.yaml: who can reach the fleet, the load balancers and the endpoints, and what it exports.

Each test states a property of the stack: peers are followed from the exports the other
stacks import (the fleet's group is whatever FleetSecurityGroupId names, the origin ALB
whatever OriginAlbArn names), so a renamed resource keeps its checks. Resources behind a
condition count only where the condition holds for the parameters given. cfn-lint and the
checks every template shares run in test_cfn_templates.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib import constants
from infra.nginx.render import ORIGIN_MARGIN, Tuning, worst_case
from tests.infra.cfn import INFRA, Deployed, as_list, cfn_templates, decode, resources
from tests.infra.test_audit_policy import athena_actions_called

NETWORK_TEMPLATE = INFRA / "network" / "network.yaml"

# The exports the other stacks import (hosp-reliability-<Stage>-<Key>; infra/network/README.md), exactly.
CONTRACT = (
    "FleetSecurityGroupId",
    "FleetSubnetIds",
    "OriginTargetGroupArn",
    "InternalTargetGroupArn",
    "OriginAlbArn",
    "OriginAlbDnsName",
    "InternalAlbDnsName",
    "HospBaseUrl",
    "LambdaSecurityGroupId",
    "LambdaSubnetIds",
    "ExecuteApiVpcEndpointId",
    "OriginSecretArn",
)
PARAMETERS = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
    "PrivateRouteTableIds": "rtb-0aaaaaaaaaaaaaaaa,rtb-0bbbbbbbbbbbbbbbb",
    "S3PrefixListId": "pl-7ca54015",
    "OriginCertificateArn": "arn:aws:acm:eu-west-2:123456789012:certificate/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
    "CloudFrontOriginPrefixListId": "pl-3b927c52",
    "InternalDomainName": "internal.hosp.new.example",
    "InternalCertificateArn": "arn:aws:acm:eu-west-2:123456789012:certificate/1a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
    "HospCidr": "10.20.0.0/16",
}
VPC_ORIGIN_GROUP = "sg-0cccccccccccccccc"
# The services the Lambdas and the fleet call through interface endpoints with private DNS.
INTERFACE_SERVICES = {"sqs", "athena", "secretsmanager", "logs", "execute-api"}
# ELB security policies that offer TLS 1.2 and newer only.
TLS_1_2_OR_NEWER = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)-")
_CIDR_KEYS = ("CidrIp", "CidrIpv6")


class Network(Deployed):
    """Deployed, plus what this template adds: AWS list parameters and security group ids."""

    def name(self, reference: str) -> Any:
        parameter = self.template["Parameters"].get(reference)
        if parameter and parameter["Type"].startswith("List<"):
            return self.parameters[reference].split(",")
        logical, _, attribute = reference.partition(".")
        if (self.template["Resources"].get(logical, {}).get("Type"), attribute) == (
            "AWS::EC2::SecurityGroup",
            "GroupId",
        ):
            # EC2 makes up the group's id; the logical id stands in.
            return f"sg-{logical}"
        return super().name(reference)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(NETWORK_TEMPLATE)


@pytest.fixture(params=["prefix-list", "vpc-origin-group"])
def deployed(request: pytest.FixtureRequest, template: dict[str, Any], stage: str) -> Network:
    """The stack of each stage, before and after CloudFront's VPC-origin group is known."""
    extra = {"CloudFrontVpcOriginSecurityGroupId": VPC_ORIGIN_GROUP} if request.param == "vpc-origin-group" else {}
    return Network(template, Stage=stage, **PARAMETERS, **extra)


# ------------------------------------------------------------------ helpers


def _ref(value: Any) -> str | None:
    """The logical id (or parameter) behind `!Ref X` or `!GetAtt X.Attr`, else None."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        attribute = value["Fn::GetAtt"]
        return str(attribute[0] if isinstance(attribute, list) else attribute.split(".")[0])
    return None


def _present(deployed: Deployed, type_: str) -> dict[str, dict[str, Any]]:
    """The template's resources of a type that this deployment creates."""
    return {
        name: res
        for name, res in resources(deployed.template, type_).items()
        if "Condition" not in res or deployed.condition(res["Condition"])
    }


def _exported(deployed: Deployed, key: str) -> str:
    """The logical id the export `key` names."""
    found = _ref(deployed.template["Outputs"][key]["Value"])
    assert found in deployed.template["Resources"], f"{key} names no resource: {found}"
    return str(found)


def _rules(deployed: Deployed, direction: str) -> list[tuple[str, dict[str, Any]]]:
    """(group, rule) for every rule of `direction` ("Ingress" or "Egress"), inline or separate."""
    rules: list[tuple[str, dict[str, Any]]] = []
    for name, group in _present(deployed, "AWS::EC2::SecurityGroup").items():
        rules += [(name, rule) for rule in group["Properties"].get(f"SecurityGroup{direction}", [])]
    for separate in _present(deployed, f"AWS::EC2::SecurityGroup{direction}").values():
        owner = _ref(separate["Properties"]["GroupId"])
        assert owner, separate
        rules.append((owner, separate["Properties"]))
    return rules


def _peer(rule: dict[str, Any]) -> tuple[str, str | None]:
    """What a rule admits or reaches: ("group"|"prefix-list"|"cidr", logical id or parameter)."""
    for key in ("SourceSecurityGroupId", "DestinationSecurityGroupId"):
        if key in rule:
            return "group", _ref(rule[key])
    for key in ("SourcePrefixListId", "DestinationPrefixListId"):
        if key in rule:
            return "prefix-list", _ref(rule[key])
    for key in _CIDR_KEYS:
        if key in rule:
            return "cidr", _ref(rule[key]) or str(rule[key])
    pytest.fail(f"a rule with no peer: {rule}")


def _admitted(deployed: Deployed, group: str) -> set[tuple[int, str, str | None]]:
    """(port, kind of peer, peer) of every ingress rule of `group`; single TCP ports only."""
    admitted = set()
    for owner, rule in _rules(deployed, "Ingress"):
        if owner == group:
            assert str(rule["IpProtocol"]) in ("tcp", "6"), rule
            assert rule["FromPort"] == rule["ToPort"], rule
            admitted.add((int(rule["FromPort"]), *_peer(rule)))
    return admitted


def _egress(deployed: Deployed, group: str) -> set[tuple[str, str | None]]:
    """(kind of peer, peer) of every egress rule of `group`, without the no-other-traffic placeholder."""
    return {
        _peer(rule)
        for owner, rule in _rules(deployed, "Egress")
        if owner == group and rule.get("CidrIp") != "255.255.255.255/32"
    }


def _load_balancer(deployed: Deployed, key: str) -> dict[str, Any]:
    balancer: dict[str, Any] = deployed.template["Resources"][_exported(deployed, key)]
    assert balancer["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"
    return balancer


def _groups_of(balancer: dict[str, Any]) -> set[str]:
    return {str(_ref(group)) for group in as_list(balancer["Properties"]["SecurityGroups"])}


def _listeners(deployed: Deployed, balancer: str) -> list[dict[str, Any]]:
    return [
        listener["Properties"]
        for listener in _present(deployed, "AWS::ElasticLoadBalancingV2::Listener").values()
        if _ref(listener["Properties"]["LoadBalancerArn"]) == balancer
    ]


def _attributes(resource: dict[str, Any], deployed: Deployed, key: str) -> dict[str, str]:
    evaluated = deployed.value(resource["Properties"].get(key, []))
    return {attribute["Key"]: str(attribute["Value"]) for attribute in evaluated}


def _endpoint_groups(deployed: Deployed) -> dict[str, set[str]]:
    """The security groups of each interface endpoint, by logical id."""
    return {
        name: {str(_ref(group)) for group in endpoint["Properties"].get("SecurityGroupIds", [])}
        for name, endpoint in _present(deployed, "AWS::EC2::VPCEndpoint").items()
        if endpoint["Properties"].get("VpcEndpointType") == "Interface"
    }


def _execute_api_groups(deployed: Deployed) -> set[str]:
    """The groups of the endpoint the private Chalice API admits (ExecuteApiVpcEndpointId)."""
    groups = _endpoint_groups(deployed)[_exported(deployed, "ExecuteApiVpcEndpointId")]
    assert groups
    return groups


def _other_endpoint_groups(deployed: Deployed) -> set[str]:
    """The groups of every interface endpoint but the execute-api one."""
    api = _exported(deployed, "ExecuteApiVpcEndpointId")
    return {group for name, groups in _endpoint_groups(deployed).items() if name != api for group in groups}


def _slowest_answer() -> float:
    """docs/proxy.md: the proxy's slowest answer with its defaults, plus the margin."""
    return worst_case(Tuning()) + ORIGIN_MARGIN


# ------------------------------------------------------------------- found


def test_the_template_is_linted_with_the_others() -> None:
    assert NETWORK_TEMPLATE in cfn_templates()


# ----------------------------------------------------------------- exports


def test_the_stack_exports_exactly_the_contracts_names(deployed: Deployed, stage: str) -> None:
    outputs = deployed.template["Outputs"]
    assert set(outputs) == set(CONTRACT)
    for key, output in outputs.items():
        assert deployed.value(output["Export"]["Name"]) == constants.stack(stage, key)


def test_the_subnet_exports_are_the_private_subnets_comma_joined(deployed: Deployed) -> None:
    for key in ("FleetSubnetIds", "LambdaSubnetIds"):
        assert deployed.value(deployed.template["Outputs"][key]["Value"]) == PARAMETERS["PrivateSubnetIds"]


def test_each_export_names_the_resource_it_describes(deployed: Deployed) -> None:
    kinds = {
        "FleetSecurityGroupId": "AWS::EC2::SecurityGroup",
        "LambdaSecurityGroupId": "AWS::EC2::SecurityGroup",
        "OriginTargetGroupArn": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "InternalTargetGroupArn": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "OriginAlbArn": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "OriginAlbDnsName": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "InternalAlbDnsName": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "ExecuteApiVpcEndpointId": "AWS::EC2::VPCEndpoint",
        "OriginSecretArn": "AWS::SecretsManager::Secret",
    }
    for key, type_ in kinds.items():
        assert deployed.template["Resources"][_exported(deployed, key)]["Type"] == type_, key
    assert _exported(deployed, "OriginAlbArn") == _exported(deployed, "OriginAlbDnsName")
    assert _exported(deployed, "OriginAlbArn") != _exported(deployed, "InternalAlbDnsName")
    assert _exported(deployed, "FleetSecurityGroupId") != _exported(deployed, "LambdaSecurityGroupId")
    endpoint = deployed.template["Resources"][_exported(deployed, "ExecuteApiVpcEndpointId")]
    assert deployed.value(endpoint["Properties"]["ServiceName"]).endswith(".execute-api")


# ------------------------------------------------------- who reaches whom


def test_the_fleet_admits_only_its_two_load_balancers(deployed: Deployed) -> None:
    """Port 80 from the origin ALB's group, 8081 from the internal ALB's: no address range,
    no prefix list, nothing else."""
    fleet = _exported(deployed, "FleetSecurityGroupId")
    (origin_group,) = _groups_of(_load_balancer(deployed, "OriginAlbArn"))
    (internal_group,) = _groups_of(_load_balancer(deployed, "InternalAlbDnsName"))
    assert _admitted(deployed, fleet) == {(80, "group", origin_group), (8081, "group", internal_group)}


def test_the_internal_alb_admits_only_the_lambdas(deployed: Deployed) -> None:
    (group,) = _groups_of(_load_balancer(deployed, "InternalAlbDnsName"))
    lambdas = _exported(deployed, "LambdaSecurityGroupId")
    assert _admitted(deployed, group) == {(443, "group", lambdas)}


def test_the_origin_alb_admits_only_cloudfront(deployed: Deployed) -> None:
    """CloudFront's origin-facing prefix list until its VPC-origin group is given, then
    that group alone."""
    (group,) = _groups_of(_load_balancer(deployed, "OriginAlbArn"))
    admitted = _admitted(deployed, group)
    if deployed.parameters["CloudFrontVpcOriginSecurityGroupId"]:
        assert admitted == {(443, "group", "CloudFrontVpcOriginSecurityGroupId")}
    else:
        assert admitted == {(443, "prefix-list", "CloudFrontOriginPrefixListId")}


def test_the_load_balancers_reach_only_the_fleet_on_its_listeners(deployed: Deployed) -> None:
    fleet = _exported(deployed, "FleetSecurityGroupId")
    (origin_group,) = _groups_of(_load_balancer(deployed, "OriginAlbArn"))
    (internal_group,) = _groups_of(_load_balancer(deployed, "InternalAlbDnsName"))
    assert _egress(deployed, str(origin_group)) == {("group", fleet)}
    assert _egress(deployed, str(internal_group)) == {("group", fleet)}


def test_the_lambdas_reach_only_the_internal_alb_and_the_endpoints(deployed: Deployed) -> None:
    """The endpoints of the AWS services they call; not the execute-api one."""
    lambdas = _exported(deployed, "LambdaSecurityGroupId")
    (internal_group,) = _groups_of(_load_balancer(deployed, "InternalAlbDnsName"))
    (endpoints,) = _other_endpoint_groups(deployed)
    assert _egress(deployed, lambdas) == {
        ("group", internal_group),
        ("group", endpoints),
        ("prefix-list", "S3PrefixListId"),
    }


def test_the_fleet_reaches_only_hosp_the_endpoints_and_s3(deployed: Deployed) -> None:
    fleet = _exported(deployed, "FleetSecurityGroupId")
    (endpoints,) = _other_endpoint_groups(deployed)
    (api,) = _execute_api_groups(deployed)
    assert _egress(deployed, fleet) == {
        ("cidr", "HospCidr"),
        ("group", endpoints),
        ("group", api),
        ("prefix-list", "S3PrefixListId"),
    }
    (hosp,) = [rule for owner, rule in _rules(deployed, "Egress") if owner == fleet and _ref(rule.get("CidrIp"))]
    assert _ref(hosp["FromPort"]) == _ref(hosp["ToPort"]) == "HospPort"


def test_the_endpoints_admit_only_the_lambdas_and_the_fleet(deployed: Deployed) -> None:
    (group,) = _other_endpoint_groups(deployed)
    fleet = _exported(deployed, "FleetSecurityGroupId")
    lambdas = _exported(deployed, "LambdaSecurityGroupId")
    assert _admitted(deployed, str(group)) == {(443, "group", fleet), (443, "group", lambdas)}


def test_the_execute_api_endpoint_admits_only_the_fleet(deployed: Deployed) -> None:
    """The private API (the screen route, /audit) is called through the fleet's NGINX and
    its access log; its endpoint's groups admit the fleet alone and serve no other endpoint."""
    fleet = _exported(deployed, "FleetSecurityGroupId")
    groups = _execute_api_groups(deployed)
    for group in groups:
        assert _admitted(deployed, group) == {(443, "group", fleet)}, group
        assert _egress(deployed, group) == set(), group
    assert not groups & _other_endpoint_groups(deployed)


def test_the_lambdas_have_no_path_to_the_private_api(deployed: Deployed) -> None:
    """Neither side lets the connection through: the Lambdas' group sends nothing to the
    execute-api endpoint's groups nor to an address range (which could hold the endpoint's
    interfaces), and those groups admit nothing of the Lambdas'."""
    lambdas = _exported(deployed, "LambdaSecurityGroupId")
    groups = _execute_api_groups(deployed)
    reached = _egress(deployed, lambdas)
    assert not {("group", group) for group in groups} & reached
    assert not {peer for peer in reached if peer[0] == "cidr"}
    for group in groups:
        assert not {peer for _, kind, peer in _admitted(deployed, group) if kind != "group" or peer == lambdas}


def test_only_the_fleet_may_reach_the_internet_and_only_when_asked(template: dict[str, Any]) -> None:
    """FleetHttpsToInternet (Debian's mirror at boot, through a NAT gateway the VPC
    provides) adds HTTPS to any address on the fleet's group, and nothing else anywhere."""
    closed = Network(template, Stage="prod", **PARAMETERS)
    opened = Network(template, Stage="prod", FleetHttpsToInternet="true", **PARAMETERS)
    fleet = _exported(opened, "FleetSecurityGroupId")
    added = [(owner, rule) for owner, rule in _rules(opened, "Egress") if (owner, rule) not in _rules(closed, "Egress")]
    assert [(owner, rule["FromPort"], rule["ToPort"], rule["CidrIp"]) for owner, rule in added] == [
        (fleet, 443, 443, "0.0.0.0/0")
    ]


def test_nothing_routes_to_the_internet(deployed: Deployed) -> None:
    for type_ in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::Route", "AWS::EC2::EIP"):
        assert not _present(deployed, type_), type_
    for _, rule in _rules(deployed, "Egress"):
        assert rule.get("CidrIp") != "0.0.0.0/0", rule
        assert rule.get("CidrIpv6") != "::/0", rule


# ----------------------------------------------------------- load balancers


def test_both_load_balancers_are_internal(deployed: Deployed) -> None:
    for key in ("OriginAlbArn", "InternalAlbDnsName"):
        properties = _load_balancer(deployed, key)["Properties"]
        assert properties["Scheme"] == "internal", key
        assert properties["Type"] == "application", key


def test_every_listener_is_https_with_tls_1_2_or_newer(deployed: Deployed) -> None:
    listeners = _present(deployed, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert listeners
    for listener in listeners:
        properties = listener["Properties"]
        assert properties["Protocol"] == "HTTPS"
        assert properties["Port"] == 443
        assert TLS_1_2_OR_NEWER.match(properties["SslPolicy"]), properties["SslPolicy"]
        assert properties["Certificates"]


def test_the_origin_alb_presents_the_public_names_certificate(deployed: Deployed) -> None:
    (listener,) = _listeners(deployed, _exported(deployed, "OriginAlbArn"))
    assert deployed.value(listener["Certificates"]) == [{"CertificateArn": PARAMETERS["OriginCertificateArn"]}]


def test_each_load_balancer_forwards_only_to_its_own_listener_of_the_fleet(deployed: Deployed) -> None:
    """CloudFront's ALB has no path to the internal listener (8081), which asks for no origin
    secret; the Lambdas' ALB has none to the public one."""
    expected = {"OriginAlbArn": ("OriginTargetGroupArn", 80), "InternalAlbDnsName": ("InternalTargetGroupArn", 8081)}
    for balancer_key, (group_key, port) in expected.items():
        balancer = _exported(deployed, balancer_key)
        target_group = _exported(deployed, group_key)
        forwarded = {
            _ref(action["TargetGroupArn"])
            for listener in _listeners(deployed, balancer)
            for action in listener["DefaultActions"]
        }
        assert forwarded == {target_group}, balancer_key
        assert not _present(deployed, "AWS::ElasticLoadBalancingV2::ListenerRule")
        assert deployed.template["Resources"][target_group]["Properties"]["Port"] == port


def test_target_groups_check_the_proxys_health_endpoint(deployed: Deployed) -> None:
    for key in ("OriginTargetGroupArn", "InternalTargetGroupArn"):
        properties = deployed.template["Resources"][_exported(deployed, key)]["Properties"]
        assert properties["HealthCheckPath"] == "/_proxy/health", key
        assert properties["Protocol"] == "HTTP", key
        assert properties.get("HealthCheckPort", "traffic-port") == "traffic-port", key


def test_a_leaving_instance_finishes_its_slowest_request(deployed: Deployed) -> None:
    """The deregistration delay outlasts the proxy's slowest answer and CloudFront's wait."""
    for key in ("OriginTargetGroupArn", "InternalTargetGroupArn"):
        group = deployed.template["Resources"][_exported(deployed, key)]
        delay = int(_attributes(group, deployed, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"])
        assert delay > _slowest_answer(), key
        assert delay > Tuning().origin_timeout, key


def test_the_load_balancers_never_cut_a_request_the_proxy_is_still_answering(deployed: Deployed) -> None:
    """The idle timeout outlasts the slowest answer and CloudFront's origin timeout, and stays
    below NGINX's client keep-alive (75 s, its default), so the ALB closes idle connections first."""
    for key in ("OriginAlbArn", "InternalAlbDnsName"):
        attributes = _attributes(_load_balancer(deployed, key), deployed, "LoadBalancerAttributes")
        idle = int(attributes["idle_timeout.timeout_seconds"])
        assert _slowest_answer() < idle, key
        assert Tuning().origin_timeout < idle < 75, key


# ------------------------------------------------------- the Lambdas' route


def test_the_lambdas_reach_hosp_over_https_on_a_name_resolved_in_the_vpc(deployed: Deployed) -> None:
    name = PARAMETERS["InternalDomainName"]
    assert deployed.value(deployed.template["Outputs"]["HospBaseUrl"]["Value"]) == f"https://{name}"
    (zone_id, zone), *others = _present(deployed, "AWS::Route53::HostedZone").items()
    assert not others
    assert deployed.value(zone["Properties"]["Name"]) == name
    assert [_ref(vpc["VPCId"]) for vpc in zone["Properties"]["VPCs"]] == ["VpcId"]
    internal = _exported(deployed, "InternalAlbDnsName")
    records = [
        record["Properties"]
        for record in _present(deployed, "AWS::Route53::RecordSet").values()
        if _ref(record["Properties"]["HostedZoneId"]) == zone_id
    ]
    assert [deployed.value(r["Name"]) for r in records] == [name]
    assert _ref(records[0]["AliasTarget"]["DNSName"]) == internal
    (listener,) = _listeners(deployed, internal)
    assert _ref(listener["Certificates"][0]["CertificateArn"]) == "InternalCertificateArn"


# ---------------------------------------------------------------- endpoints


def _interface_endpoints(deployed: Deployed) -> dict[str, dict[str, Any]]:
    """Interface endpoints by service (the last part of com.amazonaws.<region>.<service>)."""
    found = {}
    for endpoint in _present(deployed, "AWS::EC2::VPCEndpoint").values():
        properties = deployed.value(endpoint["Properties"])
        if properties.get("VpcEndpointType") == "Interface":
            found[properties["ServiceName"].rsplit(".", 1)[-1]] = properties
    return found


def test_the_lambdas_services_have_interface_endpoints_with_private_dns(deployed: Deployed) -> None:
    endpoints = _interface_endpoints(deployed)
    assert set(endpoints) >= INTERFACE_SERVICES
    for service, endpoint in endpoints.items():
        assert endpoint["PrivateDnsEnabled"] is True, service
        assert endpoint["SubnetIds"] == PARAMETERS["PrivateSubnetIds"].split(","), service


def test_s3_is_reached_through_a_gateway_endpoint_on_the_private_route_tables(deployed: Deployed) -> None:
    gateways = [
        deployed.value(endpoint["Properties"])
        for endpoint in _present(deployed, "AWS::EC2::VPCEndpoint").values()
        if endpoint["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    assert [g["ServiceName"] for g in gateways] == ["com.amazonaws.eu-west-2.s3"]
    assert gateways[0]["RouteTableIds"] == PARAMETERS["PrivateRouteTableIds"].split(",")


def test_endpoint_policies_name_their_actions_and_the_stages_resources(deployed: Deployed, stage: str) -> None:
    """Where an endpoint has a policy, it allows named actions on this stage's resources of
    this account only: no wildcard action, and every resource carries the stage's prefix."""
    policies = {
        service: endpoint["PolicyDocument"]
        for service, endpoint in _interface_endpoints(deployed).items()
        if "PolicyDocument" in endpoint
    }
    assert set(policies) >= INTERFACE_SERVICES
    for service, policy in policies.items():
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", service
            assert all("*" not in action for action in as_list(statement["Action"])), service
            for resource in as_list(statement["Resource"]):
                assert ":123456789012:" in resource, (service, resource)
                if service != "execute-api":
                    assert f"{constants.prefix(stage)}-" in resource or f"{constants.APP_NAME}/{stage}/" in resource


def test_the_athena_endpoint_allows_only_the_calls_the_code_makes(deployed: Deployed) -> None:
    (policy,) = [e["PolicyDocument"] for s, e in _interface_endpoints(deployed).items() if s == "athena"]
    assert {a for statement in policy["Statement"] for a in as_list(statement["Action"])} == athena_actions_called()


# ------------------------------------------------------------ origin secret

# Any change to GenerateSecretString (a new key, another length) makes CloudFormation
# generate the whole secret again on the next deploy: a new "current" and "previous"
# emptied at once, so the fleet refuses CloudFront's old value before CloudFront sends
# the new one, an outage. The generation settings are frozen; a new value goes through
# the rotation of infra/cloudfront/README.md, which never touches this template.
FROZEN_GENERATION = {
    "SecretStringTemplate": '{"previous": ""}',
    "GenerateStringKey": "current",
    "PasswordLength": 48,
    "ExcludePunctuation": True,
}


def test_the_origin_secrets_generation_settings_never_change(deployed: Deployed) -> None:
    secret = deployed.properties(_exported(deployed, "OriginSecretArn"))
    assert secret["GenerateSecretString"] == FROZEN_GENERATION, (
        "changing GenerateSecretString regenerates both values of the origin secret at once (an outage "
        "until CloudFront follows): rotate it as infra/cloudfront/README.md says instead"
    )


def test_the_origin_secret_is_generated_in_the_contracts_shape(deployed: Deployed, stage: str) -> None:
    """{"current": 48 letters and digits, "previous": ""}, under the name the edge resolves."""
    secret = deployed.properties(_exported(deployed, "OriginSecretArn"))
    assert secret["Name"] == f"{constants.APP_NAME}/{stage}/origin-verify"
    assert "SecretString" not in secret, "the value must be generated, never written here"
    generated = secret["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"previous": ""}
    assert generated["GenerateStringKey"] == "current"
    assert generated["PasswordLength"] == 48
    assert generated["ExcludePunctuation"] is True
    assert not generated.get("IncludeSpace", False)
    assert not {"ExcludeUppercase", "ExcludeLowercase", "ExcludeNumbers"} & {
        key for key, value in generated.items() if value is True
    }
