"""The renderer: every variant passes the real `nginx -t`, bad settings are refused clearly."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.nginx import render
from infra.nginx.render import ProxySettings, Tuning
from local.nginx_proxy import nginx_binary, nginx_modules, unprivileged_user
from local.processes import ProcessError
from tests.support import rendered_salt

API_GATEWAY = "abc123.execute-api.eu-west-2.amazonaws.com:443"
# Production always checks the origin secret and the public names (render.py refuses it without them).
PRODUCTION_CHECKS: dict[str, Any] = {"origin_secrets": ("s" * 40,), "public_names": ("hosp.example",)}


def settings(tmp_path: Path, **tuning: Any) -> ProxySettings:
    return ProxySettings.for_variant(
        "local", "127.0.0.1:9000", tmp_path, dataclasses.replace(Tuning(), **tuning), listen="127.0.0.1:18080"
    )


def upstream_block(config: str, name: str) -> str:
    match = re.search(r"upstream " + name + r" \{(.*?)\}", config, re.DOTALL)
    assert match, f"no upstream {name}"
    return match.group(1)


def directives(config: str) -> list[str]:
    """The config's lines that NGINX reads, stripped: no blank or comment line."""
    return [line.strip() for line in config.splitlines() if line.strip() and not line.strip().startswith("#")]


def origin_map(config: str) -> list[str]:
    """The entries of the map that checks the public listener's origin header (origin-policy.conf)."""
    return directives(config.split("$hosp_origin {", 1)[1].split("}", 1)[0])


def nginx_t(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    nginx_modules()  # fails and says how to install them, rather than a dlopen() error from nginx -t
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(path), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def template_line_patterns() -> list[re.Pattern[str]]:
    """Each line of every template, its placeholders matching any text."""
    patterns = []
    for template in render.TEMPLATES.rglob("*.conf"):
        for line in template.read_text().splitlines():
            if line.strip() and not line.strip().startswith("#"):
                parts = render.PLACEHOLDER.split(line.strip())
                # split() alternates text and placeholder names: escape the text, let names match anything.
                regex = "".join(re.escape(part) if i % 2 == 0 else ".*" for i, part in enumerate(parts))
                patterns.append(re.compile(regex))
    return patterns


@pytest.mark.parametrize("tries", [1, 2, 3, 5])
def test_local_variant_passes_nginx_t_for_any_number_of_tries(tmp_path: Path, tries: int) -> None:
    config = render.render(settings(tmp_path, tries=tries))

    result = nginx_t(config, tmp_path)

    assert result.returncode == 0, result.stderr
    pool, fresh = upstream_block(config, "hosp"), upstream_block(config, "hosp_fresh")
    # First attempts: one peer with a keep-alive pool.
    assert pool.count("server 127.0.0.1:9000 max_fails=0;") == 1
    assert "keepalive 64;" in pool
    # Retries and writes: HOSP once per retry (NGINX never retries the same
    # peer) and no pool (NGINX adds tries after errors on reused connections).
    assert fresh.count("server 127.0.0.1:9000 max_fails=0;") == max(1, tries - 1)
    assert "keepalive" not in fresh
    assert ("location @hosp_retry" in config) == (tries > 1)
    assert ("proxy_next_upstream_tries 0;" in config) is False  # NGINX would read 0 as "no limit"
    assert "{{" not in config


def test_production_variant_with_a_dns_name_passes_nginx_t(tmp_path: Path) -> None:
    output = tmp_path / "nginx.conf"
    # The log paths are deployment facts; everything else is the production variant.
    logs = ["--access-log", str(tmp_path / "access.json"), "--error-log", str(tmp_path / "error.log")]
    user = " ".join(unprivileged_user())
    args = ["--variant", "production", "--upstream", "localhost:9000", "--user", user, "--output", str(output)]
    # NGINX resolves the interceptor's name at start; the CA bundle and the modules are Debian's, as the fleet's.
    args += ["--interceptor", "localhost:443"]
    secret_file = tmp_path / "origin-secrets"
    secret_file.write_text("s" * 40 + "\n")
    args += ["--origin-secret-file", str(secret_file), "--public-name", "hosp.example"]

    assert render.main(args + logs) == 0
    # nginx -t writes the pid file's directory only when it runs; keep it in tmp_path.
    config = output.read_text().replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    result = nginx_t(config, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "listen 80;" in config
    assert "worker_rlimit_nofile 16384;" in config
    assert f"user {user};" in config
    assert "_temp_path" not in config  # the distribution's own temp paths


def test_both_variants_load_debians_modules_development_kit_first(tmp_path: Path) -> None:
    # The fleet runs Debian 12 with the packages the tests run (infra/ec2/bundle/install.sh).
    production = ProxySettings.for_variant(
        "production", "hosp.internal:80", tmp_path, interceptor=API_GATEWAY, **PRODUCTION_CHECKS
    )
    loads = [
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_set_misc_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_js_module.so;",
    ]

    for config in (render.render(production), render.render(settings(tmp_path))):
        assert [line for line in config.splitlines() if line.startswith("load_module")] == loads


def test_the_access_log_script_is_loaded_from_beside_the_renderer(tmp_path: Path) -> None:
    config = render.render(settings(tmp_path))

    assert f"js_path {render.NJS_DIR};" in config
    assert (render.NJS_DIR / "access_log.js").is_file()
    assert "js_import hosp_log from access_log.js;" in config


def test_bodies_up_to_the_scan_limit_stay_in_memory(tmp_path: Path) -> None:
    default = render.render(settings(tmp_path))
    smaller = render.render(settings(tmp_path, body_scan_limit=65536))

    assert "client_body_buffer_size 1048576;" in default
    assert "js_var $hosp_body_scan_limit 1048576;" in default
    assert "client_body_buffer_size 65536;" in smaller
    assert "js_var $hosp_body_scan_limit 65536;" in smaller
    assert nginx_t(smaller, tmp_path).returncode == 0


def test_a_missing_module_is_reported_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match=r"ngx_http_lua_module.so not found: .*debian-packages.txt"):
        nginx_modules(str(tmp_path / "ngx_http_lua_module.so"))


def test_the_audit_api_is_routed_on_the_public_listener_only(tmp_path: Path) -> None:
    config = render.render(settings(tmp_path))
    public, internal = re.split(r"^\s*server \{$", config, flags=re.MULTILINE)[1:]

    assert "location = /audit {" in public
    assert "location ^~ /audit/ {" in public
    assert "/audit" not in internal
    assert "proxy_pass http://interceptor/audit/;" in public
    # Production: API Gateway, over HTTPS, under its stage's prefix.
    production = render.render(
        ProxySettings.for_variant(
            "production", "hosp.internal:80", tmp_path, interceptor=API_GATEWAY, **PRODUCTION_CHECKS
        )
    )
    assert "proxy_pass https://interceptor/api/audit;" in production
    assert "proxy_pass https://interceptor/api/audit/;" in production


def test_every_directive_comes_from_a_template(tmp_path: Path) -> None:
    patterns = template_line_patterns()
    for variant_settings in (
        settings(tmp_path),
        settings(tmp_path, tries=1, access_log_buffer="off"),
        ProxySettings.for_variant(
            "production", "hosp.internal:80", tmp_path, user="nginx", interceptor=API_GATEWAY, **PRODUCTION_CHECKS
        ),
    ):
        written = directives(render.render(variant_settings))

        assert written
        assert [line for line in written if not any(p.fullmatch(line) for p in patterns)] == []


def test_placeholders_are_filled_in_one_pass(tmp_path: Path) -> None:
    # A value that looks like a placeholder stays as it is: nothing is substituted twice.
    config = render.render(settings(tmp_path, host_header="{{listen}}"))

    assert "proxy_set_header Host {{listen}};" in config


def test_an_optional_piece_left_out_leaves_none_of_its_directives(tmp_path: Path) -> None:
    without_user = render.render(settings(tmp_path))
    with_user = render.render(dataclasses.replace(settings(tmp_path), user="nobody nogroup"))

    assert [line for line in directives(without_user) if line.startswith("user ")] == []
    assert [line for line in directives(with_user) if line.startswith("user ")] == ["user nobody nogroup;"]
    assert nginx_t(without_user, tmp_path).returncode == 0


def test_cli_writes_a_file_nginx_accepts(tmp_path: Path) -> None:
    output = tmp_path / "out" / "nginx.conf"

    code = render.main(["--upstream", "127.0.0.1:9000", "--run-dir", str(tmp_path), "--output", str(output)])

    assert code == 0
    assert nginx_t(output.read_text(), tmp_path).returncode == 0


def test_cli_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    args = ["--upstream", "127.0.0.1:9000", "--run-dir", str(tmp_path)]
    from_cli = tmp_path / "cli.conf"
    render.main([*args, "--output", str(from_cli)])

    direct = ProxySettings.for_variant("local", "127.0.0.1:9000", tmp_path.resolve())
    salt = rendered_salt(from_cli.read_text())

    assert from_cli.read_text() == render.render(dataclasses.replace(direct, request_id_salt=salt))


def test_each_render_draws_a_salt_for_the_request_ids_written_once(tmp_path: Path) -> None:
    first, second = settings(tmp_path), settings(tmp_path)
    config = render.render(first)

    assert re.fullmatch(r"[0-9a-f]{32}", first.request_id_salt)
    assert first.request_id_salt != second.request_id_salt
    assert first == second  # the salt is no setting: it is drawn, never compared or shown
    assert first.request_id_salt not in repr(first)
    salt_lines = [line.strip() for line in config.splitlines() if first.request_id_salt in line]
    expected = f'set_md5 $hosp_new_request_id "{first.request_id_salt}:$hostname:$pid:$connection:'
    assert salt_lines == [expected + '$connection_requests:$msec";'] * 2  # once a server


def test_access_log_is_buffered_unless_turned_off(tmp_path: Path) -> None:
    buffered = render.render(settings(tmp_path))
    unbuffered = render.render(settings(tmp_path, access_log_buffer="off"))

    for log_format, condition in (("hosp_json_plain", "$hosp_log_plain"), ("hosp_json", "$hosp_log_escaped")):
        assert f"{log_format} buffer=64k flush=1s if={condition};" in buffered
        assert f"access_log {tmp_path}/access.json {log_format} if={condition};" in unbuffered


def log_format_fields(config: str, name: str) -> list[str]:
    """The field names of one log_format, in their order."""
    body = config.split(f"log_format {name} escape=json\n", 1)[1].split("';\n", 1)[0]
    return re.findall(r'"([a-z_]+)":', body)


def test_the_plain_and_the_escaped_access_log_lines_have_the_same_fields(tmp_path: Path) -> None:
    config = render.render(settings(tmp_path))

    fields = log_format_fields(config, "hosp_json")
    assert log_format_fields(config, "hosp_json_plain") == fields
    assert len(fields) == len(set(fields)) > 20


def test_the_host_header_sent_to_hosp_can_be_fixed(tmp_path: Path) -> None:
    assert "proxy_set_header Host $http_host;" in render.render(settings(tmp_path))
    config = render.render(settings(tmp_path, host_header="hosp.example.org"))
    assert "proxy_set_header Host hosp.example.org;" in config


def test_timeouts_and_budget_reach_the_config(tmp_path: Path) -> None:
    config = render.render(
        settings(
            tmp_path,
            try_timeout=1.5,
            deadline=4,
            connect_timeout=0.25,
            client_timeout=3,
            retry_budget_ratio=0.25,
            retry_budget_floor=7,
            retry_budget_window=30,
            retry_budget_memory="4m",
            retry_budget_known_for=3600,
        )
    )

    assert "proxy_read_timeout 1500ms;" in config
    assert "proxy_connect_timeout 250ms;" in config
    assert "proxy_next_upstream_timeout 2500ms;" in config  # the deadline less the first try
    assert "client_body_timeout 3000ms;" in config
    assert "lua_shared_dict hosp_retry_budget 4m;" in config
    assert "ratio = 0.25," in config
    assert "floor = 7," in config
    assert "window = 30," in config
    assert "reserve = 2," in config  # the retries of one request: tries - 1
    assert "known_for = 3600," in config
    assert f"client_max_body_size {render.MAX_BODY_BYTES};" in config


@pytest.mark.parametrize(
    ("change", "worst"),
    [
        ({}, 52.0),  # the write timeout dominates: 2 + 50
        ({"write_timeout": 10.0}, 36.0),  # 3 tries of 2 + 10
        ({"write_timeout": 10.0, "tries": 5, "deadline": 20.0}, 34.0),  # the deadline stops retries: 20 + 2 + 12
        ({"tries": 1, "write_timeout": 1.0, "interceptor_timeout": 1.0}, 12.0),
        ({"write_timeout": 10.0, "interceptor_timeout": 40.0}, 42.0),  # a screen: 2 + 40
    ],
)
def test_worst_case_follows_the_documented_rule(change: dict[str, Any], worst: float) -> None:
    assert render.worst_case(dataclasses.replace(Tuning(), **change)) == worst


@pytest.mark.parametrize(
    "change",
    [
        {"write_timeout": 60.0},  # a POST could wait connect + 60 s: CloudFront gives up first
        {"try_timeout": 20.0, "deadline": 40.0, "write_timeout": 10.0},
        {"origin_timeout": 30.0},
        {"interceptor_timeout": 55.0},
    ],
)
def test_settings_whose_slowest_answer_outlasts_the_origin_timeout_are_refused(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    with pytest.raises(render.RenderError, match="origin timeout"):
        render.render(settings(tmp_path, **change))
    production = ProxySettings.for_variant(
        "production",
        "hosp:80",
        tmp_path,
        dataclasses.replace(Tuning(), **change),
        interceptor=API_GATEWAY,
        **PRODUCTION_CHECKS,
    )
    with pytest.raises(render.RenderError, match="origin timeout"):
        render.render(production)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tries": 0}, "tries"),
        ({"try_timeout": 5, "deadline": 2}, "deadline"),
        ({"try_timeout": 2, "deadline": 2}, "deadline"),  # 0 ms would mean "no deadline" to NGINX
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"client_timeout": -1}, "client_timeout"),
        ({"retry_budget_ratio": -0.1}, "ratio"),
        ({"retry_budget_ratio": 0, "retry_budget_floor": 0}, "allows no retry"),
        ({"retry_budget_floor": -1}, "floor"),
        ({"retry_budget_window": 0.5}, "window"),
        ({"retry_budget_memory": "64k"}, "memory"),
        ({"retry_budget_known_for": 0.5}, "known user"),
        ({"retry_budget_known_for": 8 * 86400}, "known user"),
        ({"retry_budget_memory": "10 m"}, "memory"),
        ({"access_log_buffer": "lots"}, "buffer"),
        ({"worker_processes": "0"}, "worker processes"),
        ({"worker_processes": "two"}, "worker processes"),
        ({"worker_processes": "1;\nuser root"}, "worker processes"),
        ({"body_scan_limit": 0}, "body scan limit"),
        ({"body_scan_limit": render.MAX_BODY_BYTES + 1}, "body scan limit"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(render.RenderError, match=message):
        render.render(settings(tmp_path, **change))


@pytest.mark.parametrize("upstream", ["hosp.example", "http://hosp:80"])
def test_an_upstream_without_a_port_is_refused(tmp_path: Path, upstream: str) -> None:
    with pytest.raises(render.RenderError, match="HOST:PORT"):
        render.render(ProxySettings.for_variant("local", upstream, tmp_path))


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = render.main(["--upstream", "no-port", "--output", str(tmp_path / "x.conf")])

    assert code == 2
    assert "upstream must be HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "x.conf").exists()


# --- CloudFront's secret origin header ------------------------------------------------------------

CURRENT_SECRET = "c" * 20 + "-Current_Secret-" + "0" * 8
PREVIOUS_SECRET = "p" * 20 + "-Previous_Secret" + "1" * 8


def with_secrets(tmp_path: Path, *secrets: str) -> ProxySettings:
    return dataclasses.replace(settings(tmp_path), origin_secrets=secrets)


def test_origin_secrets_are_written_as_case_sensitive_map_entries_only(tmp_path: Path) -> None:
    config = render.render(with_secrets(tmp_path, CURRENT_SECRET, PREVIOUS_SECRET))

    assert nginx_t(config, tmp_path).returncode == 0
    for secret in (CURRENT_SECRET, PREVIOUS_SECRET):
        # A regular expression (~, not ~*): NGINX compares a map's plain strings ignoring case.
        assert [line.strip() for line in config.splitlines() if secret in line] == [f'"~^public:{secret}\\z"  "";']
    # Any other public request is refused: the open default is left out.
    assert [line for line in origin_map(config) if line.startswith("default ")] == ["default  refused;"]


def test_without_origin_secrets_the_public_listener_is_open(tmp_path: Path) -> None:
    config = render.render(settings(tmp_path))

    assert [line for line in origin_map(config) if line.startswith(("default ", '"~^public:'))] == ['default  "";']
    # The header is never passed on, checked or not: each set of proxy headers clears it (an
    # inner proxy_set_header hides every outer one).
    assert config.count('proxy_set_header X-Origin-Verify "";') == config.count("proxy_set_header Host ") > 1


def test_origin_secret_directives_come_from_a_template(tmp_path: Path) -> None:
    patterns = template_line_patterns()
    for secrets in ((CURRENT_SECRET,), (CURRENT_SECRET, PREVIOUS_SECRET)):
        written = directives(render.render(with_secrets(tmp_path, *secrets)))

        assert [line for line in written if not any(p.fullmatch(line) for p in patterns)] == []


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ((CURRENT_SECRET, PREVIOUS_SECRET, "t" * 40), "at most 2 origin secrets"),
        (("",), "origin secret 1 is empty"),
        ((CURRENT_SECRET, ""), "origin secret 2 is empty"),
        (("s" * 31,), "at least 32 characters"),
        (("s" * 31 + "$",), "at least 32 characters"),
        (("s" * 31 + '"',), "at least 32 characters"),
        ((CURRENT_SECRET + " ",), "at least 32 characters"),
    ],
)
def test_bad_origin_secrets_are_refused_without_quoting_them(
    tmp_path: Path, secrets: tuple[str, ...], message: str
) -> None:
    with pytest.raises(render.RenderError, match=message) as refused:
        render.render(with_secrets(tmp_path, *secrets))

    assert all(secret not in str(refused.value) for secret in secrets if secret)


def test_cli_reads_the_origin_secrets_from_a_file_and_writes_a_config_only_its_owner_reads(tmp_path: Path) -> None:
    secret_file = tmp_path / "origin-secrets"
    secret_file.write_text(f"{CURRENT_SECRET}\n{PREVIOUS_SECRET}\n")
    output = tmp_path / "out" / "nginx.conf"
    args = ["--upstream", "127.0.0.1:9000", "--run-dir", str(tmp_path), "--output", str(output)]

    assert render.main([*args, "--origin-secret-file", str(secret_file)]) == 0

    config = output.read_text()
    assert output.stat().st_mode & 0o777 == 0o600
    assert f'"~^public:{CURRENT_SECRET}\\z"' in config
    assert f'"~^public:{PREVIOUS_SECRET}\\z"' in config
    assert nginx_t(config, tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no value"),
        (f"{CURRENT_SECRET}\n{PREVIOUS_SECRET}\n{'t' * 40}\n", "at most 2 origin secrets"),
        (f"{CURRENT_SECRET}\n\n", "origin secret 2 is empty"),
    ],
)
def test_cli_refuses_a_bad_origin_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    secret_file = tmp_path / "origin-secrets"
    secret_file.write_text(content)
    output = tmp_path / "nginx.conf"

    code = render.main(
        ["--upstream", "127.0.0.1:9000", "--origin-secret-file", str(secret_file), "--output", str(output)]
    )

    assert code == 2
    error = capsys.readouterr().err
    assert message in error
    assert CURRENT_SECRET not in error
    assert not output.exists()


def test_cli_reports_a_missing_origin_secret_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--upstream", "127.0.0.1:9000", "--origin-secret-file", str(tmp_path / "none"), "--output", "x.conf"]

    assert render.main(args) == 2
    assert "cannot read the origin secret file" in capsys.readouterr().err


def test_the_known_methods_map_holds_exactly_the_apis_methods() -> None:
    text = (render.TEMPLATES / "retry-policy.conf").read_text()
    block = text.split("map $request_method $hosp_method_known {", 1)[1].split("}", 1)[0]
    keys = [line.split()[0] for line in block.splitlines() if line.strip().endswith("1;")]

    assert tuple(keys) == render.API_METHODS
