"""The instructions bench's configs (checked by nginx -t) and its command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.instructions import main, nginx_argv


@pytest.mark.parametrize("access_log", [True, False])
def test_the_measured_nginx_is_the_rendered_proxy_with_one_worker_and_passes_nginx_t(
    tmp_path: Path, access_log: bool
) -> None:
    argv = nginx_argv("127.0.0.1:9", tmp_path, 1, access_log=access_log)
    config = (tmp_path / "nginx.conf").read_text()

    assert "worker_processes 1;\nmaster_process off;" in config
    assert ("hosp_json_plain buffer=64k flush=1s if=$hosp_log_plain;" in config) is access_log
    assert (config.count("access_log off;") > 2) is not access_log
    checked = subprocess.run(
        [*argv[:3], "-t", "-e", str(tmp_path / "error.log")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_a_count_of_gets_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--gets", "0"])

    assert exited.value.code == 2
    assert "--gets must be at least 1" in capsys.readouterr().err
