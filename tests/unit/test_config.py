"""Settings come from the environment at call time, with clear errors that reveal no address.

And the proxy's public names (infra/nginx/render.py --public-name), checked the same way.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib import config, constants
from infra.nginx import render
from local.processes import ROOT
from tests.support import rendered_salt

CHALICE_DIR = ROOT / ".chalice"


def chalice_config() -> dict[str, Any]:
    return dict(json.loads((CHALICE_DIR / "config.json").read_text()))


def test_load_reads_the_given_environment() -> None:
    settings = config.load({constants.STAGE: "prod", constants.HOSP_BASE_URL: "https://hosp-proxy.vets.internal/"})

    assert settings == config.Settings(stage="prod", hosp_base_url="https://hosp-proxy.vets.internal")


@pytest.mark.parametrize("value", ["", "hosp.corp.internal", "ftp://hosp.corp.internal", "https://", "http://[::1"])
def test_a_bad_hosp_url_names_the_variable_but_not_the_value(value: str) -> None:
    with pytest.raises(config.ConfigError, match=constants.HOSP_BASE_URL) as raised:
        config.load({constants.HOSP_BASE_URL: value})

    assert "corp" not in str(raised.value)


@pytest.mark.parametrize(
    "host",
    [
        "example", "example.com", "www.example.com", "EXAMPLE.ORG", "example.net.", "hosp.example",
        "hosp-proxy.example.internal", "hosp-proxy.dev.example.internal", "invalid", "hosp.invalid", "hosp.test",
    ],
)  # fmt: skip
def test_reserved_and_made_up_example_hosts_are_placeholders(host: str) -> None:
    assert config.is_placeholder_host(host)
    problems = config.problems({constants.HOSP_BASE_URL: f"https://{host}:8443/v1"})

    assert problems == ["HOSP_BASE_URL is a placeholder host name, not a real HOSP proxy"]
    assert host.lower().rstrip(".") not in " ".join(problems).lower()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "hosp-proxy.vets.internal", "examples.com", "myexample.org", "testing.io"]
)
def test_real_hosts_are_not_placeholders(host: str) -> None:
    assert not config.is_placeholder_host(host)
    assert config.problems({constants.HOSP_BASE_URL: f"http://{host}:8080"}) == []


def test_each_function_of_each_deployable_stage_has_its_own_policy_file() -> None:
    conf = chalice_config()

    assert conf["autogen_policy"] is False
    for stage in ("dev", "prod"):
        functions = conf["stages"][stage]["lambda_functions"]
        assert set(functions) == {"api_handler", "write_note"}
        files = [functions[name]["iam_policy_file"] for name in functions]
        assert len(set(files)) == len(files), "each function has a policy of its own"
        for name in files:
            policy = json.loads((CHALICE_DIR / name).read_text())
            # "*" only where AWS allows nothing narrower: a VPC Lambda's network interfaces
            # (tests/infra/test_iam_policies.py checks the policies in full).
            unscoped = [s for s in policy["Statement"] if s["Resource"] == "*"]
            vpc_actions = ("NetworkInterface", "PrivateIpAddresses", "DescribeSubnets")
            assert all(
                action.startswith("ec2:") and any(part in action for part in vpc_actions)
                for s in unscoped
                for action in s["Action"]
            )


def test_no_stage_holds_a_hosp_url_of_its_own() -> None:
    """The deployed stages get HOSP_BASE_URL from the network stack's export at deploy
    (infra/app/merge.json; tests/infra/test_chalice_package.py checks the packaged output),
    so the configuration alone says it is not set, never a made-up URL."""
    conf = chalice_config()
    for stage in ("dev", "prod"):
        stage_conf = conf["stages"][stage]
        scopes = [stage_conf, *stage_conf["lambda_functions"].values()]
        variables = {k: v for scope in scopes for k, v in scope.get("environment_variables", {}).items()}
        assert config.problems(variables) == ["HOSP_BASE_URL is not set"]


def test_every_configured_environment_variable_is_one_the_app_reads() -> None:
    conf = chalice_config()
    scopes = [conf, *conf["stages"].values()]
    configured = {name for scope in scopes for name in scope.get("environment_variables", {})}

    assert configured <= set(constants.VARIABLES)


# --- the proxy's public names (infra/nginx/render.py --public-name) -------------------------------

RENDER_ARGS = ["--upstream", "127.0.0.1:9000"]


def proxy_settings(tmp_path: Path, *names: str, **tuning: Any) -> render.ProxySettings:
    return render.ProxySettings.for_variant(
        "local", "127.0.0.1:9000", tmp_path, dataclasses.replace(render.Tuning(), **tuning), public_names=names
    )


@pytest.mark.parametrize(
    "names",
    [
        ("hosp.example",),
        ("hosp.example", "old-hosp.example"),
        ("localhost",),
        ("xn--hsp-sna.example",),
        ("a" * 63 + ".example",),
        ("9lives.example", "vets.co.uk"),
    ],
)
def test_lowercase_dns_names_are_accepted_as_public_names(tmp_path: Path, names: tuple[str, ...]) -> None:
    config = render.render(proxy_settings(tmp_path, *names))

    regex = "|".join(name.replace(".", r"\.") for name in names)
    assert f'"~^public:(?<hosp_matched_name>{regex})\\z"  $hosp_matched_name;' in config
    assert "proxy_set_header Host $hosp_public_host_header;" in config


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Hosp.example", "lowercase DNS name"),
        ("hosp.example.", "lowercase DNS name"),  # a final dot: NGINX's $host never has one
        ("hosp.example:443", "lowercase DNS name"),
        ("*.hosp.example", "lowercase DNS name"),
        ("-hosp.example", "lowercase DNS name"),
        ("hosp-.example", "lowercase DNS name"),
        ("hosp..example", "lowercase DNS name"),
        ("h\u00f6sp.example", "lowercase DNS name"),
        ("hosp.example|evil.example", "lowercase DNS name"),  # would widen the regular expression
        ('evil.example"><script>', "lowercase DNS name"),
        ("hosp_example.org", "lowercase DNS name"),
        ("", "lowercase DNS name"),
        ("a" * 64 + ".example", "lowercase DNS name"),
        (".".join(["a" * 63] * 4), "lowercase DNS name"),  # 255 characters
        ("10.0.0.1", "an address, not a name"),
    ],
)
def test_a_bad_public_name_is_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(render.RenderError, match=message):
        render.render(proxy_settings(tmp_path, name))


def test_a_public_name_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(render.RenderError, match=r"more than once: hosp\.example"):
        render.render(proxy_settings(tmp_path, "hosp.example", "old.example", "hosp.example"))


def test_host_header_and_public_names_cannot_both_be_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(render.RenderError, match="--host-header and --public-name"):
        render.render(proxy_settings(tmp_path, "hosp.example", host_header="hosp.example"))
    args = [*RENDER_ARGS, "--public-name", "hosp.example", "--host-header", "hosp.example"]

    assert render.main([*args, "--output", str(tmp_path / "nginx.conf")]) == 2
    assert "leave --host-header out" in capsys.readouterr().err
    assert not (tmp_path / "nginx.conf").exists()


def test_cli_takes_the_public_name_repeated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "nginx.conf"
    args = [*RENDER_ARGS, "--run-dir", str(tmp_path), "--public-name", "hosp.example", "--public-name", "old.example"]

    assert render.main([*args, "--output", str(output)]) == 0
    direct = proxy_settings(tmp_path.resolve(), "hosp.example", "old.example")
    salt = rendered_salt(output.read_text())
    assert output.read_text() == render.render(dataclasses.replace(direct, request_id_salt=salt))
    assert "public names hosp.example, old.example" in capsys.readouterr().out


def test_without_public_names_any_host_is_answered_and_passed_on(tmp_path: Path) -> None:
    config = render.render(proxy_settings(tmp_path))

    assert "# not included: optional/public-host.conf" in config
    assert "# not included: optional/public-names-checked.conf" in config
    assert "proxy_set_header Host $http_host;" in config
    # A request without a Host is refused in every variant (host-policy.conf).
    assert "if ($hosp_host_refused = missing) {" in config


@pytest.mark.parametrize("names", [(), ("hosp.example",)])
@pytest.mark.parametrize("secrets", [(), ("s" * 40,)])
def test_production_settings_need_both_public_names_and_an_origin_secret(
    tmp_path: Path, names: tuple[str, ...], secrets: tuple[str, ...]
) -> None:
    production = render.ProxySettings.for_variant(
        "production", "hosp.internal:80", tmp_path, interceptor="api.example:443", public_names=names,
        origin_secrets=secrets,
    )  # fmt: skip

    if names and secrets:
        assert "misdirected;" in render.render(production)
    else:
        with pytest.raises(render.RenderError, match="production variant needs --public-name"):
            render.render(production)
