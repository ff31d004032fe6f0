"""Run the real NGINX binary with the project's rendered config, in the foreground.

Used by the local stack, the integration tests and the benchmarks, so that all
three exercise exactly the configuration that production renders.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil

from infra.nginx import render
from infra.nginx.render import Tuning
from local.processes import LoopbackServer, ProcessError, connections_held, free_port, system_binary

INSTALL_HINT = (
    "install it with `sudo apt-get install nginx` (Debian/Ubuntu), or run `make test`, "
    "which installs it when run as root"
)
MODULES_INSTALL_HINT = (
    "install the versions of infra/nginx/debian-packages.txt with `sudo scripts/ensure-system-packages.sh "
    "$(cat infra/nginx/debian-packages.txt)` (Debian 12), or run `make test`, which installs them when run as root"
)
# Started by root, the workers run as this user, as production's run as the
# distribution's nginx user: never as root.
UNPRIVILEGED_USER = "nobody"


class NginxError(ProcessError):
    """render.py or `nginx -t` rejected the configuration."""


def nginx_binary() -> str:
    return system_binary("nginx", INSTALL_HINT)


def nginx_modules(*paths: str) -> None:
    """Fail, saying how to install them, unless NGINX's dynamic modules are all there (default: the proxy's)."""
    wanted = paths or tuple(f"{render.MODULES_DIR}/{name}" for name in render.NGINX_MODULES)
    missing = [path for path in wanted if not Path(path).is_file()]
    if missing:
        raise ProcessError(f"NGINX's module(s) {', '.join(missing)} not found: {MODULES_INSTALL_HINT}")


class NginxProcess(LoopbackServer):
    """One NGINX process in the foreground, from the nginx.conf that `render` writes in `run_dir`.

    What the local proxy and the local edge share: the configuration checked
    with `nginx -t` before it is run, the access log's times in UTC, and, when
    started by root, a temp directory of its own for the unprivileged workers,
    removed on stop. Subclasses (dataclasses) set `run_dir` and `modules`,
    and define `render`, `_pick_ports` and `listen_ports`. Started only once our
    master holds every listener: NGINX retries a taken port for some seconds
    before it exits, while whatever holds the port answers the health check.
    """

    run_dir: Path
    modules: tuple[str, ...]  # the dynamic modules the configuration loads
    WORKER_TEMP_PREFIX = "hosp-nginx-"
    _worker_temp: Path | None = None

    @property
    def config_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.run_dir / "error.log"

    def render(self) -> None:
        raise NotImplementedError

    def _pick_ports(self) -> None:
        """Free ports for the listeners left at 0."""
        raise NotImplementedError

    def check(self) -> str:
        """`nginx -t` on the rendered file; returns its output."""
        nginx_modules(*self.modules)
        done = subprocess.run(
            [nginx_binary(), "-t", "-c", str(self.config_path), "-e", str(self.error_log)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise NginxError(f"nginx -t rejected {self.config_path}:\n{done.stderr}")
        return done.stderr

    def start(self) -> Self:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pick_ports()
        self.render()
        self.check()
        argv = [nginx_binary(), "-c", str(self.config_path), "-e", str(self.error_log), "-g", "daemon off;"]
        self._launch(argv, env={**os.environ, "TZ": "UTC"})  # the access log's times are UTC
        return self

    def worker_pids(self) -> set[int]:
        """The pids of the worker processes: the children of the master in run_dir/nginx.pid."""
        master = int((self.run_dir / "nginx.pid").read_text())
        return {child.pid for child in psutil.Process(master).children()}

    def client_connections(self, port: int) -> list[int]:
        """How many established connections to `port` each worker holds, most first; a worker with none is left out.

        Reading another user's sockets needs root: a bench run by root sees its unprivileged workers."""
        return connections_held(self.worker_pids(), port)

    def stop(self) -> None:
        super().stop()
        if self._worker_temp is not None:
            shutil.rmtree(self._worker_temp, ignore_errors=True)
            self._worker_temp = None

    def _worker_temp_dir(self) -> Path:
        """The workers' temp directory when started by root, owned by the unprivileged user.

        Under /tmp, not run_dir: a test's run_dir lies under a directory only
        root may enter.
        """
        if self._worker_temp is None:
            user, group = unprivileged_user()
            self._worker_temp = Path(tempfile.mkdtemp(prefix=self.WORKER_TEMP_PREFIX))
            shutil.chown(self._worker_temp, user, group)
        return self._worker_temp


@dataclass
class NginxProxy(NginxProcess):
    """One NGINX process in front of `upstream`, with the local variant and `tuning`."""

    upstream: str
    run_dir: Path
    port: int = 0
    tuning: Tuning = field(default_factory=Tuning)
    internal_port: int = 0  # the Lambdas' listener; 0: a free port
    interceptor: str = "127.0.0.1:8000"  # the Chalice app: screens' hand-offs and /audit (chalice local)
    modules: tuple[str, ...] = tuple(f"{render.MODULES_DIR}/{name}" for name in render.NGINX_MODULES)
    # The X-Origin-Verify values the public listener accepts; (): no check, as `make run`.
    origin_secrets: tuple[str, ...] = field(default=(), repr=False)
    # The Host names the public listener answers (render.py --public-name); (): any, as `make run`.
    public_names: tuple[str, ...] = ()

    @property
    def listen_ports(self) -> tuple[int, ...]:
        return (self.port, self.internal_port)

    @property
    def internal_url(self) -> str:
        """The internal listener: HOSP for the Lambdas, never a hand-off."""
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "access.json"

    def settings(self) -> render.ProxySettings:
        changes: dict[str, object] = {
            "listen": self.address,
            "internal_listen": f"127.0.0.1:{self.internal_port}",
            "interceptor": self.interceptor,
            "origin_secrets": self.origin_secrets,
            "public_names": self.public_names,
        }
        if os.geteuid() == 0:
            # The workers buffer large bodies to disk, so they need a temp
            # directory of their own that an unprivileged user can reach.
            user, group = unprivileged_user()
            changes["user"] = f"{user} {group}"
            changes["temp_dir"] = str(self._worker_temp_dir())
        return render.ProxySettings.for_variant("local", self.upstream, self.run_dir, self.tuning, **changes)

    def render(self) -> None:
        try:
            render.write(self.settings(), self.config_path)
        except render.RenderError as exc:
            raise NginxError(f"render.py refused the settings: {exc}") from exc

    def _pick_ports(self) -> None:
        self.port = self.port or free_port()
        self.internal_port = self.internal_port or free_port()


def unprivileged_user() -> tuple[str, str]:
    """The worker user and its own group (nogroup on Debian, nobody elsewhere)."""
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
