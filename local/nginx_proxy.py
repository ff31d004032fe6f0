"""Run the real NGINX binary with the project's rendered config, in the foreground.

Used by the local stack, the integration tests and the benchmarks, so that all
three exercise exactly the configuration that production renders.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from local.processes import ROOT, LoopbackServer, ProcessError, free_port, system_binary

RENDERER = ROOT / "infra" / "nginx" / "render.py"
INSTALL_HINT = (
    "install it with `sudo apt-get install nginx` (Debian/Ubuntu), or run `make test`, "
    "which installs it when run as root"
)


class NginxError(ProcessError):
    """render.py or `nginx -t` rejected the configuration."""


def nginx_binary() -> str:
    return system_binary("nginx", INSTALL_HINT)


@dataclass
class NginxProxy(LoopbackServer):
    """One NGINX process in front of `upstream`, configured by render.py's options."""

    upstream: str
    run_dir: Path
    port: int = 0
    options: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "access.json"

    @property
    def error_log(self) -> Path:
        return self.run_dir / "error.log"

    def render(self) -> None:
        args = [
            sys.executable, str(RENDERER), "--variant", "local",
            "--upstream", self.upstream,
            "--listen", f"127.0.0.1:{self.port}",
            "--run-dir", str(self.run_dir),
            "--output", str(self.config_path),
        ]  # fmt: skip
        if os.geteuid() == 0 and "user" not in self.options:
            # Started by root, workers would run as "nobody", which cannot write
            # the temp files for large bodies under a private run directory.
            args += ["--user", "root"]
        for name, value in self.options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NginxError(f"render.py failed: {done.stderr.strip()}")

    def check(self) -> str:
        """`nginx -t` on the rendered file; returns its output."""
        done = subprocess.run(
            [nginx_binary(), "-t", "-c", str(self.config_path), "-e", str(self.error_log)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise NginxError(f"nginx -t rejected {self.config_path}:\n{done.stderr}")
        return done.stderr

    def start(self) -> Self:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.render()
        self.check()
        argv = [nginx_binary(), "-c", str(self.config_path), "-e", str(self.error_log), "-g", "daemon off;"]
        self._launch(argv, env={**os.environ, "TZ": "UTC"})  # the access log's times are UTC
        return self
