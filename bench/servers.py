"""The processes a benchmark run needs, each started in the foreground and stopped on exit.

- `HAProxy`: HAProxy rendered from bench/haproxy.cfg, checked with `haproxy -c`;
- `StaticUpstream`: a minimal NGINX answering 200 {"ok":true}, the overhead table's upstream
  (bench/static-upstream.conf);
- `BareProxy`: a minimal NGINX proxy with no access log (bench/bare-proxy.conf), what NGINX
  costs before any of the project's configuration (bench/cpu_profile.py).

The templates are rendered by infra/nginx/render.py, the proxy's own renderer.

Our own proxy runs through `local.nginx_proxy.NginxProxy` and the HOSP stand-in through
`local.hosp_standin.process.StandInProcess`, as in the tests.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil

from infra.nginx.render import render_template
from local.nginx_proxy import nginx_binary
from local.processes import LoopbackServer, ProcessError, free_port, system_binary

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "install with `apt-get install haproxy wrk` (`make bench` installs haproxy when run as root)"
CONTROL_TIMEOUT = 5.0


class BenchError(RuntimeError):
    """A tool is missing or a server did not start."""


def require_binary(name: str) -> str:
    try:
        return system_binary(name, INSTALL_HINT)
    except ProcessError as exc:
        raise BenchError(str(exc)) from exc


def binary_version(args: list[str]) -> str:
    """First line of a `--version`-like command (nginx and haproxy print it on stderr)."""
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


@dataclass
class HAProxy(LoopbackServer):
    """HAProxy in the foreground (-db) with the bench's config; its log goes to a file."""

    upstream: str
    run_dir: Path
    connect_timeout: float = 2.0
    server_timeout: float = 2.0
    threads: int = 2
    tries: int = 3
    port: int = 0
    log: bool = True  # False: no log line at all (bench/cpu_profile.py weighs the log with it)

    @property
    def config_path(self) -> Path:
        return self.run_dir / "haproxy.cfg"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "haproxy.log"

    def render(self) -> None:
        values = {
            "threads": str(self.threads),
            "port": str(self.port),
            "upstream": self.upstream,
            "retries": str(self.tries - 1),
            "connect_timeout": f"{round(self.connect_timeout * 1000)}ms",
            "server_timeout": f"{round(self.server_timeout * 1000)}ms",
            "log": "log global" if self.log else "no log",
        }
        text = render_template(HERE / "haproxy.cfg", values)
        self.config_path.write_text(text)

    def check(self) -> None:
        args = [require_binary("haproxy"), "-c", "-f", str(self.config_path)]
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            raise BenchError(f"haproxy -c rejected {self.config_path}:\n{done.stdout}{done.stderr}")

    def start(self) -> Self:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.render()
        self.check()
        self._launch([require_binary("haproxy"), "-f", str(self.config_path), "-db"], output=self.access_log)
        return self


@dataclass
class StaticUpstream(LoopbackServer):
    """A minimal NGINX (one worker) answering every request with 200 {"ok":true}."""

    run_dir: Path
    port: int = 0

    def start(self) -> Self:
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.run_dir / "static.conf"
        values = {"run_dir": str(self.run_dir), "temp_dir": str(self.run_dir / "tmp"), "listen": self.address}
        config.write_text(render_template(HERE / "static-upstream.conf", values))
        error_log = str(self.run_dir / "static-error.log")
        self._launch([nginx_binary(), "-c", str(config), "-e", error_log, "-g", "daemon off;"])
        return self


@dataclass
class BareProxy(LoopbackServer):
    """A minimal NGINX proxy (one worker) to `upstream`: keep-alive both sides, no access log, nothing else."""

    upstream: str
    run_dir: Path
    port: int = 0

    @property
    def config_path(self) -> Path:
        return self.run_dir / "bare-proxy.conf"

    def render(self) -> None:
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        values = {
            "run_dir": str(self.run_dir),
            "temp_dir": str(self.run_dir / "tmp"),
            "listen": self.address,
            "upstream": self.upstream,
        }
        self.config_path.write_text(render_template(HERE / "bare-proxy.conf", values))

    def worker_pids(self) -> set[int]:
        """The worker processes of this NGINX's master."""
        if self.process is None:
            return set()
        return {child.pid for child in psutil.Process(self.process.pid).children()}

    def command(self, *options: str) -> list[str]:
        """nginx with this configuration, in the foreground, and `options` (say "-t")."""
        error_log = str(self.run_dir / "bare-proxy-error.log")
        return [nginx_binary(), *options, "-c", str(self.config_path), "-e", error_log, "-g", "daemon off;"]

    def start(self) -> Self:
        self.port = self.port or free_port()
        self.render()
        self._launch(self.command())
        return self
