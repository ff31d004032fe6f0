"""infra/cloudfront/distribution.yaml: HTTPS only, no caching, security headers, a private origin outlasting the proxy.

Each test states a property of the deployed distribution, evaluated for each stage with
tests/infra/cfn.py's Deployed, rather than the template's text. cfn-lint runs on it with
every other template (test_cfn_templates.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import constants
from infra.nginx.render import ORIGIN_MARGIN, Tuning, worst_case
from tests.infra.cfn import INFRA, Deployed, as_list, cfn_templates, decode, one, resources

DISTRIBUTION_TEMPLATE = INFRA / "cloudfront" / "distribution.yaml"
# The AWS managed cache policy CachingDisabled.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ONE_YEAR = 365 * 24 * 3600
EVERY_METHOD = {"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"}
FUNCTION = "arn:aws:cloudfront::123456789012:function/hosp-reliability-prod-redirect"
PARAMETERS = {
    "DomainName": "hosp.new.example",
    "OldDomainNames": "hosp.old.example,www.hosp.old.example",
    "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
}


class Edge(Deployed):
    """Deployed, plus what this template adds: a VPC origin and an imported value.

    An import stays {"Fn::ImportValue": <export name>}, so a test compares it with the
    network stack's export name (infra/network/network.yaml's contract).
    """

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and list(node) == ["Fn::ImportValue"]:
            return {"Fn::ImportValue": self.value(node["Fn::ImportValue"])}
        return super().value(node)

    def name(self, reference: str) -> Any:
        logical, _, attribute = reference.partition(".")
        if self.template["Resources"].get(logical, {}).get("Type") == "AWS::CloudFront::VpcOrigin":
            # CloudFront makes up the VPC origin's id; the logical id stands in (Ref and Id).
            assert attribute in ("", "Id"), reference
            return f"vpc-origin-{logical}"
        return super().name(reference)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(DISTRIBUTION_TEMPLATE)


@pytest.fixture
def deployed(template: dict[str, Any], stage: str) -> Edge:
    return Edge(template, Stage=stage, **PARAMETERS)


# ------------------------------------------------------------------ helpers


def _logical(template: dict[str, Any], type_: str) -> str:
    (logical,) = resources(template, type_)
    return logical


def _config(deployed: Deployed) -> dict[str, Any]:
    distribution = deployed.properties(_logical(deployed.template, "AWS::CloudFront::Distribution"))
    config: dict[str, Any] = distribution["DistributionConfig"]
    return config


def _behaviours(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]


def _policy(deployed: Deployed, type_: str, policy_id: str, config_key: str) -> dict[str, Any]:
    """The template's policy of `type_` whose id is `policy_id`."""
    found = [logical for logical in resources(deployed.template, type_) if deployed.name(logical) == policy_id]
    assert len(found) == 1, f"{policy_id} is not a {type_} of the template"
    policy: dict[str, Any] = deployed.properties(found[0])[config_key]
    return policy


def _origins(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {origin["Id"]: origin for origin in config["Origins"]}


# ------------------------------------------------------------------- found


def test_the_template_is_linted_with_the_others() -> None:
    assert DISTRIBUTION_TEMPLATE in cfn_templates()


# --------------------------------------------------------------------- TLS


def test_every_behaviour_redirects_to_https(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https", behaviour.get("PathPattern", "default")


def test_viewers_get_tls_1_2_or_newer_with_sni_over_http2_and_http3(deployed: Deployed) -> None:
    config = _config(deployed)
    certificate = config["ViewerCertificate"]
    assert certificate["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert certificate["SslSupportMethod"] == "sni-only"
    assert certificate["AcmCertificateArn"] == PARAMETERS["CertificateArn"]
    assert config["HttpVersion"] == "http2and3"


def test_the_new_and_the_old_names_are_served(deployed: Deployed) -> None:
    aliases = _config(deployed)["Aliases"]
    assert aliases == [PARAMETERS["DomainName"], *PARAMETERS["OldDomainNames"].split(",")]


def test_without_old_names_only_the_new_one_is_served(template: dict[str, Any]) -> None:
    deployed = Edge(template, Stage="prod", **{**PARAMETERS, "OldDomainNames": ""})
    assert _config(deployed)["Aliases"] == [PARAMETERS["DomainName"]]


# ----------------------------------------------------------------- headers


def _headers_policy(deployed: Deployed, behaviour: dict[str, Any]) -> dict[str, Any]:
    """The response headers policy a behaviour uses."""
    return _policy(
        deployed,
        "AWS::CloudFront::ResponseHeadersPolicy",
        behaviour["ResponseHeadersPolicyId"],
        "ResponseHeadersPolicyConfig",
    )


def test_answers_carry_hsts_for_a_year_with_subdomains(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        policy = _headers_policy(deployed, behaviour)
        hsts = policy["SecurityHeadersConfig"]["StrictTransportSecurity"]
        assert int(hsts["AccessControlMaxAgeSec"]) >= ONE_YEAR
        assert hsts["IncludeSubdomains"] is True
        assert hsts["Override"] is True


def test_hsts_can_be_shortened_for_the_domain_moves_roll_back_window(template: dict[str, Any]) -> None:
    """docs/runbooks/domain-migration.md lowers it while the old name could still go back
    to plain HTTP; the default, which every stage file keeps, is a year."""
    parameter = template["Parameters"]["HstsMaxAgeSeconds"]
    assert parameter["Default"] >= ONE_YEAR
    assert parameter["MinValue"] >= 300
    deployed = Edge(template, Stage="prod", **{**PARAMETERS, "HstsMaxAgeSeconds": "300"})
    (behaviour,) = _behaviours(_config(deployed))
    policy = _headers_policy(deployed, behaviour)
    assert int(policy["SecurityHeadersConfig"]["StrictTransportSecurity"]["AccessControlMaxAgeSec"]) == 300
    for stage in ("dev", "prod"):
        edge = json.loads((INFRA / "app" / f"deploy-{stage}.json").read_text())["parameters"]["edge"]
        assert "HstsMaxAgeSeconds" not in edge


def test_answers_carry_the_usual_security_headers(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        policy = _headers_policy(deployed, behaviour)
        headers = policy["SecurityHeadersConfig"]
        assert headers["ContentTypeOptions"]["Override"] is True
        assert headers["FrameOptions"]["FrameOption"] == "DENY"
        assert headers["ReferrerPolicy"]["ReferrerPolicy"]
        assert headers["XSSProtection"]["Protection"] is True


# ----------------------------------------------------------------- caching


def test_nothing_is_cached_and_every_method_passes(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        assert behaviour["CachePolicyId"] == CACHING_DISABLED
        assert set(behaviour["AllowedMethods"]) == EVERY_METHOD
        assert "ForwardedValues" not in behaviour, "legacy cache settings"


def test_the_origin_gets_host_authorization_and_the_viewer_address(deployed: Deployed) -> None:
    """An origin request policy may not name Authorization; with caching disabled, one that
    forwards every viewer header carries it (and Host) to the origin, as AWS documents."""
    for behaviour in _behaviours(_config(deployed)):
        policy = _policy(
            deployed,
            "AWS::CloudFront::OriginRequestPolicy",
            behaviour["OriginRequestPolicyId"],
            "OriginRequestPolicyConfig",
        )
        headers = policy["HeadersConfig"]
        assert headers["HeaderBehavior"] in ("allViewer", "allViewerAndWhitelistCloudFront")
        assert "CloudFront-Viewer-Address" in headers.get("Headers", [])
        assert policy["QueryStringsConfig"]["QueryStringBehavior"] == "all"


# ------------------------------------------------------------------ origin


def _vpc_origin(deployed: Deployed, origin: dict[str, Any]) -> dict[str, Any]:
    """The endpoint config of the template's VPC origin that `origin` uses."""
    found = [
        logical
        for logical in resources(deployed.template, "AWS::CloudFront::VpcOrigin")
        if deployed.name(f"{logical}.Id") == origin["VpcOriginConfig"]["VpcOriginId"]
    ]
    assert len(found) == 1, f"{origin['Id']} uses no VPC origin of the template"
    config: dict[str, Any] = deployed.properties(found[0])["VpcOriginEndpointConfig"]
    return config


def test_every_origin_is_the_stages_private_alb_through_a_vpc_origin(deployed: Edge, stage: str) -> None:
    """No public custom origin: CloudFront reaches the fleet only through the network
    stack's internal ALB, exported as hosp-reliability-<stage>-OriginAlbArn."""
    for origin in _config(deployed)["Origins"]:
        assert "CustomOriginConfig" not in origin, origin["Id"]
        endpoint = _vpc_origin(deployed, origin)
        assert endpoint["Arn"] == {"Fn::ImportValue": constants.stack(stage, "OriginAlbArn")}


def test_the_origin_is_reached_over_https_only_with_tls_1_2(deployed: Edge) -> None:
    for origin in _config(deployed)["Origins"]:
        endpoint = _vpc_origin(deployed, origin)
        assert endpoint["OriginProtocolPolicy"] == "https-only"
        assert endpoint["OriginSSLProtocols"] == ["TLSv1.2"]
        assert endpoint["HTTPSPort"] == 443


def test_the_origin_is_named_for_the_certificate_the_alb_presents(deployed: Edge) -> None:
    """CloudFront checks the origin's certificate against this name (its SNI) or the
    forwarded Host; the ALB presents a certificate for the public names."""
    for origin in _config(deployed)["Origins"]:
        assert origin["DomainName"] == PARAMETERS["DomainName"]


def test_cloudfront_waits_longer_than_the_proxys_slowest_answer(deployed: Edge) -> None:
    """docs/proxy.md: the slowest answer plus a margin fits within the origin timeout, so
    CloudFront never gives up on a write HOSP may still commit."""
    config = _config(deployed)
    origins = _origins(config)
    for behaviour in _behaviours(config):
        timeout = origins[behaviour["TargetOriginId"]]["VpcOriginConfig"]["OriginReadTimeout"]
        assert timeout >= worst_case(Tuning()) + ORIGIN_MARGIN
        assert timeout >= Tuning().origin_timeout


def test_the_secret_header_comes_from_the_stages_secret(deployed: Edge, stage: str) -> None:
    """A Secrets Manager dynamic reference to the "current" key of the network stack's
    secret, resolved by CloudFormation: the value is in no parameter and no file."""
    reference = f"{{{{resolve:secretsmanager:{constants.APP_NAME}/{stage}/origin-verify:SecretString:current}}}}"
    for origin in _config(deployed)["Origins"]:
        headers = {header["HeaderName"]: header["HeaderValue"] for header in origin["OriginCustomHeaders"]}
        assert headers == {"X-Origin-Verify": reference}


def test_no_parameter_carries_the_secret(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert not [name for name, spec in parameters.items() if spec.get("NoEcho")]
    assert "OriginSecret" not in parameters


def test_raising_the_secret_version_updates_the_distribution(template: dict[str, Any], stage: str) -> None:
    """CloudFormation reads a dynamic reference again only for a resource it updates: a
    new OriginSecretVersion must change the distribution, or a rotated secret would
    never reach CloudFront."""
    before = _config(Edge(template, Stage=stage, **PARAMETERS))
    after = _config(Edge(template, Stage=stage, OriginSecretVersion="2", **PARAMETERS))
    assert before != after
    assert before["Origins"] == after["Origins"]


# ---------------------------------------------------------------- redirect


def test_the_redirect_function_runs_on_viewer_request_when_given(template: dict[str, Any], stage: str) -> None:
    deployed = Edge(template, Stage=stage, RedirectFunctionArn=FUNCTION, **PARAMETERS)
    for behaviour in _behaviours(_config(deployed)):
        associations = as_list(behaviour["FunctionAssociations"])
        assert {"EventType": "viewer-request", "FunctionARN": FUNCTION} in associations


def test_no_function_is_attached_when_none_is_given(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        assert not behaviour.get("FunctionAssociations")


# -------------------------------------------------------------------- logs


def test_standard_logs_go_to_the_logs_bucket(deployed: Deployed) -> None:
    bucket = _logical(deployed.template, "AWS::S3::Bucket")
    assert _config(deployed)["Logging"]["Bucket"] == deployed.name(f"{bucket}.RegionalDomainName")


def test_the_logs_bucket_blocks_public_access_and_is_encrypted(deployed: Deployed) -> None:
    bucket = deployed.properties(_logical(deployed.template, "AWS::S3::Bucket"))
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_logs_bucket_accepts_cloudfronts_acl_based_delivery(deployed: Deployed) -> None:
    """Standard logging writes with ACLs: BucketOwnerEnforced (ACLs disabled) would make it fail."""
    bucket = deployed.properties(_logical(deployed.template, "AWS::S3::Bucket"))
    rules = bucket["OwnershipControls"]["Rules"]
    assert [r["ObjectOwnership"] for r in rules] == ["BucketOwnerPreferred"]


def test_the_logs_expire_and_outlive_the_stack(template: dict[str, Any]) -> None:
    bucket = one(template, "AWS::S3::Bucket")
    assert bucket.get("DeletionPolicy") == "RetainExceptOnCreate"
    assert bucket.get("UpdateReplacePolicy") == "Retain"
    expiring = [r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expiring


# ----------------------------------------------------------------- outputs


def test_the_stack_outputs_the_distribution_id_and_domain_name(deployed: Deployed) -> None:
    distribution = _logical(deployed.template, "AWS::CloudFront::Distribution")
    outputs = {deployed.value(output["Value"]) for output in deployed.template["Outputs"].values()}
    assert {deployed.name(distribution), deployed.name(f"{distribution}.DomainName")} <= outputs
