"""The proxy fleet's bootstrap bundle (infra/ec2/bundle/, built by infra/ec2/build_bundle.py).

Checked with the tools that run it, on this machine, without AWS:
- shellcheck on every shell script, and `systemd-analyze verify` on every unit, offline:
  the units are copied into a temporary unit directory with /opt/hosp-proxy pointing at
  an unpacked bundle, so that verify finds the programs they start (it fails on a
  missing one), and a stand-in nginx.service carries the bundle's drop-in;
- the builder: the same tree gives the same bytes, whatever the checkout's times, modes
  and caches, and the bundle holds exactly infra/nginx/ and infra/ec2/bundle/;
- the install's render step for real: render-nginx.sh with a proxy.env of the test's,
  the real render.py and the real `nginx -t` (log and module paths pointed at this
  machine's);
- the origin secret refresh with stand-ins for the AWS CLI and systemctl on PATH, the
  real render and nginx -t, and the real NGINX running the rendered config on free
  loopback ports, which the stand-in's reload sends a HUP (or, for a reload that did not
  take, does not): what it writes, when it reloads, that it records the values only once
  the running NGINX answers with them, what a failure leaves, and that the secret's
  values never reach its output, a command line, an environment or NGINX's logs.

install.sh itself installs packages and starts services, so it runs only on an instance;
here its inputs and outputs are held against the files that consume them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.ec2 import build_bundle
from infra.nginx.render import ProxySettings
from local.nginx_proxy import nginx_binary, unprivileged_user
from local.processes import free_port

BUNDLE_DIR = build_bundle.REPO / "infra" / "ec2" / "bundle"
SYSTEMD_DIR = BUNDLE_DIR / "systemd"
INSTALL_SH = BUNDLE_DIR / "install.sh"
RENDER_SH = BUNDLE_DIR / "render-nginx.sh"
REFRESH_SH = BUNDLE_DIR / "origin-secret-refresh.sh"
AGENT_CONFIG = BUNDLE_DIR / "cloudwatch-agent.json"
NGINX_DROP_IN = SYSTEMD_DIR / "nginx.service.d" / "10-hosp-proxy.conf"
# Where the user data unpacks the bundle; the units start programs under it.
INSTANCE_ROOT = "/opt/hosp-proxy"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:hosp-reliability/dev/origin-verify-AbC123"
PUBLIC_NAMES = ("hosp.example.org", "hosp.old-example.org")
# Values of the contract's shape: 48 characters of A-Za-z0-9.
CURRENT = "Cur0" * 12
PREVIOUS = "Prv1" * 12
NEXT = "Nxt2" * 12
SECRETS = (CURRENT, PREVIOUS, NEXT)


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/bin")
    if not found:
        pytest.fail(
            f"{name} is not installed: apt-get install {package} (make test installs it when run as root)",
            pytrace=False,
        )
    return found


def _shell_scripts() -> list[Path]:
    """Every shell script of the bundle: a .sh file, or a file whose #! line names a shell."""
    scripts = []
    for path in sorted(BUNDLE_DIR.rglob("*")):
        if not path.is_file():
            continue
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if path.suffix == ".sh" or re.match(r"#!.*\b(ba|da)?sh\b", first):
            scripts.append(path)
    return scripts


def _units() -> list[Path]:
    return sorted([*SYSTEMD_DIR.glob("*.service"), *SYSTEMD_DIR.glob("*.timer")])


def _unpacked_bundle(tmp_path: Path) -> Path:
    """The bundle built from this tree and unpacked under tmp_path, as on an instance."""
    archive = tmp_path / "bundle.tar.gz"
    build_bundle.build(archive)
    root = tmp_path / "opt-hosp-proxy"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


# ------------------------------------------------------------------ shellcheck


def test_every_shell_script_passes_shellcheck() -> None:
    scripts = _shell_scripts()
    names = {path.name for path in scripts}
    assert {"install.sh", "render-nginx.sh", "origin-secret-refresh.sh", "proxy-env.sh"} <= names
    # -x -P SCRIPTDIR: follow `. "$here/proxy-env.sh"` as the scripts do; every severity.
    command = [_tool("shellcheck", "shellcheck"), "-x", "-P", "SCRIPTDIR", "--severity=style"]
    result = subprocess.run([*command, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_reports_findings(tmp_path: Path) -> None:
    """Guards the test above against a shellcheck that silently checks nothing."""
    script = tmp_path / "bad.sh"
    script.write_text('#!/usr/bin/env bash\nrm -rf $1/cache\necho "`date`"\n')
    result = subprocess.run(
        [_tool("shellcheck", "shellcheck"), str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "SC2086" in result.stdout


def test_every_script_stops_at_its_first_failure() -> None:
    """A script the user data or a unit runs must not carry on after a failed step."""
    for script in _shell_scripts():
        text = script.read_text()
        if text.startswith("#!"):
            assert re.search(r"^set -euo pipefail$", text, re.M), script.name
            assert script.name.endswith(".sh"), script.name


# ------------------------------------------------------------ systemd units


def _verify(units: list[Path], unit_dir: Path) -> subprocess.CompletedProcess[str]:
    # SYSTEMD_UNIT_PATH (ending in ":" keeps the system's own units) makes verify load
    # the units and their drop-ins from unit_dir, as from /etc/systemd/system.
    environment = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run(
        [_tool("systemd-analyze", "systemd"), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )


def _installed_units(tmp_path: Path) -> Path:
    """The bundle's units in a unit directory, starting programs from an unpacked bundle."""
    root = _unpacked_bundle(tmp_path)
    unit_dir = tmp_path / "units"
    (unit_dir / "nginx.service.d").mkdir(parents=True)
    for unit in _units():
        (unit_dir / unit.name).write_text(unit.read_text().replace(INSTANCE_ROOT, str(root)))
    shutil.copy(NGINX_DROP_IN, unit_dir / "nginx.service.d" / NGINX_DROP_IN.name)
    # The distribution's nginx.service stands for the one the drop-in extends.
    (unit_dir / "nginx.service").write_text(
        f"[Unit]\nDescription=nginx\n\n[Service]\nType=forking\nExecStart={nginx_binary()}\n"
    )
    return unit_dir


def test_every_unit_and_the_nginx_drop_in_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    unit_dir = _installed_units(tmp_path)
    units = [unit_dir / unit.name for unit in _units()] + [unit_dir / "nginx.service"]

    result = _verify(units, unit_dir)

    # verify exits 0 on an unknown key or section and only warns: any output fails.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_reports_a_broken_unit_and_drop_in(tmp_path: Path) -> None:
    """Guards the test above: verify reads the drop-in and reports unknown keys and
    programs that are not there."""
    unit_dir = _installed_units(tmp_path)
    drop_in = unit_dir / "nginx.service.d" / NGINX_DROP_IN.name
    drop_in.write_text(drop_in.read_text() + "Restartt=always\n")
    broken = unit_dir / "hosp-proxy-broken.service"
    broken.write_text("[Service]\nType=oneshot\nExecStart=/opt/hosp-proxy/nowhere.sh\n")

    result = _verify([unit_dir / "nginx.service", broken], unit_dir)

    assert "Unknown key 'Restartt'" in result.stderr
    assert "/opt/hosp-proxy/nowhere.sh" in result.stderr
    assert result.returncode != 0


def test_every_timer_starts_a_service_of_the_bundle_and_install_enables_it() -> None:
    install = INSTALL_SH.read_text()
    timers = sorted(SYSTEMD_DIR.glob("*.timer"))
    assert {t.stem for t in timers} == {"hosp-proxy-dns-refresh", "hosp-proxy-origin-secret"}
    for timer in timers:
        assert "Unit=" not in timer.read_text(), "a timer starts its own name's service"
        assert (SYSTEMD_DIR / f"{timer.stem}.service").is_file(), timer.name
        assert re.search(rf"^systemctl enable --now .*\b{re.escape(timer.name)}\b", install, re.M), timer.name


def test_the_origin_secret_timer_runs_every_five_minutes() -> None:
    timer = (SYSTEMD_DIR / "hosp-proxy-origin-secret.timer").read_text()
    assert re.search(r"^OnUnitActiveSec=5min$", timer, re.M)


# -------------------------------------------------------------- the builder


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"

    digest = build_bundle.build(first)
    build_bundle.build(second)

    assert first.read_bytes() == second.read_bytes()
    assert digest == hashlib.sha256(first.read_bytes()).hexdigest()


def test_the_bytes_do_not_depend_on_the_checkouts_times_modes_or_caches(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    for source in build_bundle.SOURCES:
        shutil.copytree(build_bundle.REPO / source, copy / source, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (copy / "infra").rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (copy / "infra" / "nginx" / "render.py").chmod(0o700)
    (copy / "infra" / "ec2" / "bundle" / "install.sh").chmod(0o600)
    (copy / "infra" / "nginx" / "__pycache__").mkdir()
    (copy / "infra" / "nginx" / "__pycache__" / "render.cpython-311.pyc").write_bytes(b"\0")
    (copy / "infra" / "nginx" / "render.py~").write_text("an editor's backup")

    assert build_bundle.build(tmp_path / "copy.tar.gz", copy) == build_bundle.build(tmp_path / "repo.tar.gz")


def test_the_bundle_holds_infra_nginx_and_the_bundle_files_and_nothing_else(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    build_bundle.build(archive)
    with tarfile.open(archive) as tar:
        entries = {info.name: info for info in tar.getmembers()}

    expected = {
        path.relative_to(build_bundle.REPO).as_posix()
        for source in build_bundle.SOURCES
        for path in (build_bundle.REPO / source).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith((".pyc", "~"))
    }
    files = {name for name, info in entries.items() if info.isfile()}
    assert files == expected
    assert {
        "infra/nginx/render.py",
        "infra/nginx/dns_refresh.py",
        "infra/nginx/njs/access_log.js",
        "infra/nginx/templates/nginx.conf",
        "infra/ec2/bundle/install.sh",
    } <= files
    assert list(entries) == sorted(entries)
    for name, info in entries.items():
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root"), name
        assert info.mtime == build_bundle.MTIME, name
        assert info.isdir() or info.isfile(), name
    # The scripts a unit or the user data starts are executable; the rest is not.
    executable = {name for name, info in entries.items() if info.isfile() and info.mode & 0o111}
    assert executable == {
        "infra/ec2/bundle/install.sh",
        "infra/ec2/bundle/render-nginx.sh",
        "infra/ec2/bundle/origin-secret-refresh.sh",
    }


def _debs(directory: Path, pins: dict[str, str]) -> dict[str, bytes]:
    """A stand-in .deb per pin, named as apt-get download names it; file name -> bytes."""
    directory.mkdir()
    written = {}
    for package, version in pins.items():
        name = f"{package}_{version.replace(':', '%3a')}_amd64.deb"
        written[name] = f"!<arch>\n{package} {version}".encode()
        (directory / name).write_bytes(written[name])
    return written


def test_packages_ship_under_packages_with_their_sha256_and_keep_the_build_reproducible(tmp_path: Path) -> None:
    """build_bundle.py --packages: the pinned .deb files, for a fleet without a route to
    Debian's mirror, and the sha256 list install.sh checks them against."""
    shipped = tmp_path / "debs"
    debs = _debs(shipped, build_bundle.debian_pins())
    (shipped / "awscli_2.9.19-1_all.deb").write_bytes(b"!<arch>\nawscli")
    debs["awscli_2.9.19-1_all.deb"] = b"!<arch>\nawscli"
    (shipped / "notes.txt").write_text("not shipped")

    first = build_bundle.build(tmp_path / "a.tar.gz", package_dir=shipped)
    os.utime(shipped / "awscli_2.9.19-1_all.deb", (1_700_000_000, 1_700_000_000))
    second = build_bundle.build(tmp_path / "b.tar.gz", package_dir=shipped)

    assert first == second
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = [info.name for info in tar.getmembers()]
        modes = {info.name: info.mode for info in tar.getmembers()}
        sums = tar.extractfile("packages/SHA256SUMS").read().decode()  # type: ignore[union-attr]
    assert [n for n in names if n.startswith("packages")] == [
        "packages",
        *sorted(["packages/SHA256SUMS", *(f"packages/{name}" for name in debs)]),
    ]
    assert {modes[f"packages/{name}"] for name in debs} == {0o644}
    assert sums == "".join(f"{hashlib.sha256(debs[name]).hexdigest()}  {name}\n" for name in sorted(debs))
    # install.sh takes them from where the bundle puts them, checked against that list.
    install = INSTALL_SH.read_text()
    assert 'shipped=("$root"/packages/*.deb)' in install
    assert "sha256sum --check --strict --quiet SHA256SUMS" in install


def test_packages_without_each_pin_at_its_version_are_refused(tmp_path: Path) -> None:
    pins = build_bundle.debian_pins()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nginx=1\.22\.1-9\+deb12u12 \(it holds none\)"):
        build_bundle.build(tmp_path / "a.tar.gz", package_dir=tmp_path / "empty")
    older = _debs(tmp_path / "older", {**pins, "nginx": "1.22.1-9+deb12u1"})
    assert older
    with pytest.raises(FileNotFoundError, match=r"nginx=1\.22\.1-9\+deb12u12 \(it holds 1\.22\.1-9\+deb12u1\)"):
        build_bundle.build(tmp_path / "b.tar.gz", package_dir=tmp_path / "older")


def test_a_tree_without_the_pins_is_refused(tmp_path: Path) -> None:
    """install.sh installs what debian-packages.txt pins: no bundle ships without it."""
    tree = tmp_path / "tree"
    for source in build_bundle.SOURCES:
        shutil.copytree(build_bundle.REPO / source, tree / source)
    (tree / build_bundle.PINS).unlink()
    with pytest.raises(FileNotFoundError, match=r"debian-packages\.txt"):
        build_bundle.build(tmp_path / "a.tar.gz", root=tree)


def test_the_builder_prints_the_bundles_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "dist" / "hosp-proxy-bundle.tar.gz"

    assert build_bundle.main(["--output", str(output)]) == 0

    assert capsys.readouterr().out == f"{hashlib.sha256(output.read_bytes()).hexdigest()}  {output}\n"


# ------------------------------------------------- what install.sh writes and reads


def _settings_written_by_install() -> dict[str, str]:
    body = re.search(r"<<SETTINGS\n(.*?)^SETTINGS$", INSTALL_SH.read_text(), re.S | re.M)
    assert body, "install.sh writes no proxy.env"
    return dict(re.findall(r"^(\w+)=(.*)$", body.group(1), re.M))


def test_install_writes_exactly_the_settings_the_scripts_read() -> None:
    """proxy.env is the one place of the settings: install.sh writes each name that
    proxy-env.sh reads, and nothing it would refuse."""
    read = set(re.findall(r"^\s+(\w+)\) \1=\$value ;;$", (BUNDLE_DIR / "proxy-env.sh").read_text(), re.M))
    assert read
    assert set(_settings_written_by_install()) == read


def test_only_render_nginx_sh_runs_render_py() -> None:
    """render.py's options are decided in one script, which install and the refresh share."""
    for script in _shell_scripts():
        runs_render = re.search(r"\bpython3\b.*render", script.read_text())
        assert bool(runs_render) == (script == RENDER_SH), script.name
    assert re.search(r'^"\$here/render-nginx\.sh"', REFRESH_SH.read_text(), re.M)
    assert re.search(r'^"\$bundle/origin-secret-refresh\.sh" --force$', INSTALL_SH.read_text(), re.M)


def _agent_files() -> list[dict[str, str]]:
    config = json.loads(AGENT_CONFIG.read_text())
    return list(config["logs"]["logs_collected"]["files"]["collect_list"])


def test_install_fills_in_every_log_group_of_the_agent_config() -> None:
    """Each @NAME@ of cloudwatch-agent.json is replaced from a value install.sh requires."""
    install = INSTALL_SH.read_text()
    placeholders = set(re.findall(r"@(\w+)@", AGENT_CONFIG.read_text()))
    replaced = set(re.findall(r"s\|@(\w+)@\|\$\1\|", install))
    required = set(re.findall(r"^require (\w+) ", install, re.M))
    assert placeholders == {entry["log_group_name"].strip("@") for entry in _agent_files()}
    assert placeholders == replaced
    assert placeholders <= required


def test_every_log_nginx_writes_is_shipped() -> None:
    """render-nginx.sh keeps the production variant's log paths; the agent ships both."""
    production = ProxySettings.for_variant("production", "hosp.internal:80", Path("/unused"))
    shipped = {entry["file_path"] for entry in _agent_files()}
    assert {production.access_log, production.error_log} <= shipped
    assert not re.search(r"--(access|error)-log\b", RENDER_SH.read_text())


def test_log_timestamps_are_read_in_the_timezone_nginx_writes_them() -> None:
    """NGINX writes local time; the agent must parse it in that same zone, or every
    event lands hours off in CloudWatch."""
    match = re.search(r"^Environment=TZ=(\S+)\s*$", NGINX_DROP_IN.read_text(), re.M)
    nginx_tz = match.group(1) if match else None
    for entry in _agent_files():
        assert entry["timezone"] == nginx_tz, entry["file_path"]


# ------------------------------------------------------- the render step, for real


# How the tests ask the running NGINX whether it accepts a value: as the refresh's own check
# does, a method the API does not use, which the proxy answers itself (405) once the origin
# header is accepted (403 comes first), with the first public name as Host. Not the check's
# method, so that these tests do not lean on its choice.
ASK_METHOD = "MKCOL"


class Instance:
    """An instance's /etc/hosp-proxy and NGINX config in a temporary directory, with
    stand-ins for the AWS CLI, systemctl and python3 first on PATH; after `start_nginx`,
    the real NGINX running from that config on free loopback ports."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.env_file = tmp_path / "proxy.env"
        self.secret_file = tmp_path / "origin-secret"
        self.conf = tmp_path / "nginx.conf"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.public_port = free_port()
        # Production's 8081 is the local stack's too: a free port (render.py --internal-listen).
        self.internal_listen = f"127.0.0.1:{free_port()}"
        self.nginx: subprocess.Popen[bytes] | None = None
        settings = {
            "AWS_DEFAULT_REGION": "eu-west-2",
            # nginx -t resolves both names: loopback ones.
            "HOSP_UPSTREAM": "localhost:9000",
            "INTERCEPTOR_HOST": "localhost",
            "PUBLIC_NAMES": ",".join(PUBLIC_NAMES),
            "PUBLIC_LISTEN": f"127.0.0.1:{self.public_port}",
            "ORIGIN_SECRET_ARN": SECRET_ARN,
            "ORIGIN_SECRET_FILE": str(self.secret_file),
            "NGINX_CONF": str(self.conf),
        }
        assert set(settings) == set(_settings_written_by_install())
        self.env_file.write_text("# a test's proxy.env\n" + "".join(f"{k}={v}\n" for k, v in settings.items()))
        self._stand_in(
            "aws",
            'printf \'%s\\n\' "$@" >>"$STATE/aws-args"\n'
            '[ ! -f "$STATE/aws-fails" ] || { echo "An error occurred (AccessDeniedException)" >&2; exit 254; }\n'
            'cat "$STATE/secret-string"\n',
        )
        # As with Debian's nginx.service: is-active while the NGINX that start_nginx
        # started runs; reload (its ExecReload) sends the master a HUP and returns 0 at
        # once, whatever the master then makes of the new config. With reload-fails,
        # systemctl fails; with reload-not-taken, it returns 0 without the HUP: a reload
        # the master never took. The production render puts the pid file in /run; this
        # NGINX keeps it in the test's directory, the one line changed before each load.
        self._stand_in(
            "systemctl",
            'echo "$*" >>"$STATE/systemctl-calls"\n'
            'master=$(cat "$STATE/nginx-master" 2>/dev/null || true)\n'
            "case $1 in\n"
            '    is-active) [ -n "$master" ] && kill -0 "$master" 2>/dev/null ;;\n'
            "    reload)\n"
            '        [ ! -f "$STATE/reload-fails" ] || exit 1\n'
            '        [ ! -f "$STATE/reload-not-taken" ] || exit 0\n'
            '        sed -i "s|^pid .*|pid $STATE/nginx.pid;|" "$STATE/nginx.conf"\n'
            '        kill -HUP "$master"\n'
            "        ;;\n"
            "    *) exit 1 ;;\n"
            "esac\n",
        )
        # Records every python3 command line and environment (the refresh's parsing and
        # check, render.py), to show that no value is in either.
        self._stand_in(
            "python3",
            'printf \'%s\\n\' "$@" >>"$STATE/python3-args"\n'
            'env >>"$STATE/python3-env"\n'
            f'exec {_tool("python3", "python3")} "$@"\n',
        )
        self.outputs: list[str] = []

    def _stand_in(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/usr/bin/env bash\nset -eu\n" + body)
        path.chmod(0o755)

    @property
    def local_options(self) -> list[str]:
        """This machine's log paths and user, and loopback ports; everything
        else as production."""
        return [
            "--user",
            " ".join(unprivileged_user()),
            "--access-log",
            str(self.dir / "access.json"),
            "--error-log",
            str(self.dir / "error.log"),
            "--internal-listen",
            self.internal_listen,
        ]

    def environment(self, nginx: str | None = None) -> dict[str, str]:
        nginx_dir = str(Path(nginx or nginx_binary()).parent)
        return {
            "HOSP_PROXY_ENV": str(self.env_file),
            "STATE": str(self.dir),
            "PATH": f"{self.bin}:{nginx_dir}:/usr/sbin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }

    def run(self, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(script), *args, *self.local_options],
            capture_output=True,
            text=True,
            check=False,
            env=self.environment(),
            timeout=60,
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def secret_string(self, value: object) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        (self.dir / "secret-string").write_text(text + "\n")

    def boot(self, current: str, previous: str = "") -> None:
        """As install.sh: the refresh with NGINX stopped (rendered, not reloaded), then
        NGINX started from what it rendered."""
        self.secret_string({"current": current, "previous": previous})
        result = self.run(REFRESH_SH, "--force")
        assert result.returncode == 0, result.stderr
        assert "not reloaded" in result.stdout
        self.start_nginx()

    def start_nginx(self) -> None:
        """The real NGINX from NGINX_CONF, in the foreground; its master's pid in
        nginx-master, for the stand-in systemctl."""
        config = self.conf.read_text()
        assert len(re.findall(r"^pid /run/nginx\.pid;$", config, re.M)) == 1
        self.conf.write_text(config.replace("pid /run/nginx.pid;", f"pid {self.dir / 'nginx.pid'};"))
        with (self.dir / "nginx.out").open("wb") as out:
            self.nginx = subprocess.Popen(
                [nginx_binary(), "-c", str(self.conf), "-g", "daemon off;"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TZ": "UTC"},
                start_new_session=True,  # its workers in its own group, for stop_nginx
            )
        (self.dir / "nginx-master").write_text(f"{self.nginx.pid}\n")
        deadline = time.monotonic() + 10
        while self._health() != 200:
            assert self.nginx.poll() is None, (self.dir / "nginx.out").read_text()
            assert time.monotonic() < deadline, "NGINX did not answer on its public listener within 10 s"
            time.sleep(0.05)

    def stop_nginx(self) -> None:
        if self.nginx is None:
            return
        if self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait(timeout=10)
        self.nginx = None

    def _request(self, method: str, headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.public_port, timeout=5)
        try:
            connection.request(method, "/" if method != "GET" else "/_proxy/health", headers=headers)
            return connection.getresponse().status
        except OSError:
            return 0
        finally:
            connection.close()

    def _health(self) -> int:
        return self._request("GET", {})

    def ask(self, value: str) -> int:
        """The running NGINX's answer to a public request with `value` as the origin header."""
        return self._request(ASK_METHOD, {"Host": PUBLIC_NAMES[0], "X-Origin-Verify": value})

    def reloads(self) -> int:
        calls = self.dir / "systemctl-calls"
        return calls.read_text().splitlines().count("reload nginx.service") if calls.exists() else 0

    def leftovers(self) -> list[str]:
        """Candidates a run left beside the config or the secret file."""
        return sorted(p.name for p in self.dir.iterdir() if p.name.startswith(("nginx.conf.", "origin-secret.")))

    def assert_no_secret_was_shown(self) -> None:
        """No value in the scripts' output, the AWS CLI's or python3's command lines,
        python3's environment, or NGINX's output and logs."""
        records = ("aws-args", "python3-args", "python3-env", "nginx.out", "error.log", "access.json")
        shown = [*self.outputs, *((self.dir / name).read_text() for name in records if (self.dir / name).exists())]
        assert (self.dir / "python3-args").exists()
        for value in SECRETS:
            assert not any(value in text for text in shown), "a secret value reached the output or a command line"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    machine = Instance(tmp_path)
    yield machine
    machine.stop_nginx()


def _nginx_t(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_render_step_passes_the_real_nginx_t(instance: Instance) -> None:
    instance.secret_file.write_text(f"{CURRENT}\n{PREVIOUS}\n")

    result = instance.run(RENDER_SH)

    assert result.returncode == 0, result.stderr
    assert _nginx_t(instance.conf).returncode == 0, _nginx_t(instance.conf).stderr
    config = instance.conf.read_text()
    # From proxy.env: every public name, both accepted secrets, the public listener, the
    # production variant.
    for name in PUBLIC_NAMES:
        assert name.replace(".", "\\.") in config  # in a regular expression, dots escaped
    assert CURRENT in config
    assert PREVIOUS in config
    assert f"listen 127.0.0.1:{instance.public_port};" in config
    assert "production variant" in config
    # It holds the secrets: its owner's only.
    assert stat.S_IMODE(instance.conf.stat().st_mode) == 0o600
    assert instance.leftovers() == []
    instance.assert_no_secret_was_shown()


def test_install_sets_the_public_listener_to_the_origin_target_groups_port() -> None:
    """The refresh asks the public listener at PUBLIC_LISTEN's port: install.sh's is 80, the
    origin target group's (the network stack), and its own health check asks it there."""
    assert _settings_written_by_install()["PUBLIC_LISTEN"] == "80"
    assert "curl --fail --silent --show-error --max-time 5 --output /dev/null http://127.0.0.1/_proxy/health" in (
        INSTALL_SH.read_text()
    )


def test_a_config_nginx_refuses_never_replaces_the_one_in_place(instance: Instance) -> None:
    instance.secret_file.write_text(f"{CURRENT}\n")
    assert instance.run(RENDER_SH).returncode == 0
    before = instance.conf.read_bytes()
    instance.secret_file.write_text(f"{NEXT}\n")
    failing = instance.bin / "nginx"
    failing.write_text("#!/bin/sh\necho 'nginx: [emerg] refused by the test' >&2\nexit 1\n")
    failing.chmod(0o755)

    result = instance.run(RENDER_SH)

    assert result.returncode != 0
    assert "nginx -t refused the new config" in result.stderr
    assert instance.conf.read_bytes() == before
    assert instance.leftovers() == []
    instance.assert_no_secret_was_shown()


def test_proxy_env_with_a_missing_or_unknown_setting_is_refused(instance: Instance) -> None:
    instance.secret_file.write_text(f"{CURRENT}\n")
    settings = instance.env_file.read_text()
    instance.env_file.write_text(settings.replace("PUBLIC_NAMES=", "PUBLIC_NAME="))

    result = instance.run(RENDER_SH)

    assert result.returncode != 0
    assert "unknown setting 'PUBLIC_NAME'" in result.stderr
    assert not instance.conf.exists()


# ------------------------------------------------------ the origin secret refresh


def test_the_first_refresh_records_the_values_once_the_running_nginx_accepts_them(instance: Instance) -> None:
    # NGINX runs a config of another value, and no values are recorded yet.
    boot = instance.dir / "boot-secret"
    boot.write_text(f"{PREVIOUS}\n")
    assert instance.run(RENDER_SH, "--origin-secret-file", str(boot)).returncode == 0
    instance.start_nginx()
    assert (instance.ask(PREVIOUS), instance.ask(CURRENT)) == (405, 403)
    instance.secret_string({"current": CURRENT, "previous": ""})

    result = instance.run(REFRESH_SH)

    assert result.returncode == 0, result.stderr
    assert "NGINX reloaded and answering with them" in result.stdout
    assert instance.secret_file.read_text() == f"{CURRENT}\n"
    assert stat.S_IMODE(instance.secret_file.stat().st_mode) == 0o600
    assert (instance.ask(CURRENT), instance.ask(PREVIOUS)) == (405, 403)
    assert instance.reloads() == 1
    args = (instance.dir / "aws-args").read_text().split()
    assert args[:2] == ["secretsmanager", "get-secret-value"]
    assert args[args.index("--secret-id") + 1] == SECRET_ARN
    assert instance.leftovers() == []
    instance.assert_no_secret_was_shown()


def test_unchanged_values_change_nothing(instance: Instance) -> None:
    instance.boot(CURRENT)
    rendered = instance.conf.stat().st_mtime_ns, instance.conf.read_bytes()

    result = instance.run(REFRESH_SH)

    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
    assert (instance.conf.stat().st_mtime_ns, instance.conf.read_bytes()) == rendered
    assert instance.reloads() == 0
    assert instance.leftovers() == []


def test_a_rotation_accepts_the_new_and_the_previous_value_then_the_new_one_alone(instance: Instance) -> None:
    instance.boot(CURRENT)
    assert (instance.ask(CURRENT), instance.ask(NEXT)) == (405, 403)

    instance.secret_string({"current": NEXT, "previous": CURRENT})
    result = instance.run(REFRESH_SH)

    assert result.returncode == 0, result.stderr
    assert instance.secret_file.read_text() == f"{NEXT}\n{CURRENT}\n"
    assert (instance.ask(NEXT), instance.ask(CURRENT)) == (405, 405)
    assert instance.reloads() == 1
    # The rotation ends: the previous value is emptied and no longer accepted.
    instance.secret_string({"current": NEXT, "previous": ""})
    result = instance.run(REFRESH_SH)
    assert result.returncode == 0, result.stderr
    assert instance.secret_file.read_text() == f"{NEXT}\n"
    assert (instance.ask(NEXT), instance.ask(CURRENT)) == (405, 403)
    assert instance.reloads() == 2
    instance.assert_no_secret_was_shown()


@pytest.mark.parametrize(
    ("before", "after", "wrong"),
    [
        ((CURRENT, ""), (NEXT, CURRENT), "the current value: 403, not 405"),
        ((NEXT, CURRENT), (NEXT, ""), "a value no longer in the secret: 405, not 403"),
    ],
    ids=["rotation-starts", "rotation-ends"],
)
def test_a_reload_nginx_did_not_take_is_not_recorded_and_the_next_run_tries_again(
    instance: Instance, before: tuple[str, str], after: tuple[str, str], wrong: str
) -> None:
    """systemctl reload returns 0 without NGINX taking the new config: the refresh asks the
    running NGINX for about 10 s, then fails and leaves the values unrecorded."""
    instance.boot(*before)
    recorded = instance.secret_file.read_bytes()
    (instance.dir / "reload-not-taken").touch()
    instance.secret_string({"current": after[0], "previous": after[1]})

    started = time.monotonic()
    result = instance.run(REFRESH_SH)
    elapsed = time.monotonic() - started

    assert result.returncode != 0
    assert f"127.0.0.1:{instance.public_port} still does not answer as the new values say ({wrong})" in result.stderr
    assert f"{instance.secret_file} is unchanged" in result.stderr
    assert 10 <= elapsed < 20
    assert instance.secret_file.read_bytes() == recorded
    assert instance.reloads() == 1
    assert instance.leftovers() == []
    # The running NGINX still answers as before.
    assert all(instance.ask(value) == 405 for value in before if value)

    (instance.dir / "reload-not-taken").unlink()
    result = instance.run(REFRESH_SH)

    assert result.returncode == 0, result.stderr
    assert instance.secret_file.read_text() == "".join(f"{value}\n" for value in after if value)
    assert all(instance.ask(value) == 405 for value in after if value)
    assert all(instance.ask(value) == 403 for value in before if value and value not in after)
    assert instance.reloads() == 2
    instance.assert_no_secret_was_shown()


def test_a_config_the_master_refuses_at_reload_is_not_recorded(instance: Instance) -> None:
    """nginx -t passes, systemctl reload sends the HUP and returns 0, and the master keeps
    its old config: here the new one listens on a port another socket holds, which
    nginx -t does not try and the master cannot bind."""
    instance.boot(CURRENT)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        kept = instance.internal_listen
        instance.internal_listen = f"127.0.0.1:{holder.getsockname()[1]}"
        instance.secret_string({"current": NEXT, "previous": CURRENT})

        result = instance.run(REFRESH_SH)

        assert result.returncode != 0
        assert "(the current value: 403, not 405)" in result.stderr
        assert instance.secret_file.read_text() == f"{CURRENT}\n"
        assert (instance.ask(CURRENT), instance.ask(NEXT)) == (405, 403)
        assert instance.reloads() == 1
        assert "bind()" in (instance.dir / "error.log").read_text()

    # The next run renders and reloads again, and the master takes it.
    instance.internal_listen = kept
    result = instance.run(REFRESH_SH)

    assert result.returncode == 0, result.stderr
    assert instance.secret_file.read_text() == f"{NEXT}\n{CURRENT}\n"
    assert (instance.ask(NEXT), instance.ask(CURRENT)) == (405, 405)
    assert instance.reloads() == 2
    instance.assert_no_secret_was_shown()


@pytest.mark.parametrize(
    "secret_string",
    [
        "not json " + PREVIOUS,
        json.dumps({"previous": PREVIOUS}),
        json.dumps({"current": "", "previous": PREVIOUS}),
        json.dumps({"current": PREVIOUS + " x", "previous": ""}),
        # render.py refuses a value outside the secret's alphabet and length.
        json.dumps({"current": PREVIOUS[:20], "previous": ""}),
        json.dumps({"current": PREVIOUS + "'$(id)", "previous": ""}),
    ],
    ids=["not-json", "no-current", "empty-current", "space", "too-short", "shell-characters"],
)
def test_a_refused_secret_leaves_the_running_config_and_fails(instance: Instance, secret_string: str) -> None:
    instance.boot(CURRENT)
    before = instance.conf.read_bytes(), instance.secret_file.read_bytes()

    instance.secret_string(secret_string)
    result = instance.run(REFRESH_SH)

    assert result.returncode != 0
    assert (instance.conf.read_bytes(), instance.secret_file.read_bytes()) == before
    assert instance.reloads() == 0
    assert instance.ask(CURRENT) == 405
    assert instance.leftovers() == []
    assert PREVIOUS[:20] not in result.stdout + result.stderr
    instance.assert_no_secret_was_shown()


def test_a_public_listener_the_check_cannot_reach_on_loopback_is_refused(instance: Instance) -> None:
    """The refresh asks the public listener on 127.0.0.1: a listener on another address
    could never answer it, so such a setting stops the refresh before anything changes."""
    settings = instance.env_file.read_text()
    instance.env_file.write_text(settings.replace(f"=127.0.0.1:{instance.public_port}\n", "=10.0.0.5:80\n"))
    instance.secret_string({"current": CURRENT, "previous": ""})

    result = instance.run(REFRESH_SH)

    assert result.returncode == 2
    assert "PUBLIC_LISTEN is neither a port nor 127.0.0.1:PORT: '10.0.0.5:80'" in result.stderr
    assert not instance.secret_file.exists()
    assert not instance.conf.exists()
    assert not (instance.dir / "aws-args").exists()


def test_a_failing_aws_cli_fails_the_refresh(instance: Instance) -> None:
    instance.secret_string({"current": CURRENT, "previous": ""})
    (instance.dir / "aws-fails").touch()

    result = instance.run(REFRESH_SH)

    assert result.returncode != 0
    assert "AccessDeniedException" in result.stderr
    assert not instance.secret_file.exists()
    assert not instance.conf.exists()


def test_a_failed_reload_fails_and_the_next_run_tries_again(instance: Instance) -> None:
    instance.boot(PREVIOUS)
    instance.secret_string({"current": CURRENT, "previous": ""})
    (instance.dir / "reload-fails").touch()

    assert instance.run(REFRESH_SH).returncode != 0
    # The values are not recorded as applied...
    assert instance.secret_file.read_text() == f"{PREVIOUS}\n"

    (instance.dir / "reload-fails").unlink()
    result = instance.run(REFRESH_SH)

    # ...so the next run renders and reloads again.
    assert result.returncode == 0, result.stderr
    assert instance.secret_file.read_text() == f"{CURRENT}\n"
    assert (instance.ask(CURRENT), instance.ask(PREVIOUS)) == (405, 403)
    assert instance.reloads() == 2
    instance.assert_no_secret_was_shown()


def test_at_install_force_renders_and_a_stopped_nginx_is_not_reloaded(instance: Instance) -> None:
    instance.secret_string({"current": CURRENT, "previous": PREVIOUS})
    assert instance.run(REFRESH_SH).returncode == 0
    instance.conf.unlink()

    result = instance.run(REFRESH_SH, "--force")

    assert result.returncode == 0, result.stderr
    assert instance.conf.is_file()
    assert _nginx_t(instance.conf).returncode == 0
    assert instance.secret_file.read_text() == f"{CURRENT}\n{PREVIOUS}\n"
    assert instance.reloads() == 0
    assert "not reloaded" in result.stdout
    instance.assert_no_secret_was_shown()


def test_the_refresh_reads_stdin_not_a_file_of_the_cli(instance: Instance) -> None:
    """The value comes through a pipe from the CLI's output: nothing writes it to a
    file other than the secret file, and the CLI is asked for the SecretString only."""
    instance.secret_string({"current": CURRENT, "previous": ""})
    assert instance.run(REFRESH_SH).returncode == 0
    args = (instance.dir / "aws-args").read_text().split()
    assert args[args.index("--query") + 1] == "SecretString"
    assert args[args.index("--output") + 1] == "text"
    holders = sorted(p.name for p in instance.dir.iterdir() if p.is_file() and CURRENT in p.read_text(errors="replace"))
    assert holders == ["nginx.conf", "origin-secret", "secret-string"]


def test_the_bundle_unpacks_with_its_scripts_runnable(tmp_path: Path) -> None:
    root = _unpacked_bundle(tmp_path)
    for script in (INSTALL_SH, RENDER_SH, REFRESH_SH):
        unpacked = root / script.relative_to(build_bundle.REPO)
        assert os.access(unpacked, os.X_OK), unpacked
    # The bundle's layout is the repository's: render-nginx.sh finds render.py beside it.
    assert (root / "infra" / "ec2" / "bundle" / ".." / ".." / "nginx" / "render.py").resolve().is_file()
    assert not (root / "infra" / "nginx" / "__pycache__").exists()


def test_in_a_checkout_only_tracked_files_ship(tmp_path: Path) -> None:
    """A rendered config, a secret or a cache left in the tree never goes to the fleet."""
    checkout = tmp_path / "checkout"
    for source in build_bundle.SOURCES:
        shutil.copytree(build_bundle.REPO / source, checkout / source, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tree"], check=True)
    leftovers = ["infra/nginx/nginx.conf", "infra/ec2/bundle/origin-secret", "infra/nginx/.pytest_cache/v/x"]
    for name in leftovers:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("left behind\n")

    shipped = build_bundle.members(checkout)

    assert not set(leftovers) & set(shipped)
    assert "infra/nginx/.pytest_cache" not in shipped
    assert "infra/nginx/render.py" in shipped
    assert "infra/ec2/bundle/install.sh" in shipped
