"""The budget bench's own reading of the access log, and its fixed-budget config checked by nginx -t."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.budget_bench import FixedBudgetProxy, floor_failures
from local.nginx_proxy import nginx_binary


def test_the_realized_floor_counts_a_users_requests_whose_three_attempts_all_failed() -> None:
    lines: list[dict[str, object]] = [
        {"user": "kim", "upstream_status": "503 : 502, 504"},  # 3 failed: floor
        {"user": "kim", "upstream_status": "503 : 502, 200"},  # recovered
        {"user": "kim", "upstream_status": "503"},  # refused by the budget: not the floor
        {"user": "vega", "upstream_status": "503 : 503, 503"},  # another user's
        {"user": "kim", "upstream_status": "200"},
    ]

    assert floor_failures(lines, "kim") == 1


def test_the_fixed_budget_config_replaces_the_ratio_budget_and_passes_nginx_t(tmp_path: Path) -> None:
    proxy = FixedBudgetProxy("127.0.0.1:9", tmp_path, port=1, internal_port=2)
    proxy.render()
    config = proxy.config_path.read_text()

    assert 'require("hosp_retry_budget").admit()' not in config
    assert config.count("limit_req zone=fixed_budget burst=40 nodelay;") == 2  # one @hosp_retry per server
    assert "rate=20r/s" in config
    checked = subprocess.run(
        [nginx_binary(), "-t", "-c", str(proxy.config_path), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
