"""The renderer: every variant passes the real `nginx -t`, bad settings are refused clearly."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.nginx import render
from local.nginx_proxy import nginx_binary


def settings(tmp_path: Path, **changes: Any) -> render.ProxySettings:
    base = render.ProxySettings(
        variant="local",
        upstream="127.0.0.1:9000",
        listen="127.0.0.1:18080",
        access_log=str(tmp_path / "access.json"),
        error_log=str(tmp_path / "error.log"),
        pid_path=str(tmp_path / "nginx.pid"),
        temp_dir=str(tmp_path / "tmp"),
    )
    return dataclasses.replace(base, **changes)


def upstream_block(config: str, name: str) -> str:
    match = re.search(r"upstream " + name + r" \{(.*?)\}", config, re.DOTALL)
    assert match, f"no upstream {name}"
    return match.group(1)


def nginx_t(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(path), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


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
    assert "{{" not in config


def test_production_variant_with_a_dns_name_passes_nginx_t(tmp_path: Path) -> None:
    output = tmp_path / "nginx.conf"
    # The log paths are deployment facts; everything else is the production variant.
    logs = ["--access-log", str(tmp_path / "access.json"), "--error-log", str(tmp_path / "error.log")]
    args = ["--variant", "production", "--upstream", "localhost:9000", "--output", str(output)]

    assert render.main(args + logs) == 0
    config = output.read_text()
    result = nginx_t(config, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "listen 80;" in config
    assert "worker_rlimit_nofile 16384;" in config
    assert "pid /run/nginx.pid;" in config
    assert "_temp_path" not in config  # the distribution's own temp paths
    assert render.variant_defaults("production", tmp_path)["access_log"] == "/var/log/hosp-proxy/access.json"


def test_cli_writes_a_file_nginx_accepts(tmp_path: Path) -> None:
    output = tmp_path / "out" / "nginx.conf"

    code = render.main(["--upstream", "127.0.0.1:9000", "--run-dir", str(tmp_path), "--output", str(output)])

    assert code == 0
    assert nginx_t(output.read_text(), tmp_path).returncode == 0


def test_access_log_is_buffered_unless_turned_off(tmp_path: Path) -> None:
    assert "hosp_json buffer=64k flush=1s;" in render.render(settings(tmp_path))
    assert f"access_log {tmp_path}/access.json hosp_json;" in render.render(settings(tmp_path, access_log_buffer="off"))


def test_the_host_header_sent_to_hosp_can_be_fixed(tmp_path: Path) -> None:
    assert "proxy_set_header Host $http_host;" in render.render(settings(tmp_path))
    config = render.render(settings(tmp_path, host_header="hosp.example.org"))
    assert "proxy_set_header Host hosp.example.org;" in config


def test_timeouts_and_budget_reach_the_config(tmp_path: Path) -> None:
    config = render.render(
        settings(tmp_path, try_timeout=1.5, deadline=4, connect_timeout=0.25, budget_rate=7, budget_burst=9)
    )

    assert "proxy_read_timeout 1500ms;" in config
    assert "proxy_connect_timeout 250ms;" in config
    assert "proxy_next_upstream_timeout 2500ms;" in config  # the deadline less the first try
    assert "rate=7r/s" in config
    assert "burst=9 nodelay" in config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"upstream": "hosp.example"}, "HOST:PORT"),
        ({"upstream": "http://hosp:80"}, "HOST:PORT"),
        ({"tries": 0}, "tries"),
        ({"try_timeout": 5, "deadline": 2}, "deadline"),
        ({"try_timeout": 2, "deadline": 2}, "deadline"),  # 0 ms would mean "no deadline" to NGINX
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"budget_rate": 0}, "budget"),
        ({"access_log_buffer": "lots"}, "buffer"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(render.RenderError, match=message):
        render.render(settings(tmp_path, **change))


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = render.main(["--upstream", "no-port", "--output", str(tmp_path / "x.conf")])

    assert code == 2
    assert "upstream must be HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "x.conf").exists()
