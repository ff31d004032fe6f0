"""infra/cloudfront/distribution.yaml: HTTPS only, no caching, security headers, an origin that outlasts the proxy.

Each test states a property of the deployed distribution, evaluated for each stage with
tests/infra/cfn.py's Deployed, rather than the template's text. cfn-lint runs on it with
every other template (test_cfn_templates.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.nginx.render import ORIGIN_MARGIN, Tuning, worst_case
from tests.infra.cfn import INFRA, Deployed, as_list, cfn_templates, decode, one, resources

DISTRIBUTION_TEMPLATE = INFRA / "cloudfront" / "distribution.yaml"
# The AWS managed cache policy CachingDisabled.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ONE_YEAR = 365 * 24 * 3600
EVERY_METHOD = {"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"}
FUNCTION = "arn:aws:cloudfront::123456789012:function/hosp-reliability-prod-redirect"
# A value given at deploy time only; it must never appear in the repository.
SECRET = "a-secret-given-at-deploy-time-0123456789"
PARAMETERS = {
    "DomainName": "hosp.new.example",
    "OldDomainNames": "hosp.old.example,www.hosp.old.example",
    "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
    "OriginDomainName": "origin.hosp.new.example",
    "OriginSecret": SECRET,
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(DISTRIBUTION_TEMPLATE)


@pytest.fixture
def deployed(template: dict[str, Any], stage: str) -> Deployed:
    return Deployed(template, Stage=stage, **PARAMETERS)


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
    deployed = Deployed(template, Stage="prod", **{**PARAMETERS, "OldDomainNames": ""})
    assert _config(deployed)["Aliases"] == [PARAMETERS["DomainName"]]


# ----------------------------------------------------------------- headers


def test_answers_carry_hsts_for_a_year_with_subdomains(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        policy = _policy(
            deployed,
            "AWS::CloudFront::ResponseHeadersPolicy",
            behaviour["ResponseHeadersPolicyId"],
            "ResponseHeadersPolicyConfig",
        )
        hsts = policy["SecurityHeadersConfig"]["StrictTransportSecurity"]
        assert hsts["AccessControlMaxAgeSec"] >= ONE_YEAR
        assert hsts["IncludeSubdomains"] is True
        assert hsts["Override"] is True


def test_answers_carry_the_usual_security_headers(deployed: Deployed) -> None:
    for behaviour in _behaviours(_config(deployed)):
        policy = _policy(
            deployed,
            "AWS::CloudFront::ResponseHeadersPolicy",
            behaviour["ResponseHeadersPolicyId"],
            "ResponseHeadersPolicyConfig",
        )
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


def test_the_origin_is_reached_over_https_only(deployed: Deployed) -> None:
    for origin in _config(deployed)["Origins"]:
        custom = origin["CustomOriginConfig"]
        assert custom["OriginProtocolPolicy"] == "https-only"
        assert custom["OriginSSLProtocols"] == ["TLSv1.2"]


def test_cloudfront_waits_longer_than_the_proxys_slowest_answer(deployed: Deployed) -> None:
    """docs/proxy.md: the slowest answer plus a margin fits within the origin timeout, so
    CloudFront never gives up on a write HOSP may still commit."""
    config = _config(deployed)
    origins = _origins(config)
    for behaviour in _behaviours(config):
        timeout = origins[behaviour["TargetOriginId"]]["CustomOriginConfig"]["OriginReadTimeout"]
        assert timeout >= worst_case(Tuning()) + ORIGIN_MARGIN
        assert timeout >= Tuning().origin_timeout


def test_the_origin_gets_the_secret_header(deployed: Deployed) -> None:
    for origin in _config(deployed)["Origins"]:
        values = [header["HeaderValue"] for header in origin["OriginCustomHeaders"]]
        assert SECRET in values


def test_the_secret_is_a_hidden_parameter_and_not_in_the_template(template: dict[str, Any]) -> None:
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    headers = [header for origin in config["Origins"] for header in origin["OriginCustomHeaders"]]
    values = [header["HeaderValue"] for header in headers]
    assert len(values) == 1
    parameter = values[0]["Ref"]
    assert template["Parameters"][parameter]["NoEcho"] is True
    assert "Default" not in template["Parameters"][parameter]
    assert SECRET not in DISTRIBUTION_TEMPLATE.read_text(encoding="utf-8")


# ---------------------------------------------------------------- redirect


def test_the_redirect_function_runs_on_viewer_request_when_given(template: dict[str, Any], stage: str) -> None:
    deployed = Deployed(template, Stage=stage, RedirectFunctionArn=FUNCTION, **PARAMETERS)
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
    assert bucket.get("DeletionPolicy") == "Retain"
    assert bucket.get("UpdateReplacePolicy") == "Retain"
    expiring = [r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expiring


# ----------------------------------------------------------------- outputs


def test_the_stack_outputs_the_distribution_id_and_domain_name(deployed: Deployed) -> None:
    distribution = _logical(deployed.template, "AWS::CloudFront::Distribution")
    outputs = {deployed.value(output["Value"]) for output in deployed.template["Outputs"].values()}
    assert {deployed.name(distribution), deployed.name(f"{distribution}.DomainName")} <= outputs
