"""What the local edge reads from the CloudFront sources, so that they stay the one source.

- infra/cloudfront/distribution.yaml: the viewer security policy (protocols and
  ciphers), the response headers policy of the default behaviour (HSTS and the
  security headers), and the origin's timeouts;
- infra/cloudfront/redirect.js: the old-domain redirect, with its names filled
  in the way the deploy fills them, as an ES module that njs can import.

The template is read with a small YAML loader that knows CloudFormation's
short tags (!Ref, !Sub, ...): only literal values are used here, and a value
the template computes with an intrinsic function is refused, not guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.cloudfront import function
from local.processes import ROOT

CLOUDFRONT = ROOT / "infra" / "cloudfront"
DISTRIBUTION = CLOUDFRONT / "distribution.yaml"
REDIRECT_FUNCTION = CLOUDFRONT / "redirect.js"

# CloudFront's viewer security policies that the edge knows: the TLS versions
# and, for TLS 1.2, the ciphers (OpenSSL names), from "Supported protocols and
# ciphers between viewers and CloudFront" in the CloudFront Developer Guide.
# TLS 1.3's suites are the same in every policy: OpenSSL's defaults.
SECURITY_POLICIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "TLSv1.2_2021": (
        ("TLSv1.2", "TLSv1.3"),
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
    ),
}
# A header value written into NGINX's configuration in double quotes: printable
# ASCII without the characters NGINX would read as syntax or variables.
HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
HEADER_VALUE_FORBIDDEN = re.compile(r'["\\$]')
HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


class EdgeSourceError(ValueError):
    """The CloudFront template or function cannot be read as the edge needs it."""


@dataclass(frozen=True)
class ResponseHeader:
    """A header the response headers policy adds; `override`: replaces the origin's own."""

    name: str
    value: str
    override: bool


@dataclass(frozen=True)
class Distribution:
    """The parts of the distribution that the local edge plays."""

    security_policy: str  # MinimumProtocolVersion, e.g. TLSv1.2_2021
    protocols: tuple[str, ...]
    ciphers: tuple[str, ...]
    headers: tuple[ResponseHeader, ...]
    removed_headers: tuple[str, ...]
    origin_read_timeout: int  # seconds
    origin_keepalive_timeout: int  # seconds


class _CloudFormationLoader(yaml.SafeLoader):
    """yaml.safe_load, plus CloudFormation's short tags read as their long form ({"Fn::Sub": ...})."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = DISTRIBUTION) -> dict[str, Any]:
    try:
        template = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise EdgeSourceError(f"cannot read {path}: {exc}") from exc
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise EdgeSourceError(f"{path} is not a CloudFormation template")
    return _with_defaults(template)


def _with_defaults(template: dict[str, Any]) -> dict[str, Any]:
    """The template as deployed with its parameters' defaults: each `{"Ref": P}` of a
    parameter with a default is replaced by that default (the edge plays a stage that
    overrides nothing)."""
    defaults = {
        name: spec["Default"]
        for name, spec in (template.get("Parameters") or {}).items()
        if isinstance(spec, dict) and "Default" in spec
    }

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in defaults:
                return defaults[node["Ref"]]
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return {**template, "Resources": resolve(template["Resources"])}


def distribution(path: Path = DISTRIBUTION) -> Distribution:
    """The viewer TLS policy, response headers and origin timeouts of the template's distribution."""
    template = load_template(path)
    config = _the_resource(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    behaviour = config["DefaultCacheBehavior"]
    if _literal(behaviour, "ViewerProtocolPolicy") != "redirect-to-https":
        raise EdgeSourceError("the edge plays a distribution that redirects HTTP to HTTPS")
    policy_name = _literal(config["ViewerCertificate"], "MinimumProtocolVersion")
    if policy_name not in SECURITY_POLICIES:
        raise EdgeSourceError(f"security policy {policy_name!r} is unknown here: add it to SECURITY_POLICIES")
    protocols, ciphers = SECURITY_POLICIES[policy_name]
    headers_ref = behaviour.get("ResponseHeadersPolicyId")
    if not (isinstance(headers_ref, dict) and set(headers_ref) == {"Ref"}):
        raise EdgeSourceError("the default behaviour's ResponseHeadersPolicyId must be a !Ref to the template's policy")
    policy = template["Resources"][headers_ref["Ref"]]["Properties"]["ResponseHeadersPolicyConfig"]
    origins = config["Origins"]
    if len(origins) != 1:
        raise EdgeSourceError(f"the edge plays a distribution with one origin, found {len(origins)}")
    # A custom origin or a VPC origin: both carry the timeouts.
    origin = origins[0].get("VpcOriginConfig") or origins[0].get("CustomOriginConfig") or {}
    return Distribution(
        security_policy=policy_name,
        protocols=protocols,
        ciphers=ciphers,
        headers=response_headers(policy),
        removed_headers=tuple(
            _literal(item, "Header") for item in policy.get("RemoveHeadersConfig", {}).get("Items", [])
        ),
        origin_read_timeout=int(origin.get("OriginReadTimeout", 30)),  # CloudFront's defaults
        origin_keepalive_timeout=int(origin.get("OriginKeepaliveTimeout", 5)),
    )


def response_headers(policy: dict[str, Any]) -> tuple[ResponseHeader, ...]:
    """The headers a ResponseHeadersPolicyConfig adds, written as CloudFront writes them."""
    unsupported = set(policy) - {
        "Name",
        "Comment",
        "SecurityHeadersConfig",
        "CustomHeadersConfig",
        "RemoveHeadersConfig",
    }
    if unsupported:
        raise EdgeSourceError(
            f"the edge does not play these parts of the response headers policy: {sorted(unsupported)}"
        )
    security = policy.get("SecurityHeadersConfig", {})
    makers = {
        "StrictTransportSecurity": _hsts,
        "ContentTypeOptions": lambda _: ("X-Content-Type-Options", "nosniff"),
        "FrameOptions": lambda c: ("X-Frame-Options", _literal(c, "FrameOption")),
        "ReferrerPolicy": lambda c: ("Referrer-Policy", _literal(c, "ReferrerPolicy")),
        "XSSProtection": _xss_protection,
        "ContentSecurityPolicy": lambda c: ("Content-Security-Policy", _literal(c, "ContentSecurityPolicy")),
    }
    unknown = set(security) - set(makers)
    if unknown:
        raise EdgeSourceError(f"unknown security headers in the policy: {sorted(unknown)}")
    headers = [
        ResponseHeader(*makers[key](config), override=bool(_literal(config, "Override")))
        for key, config in security.items()
    ]
    for item in policy.get("CustomHeadersConfig", {}).get("Items", []):
        headers.append(
            ResponseHeader(_literal(item, "Header"), str(_literal(item, "Value")), bool(_literal(item, "Override")))
        )
    for header in headers:
        if not HEADER_NAME.fullmatch(header.name):
            raise EdgeSourceError(f"header name {header.name!r} is not a plain token")
        if not HEADER_VALUE.fullmatch(header.value) or HEADER_VALUE_FORBIDDEN.search(header.value):
            raise EdgeSourceError(
                f"the value of {header.name} holds a character the edge cannot write: {header.value!r}"
            )
    return tuple(headers)


def _hsts(config: dict[str, Any]) -> tuple[str, str]:
    value = f"max-age={int(_literal(config, 'AccessControlMaxAgeSec'))}"
    if config.get("IncludeSubdomains"):
        value += "; includeSubDomains"
    if config.get("Preload"):
        value += "; preload"
    return "Strict-Transport-Security", value


def _xss_protection(config: dict[str, Any]) -> tuple[str, str]:
    if not _literal(config, "Protection"):
        return "X-XSS-Protection", "0"
    if config.get("ModeBlock"):
        return "X-XSS-Protection", "1; mode=block"
    if config.get("ReportUri"):
        return "X-XSS-Protection", f"1; report={_literal(config, 'ReportUri')}"
    return "X-XSS-Protection", "1"


def _the_resource(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [res for res in template["Resources"].values() if isinstance(res, dict) and res.get("Type") == type_]
    if len(found) != 1:
        raise EdgeSourceError(f"expected one {type_} in the template, found {len(found)}")
    return found[0]


def _literal(mapping: dict[str, Any], key: str) -> Any:
    try:
        value = mapping[key]
    except KeyError:
        raise EdgeSourceError(f"{key} is missing from the template") from None
    if isinstance(value, (dict, list)):
        raise EdgeSourceError(f"{key} is computed by the template ({value!r}); the edge needs a literal value")
    return value


# ------------------------------------------------------------------ the function


def redirect_module(old_hosts: list[str], new_host: str, path: Path = REDIRECT_FUNCTION) -> str:
    """redirect.js as an ES module njs can import: its names filled, its text otherwise unchanged.

    The names go in as the deploy puts them (infra/cloudfront/function.py). A CloudFront
    Function is a script with a top-level `handler`; njs imports modules, so one line is
    added after it that exports that handler, and nothing else.
    """
    try:
        source = function.with_names(old_hosts, new_host, path)
    except function.FunctionSourceError as exc:
        raise EdgeSourceError(str(exc)) from exc
    export = "// Added by local/edge: the handler, for njs's import.\nexport default { handler: handler };\n"
    return f"{source.rstrip()}\n\n{export}"
