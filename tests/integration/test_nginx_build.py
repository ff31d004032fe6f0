"""The tests ran the NGINX build the fleet installs.

infra/nginx/debian-packages.txt pins the Debian packages of the proxy's NGINX; the fleet's
bootstrap installs exactly those versions (infra/ec2/bundle/install.sh), and `make test`
installs them here first (`make system-packages`). These checks fail when this machine
runs something else: another version, or an nginx binary or module file of no pinned
package.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.ec2 import build_bundle
from infra.nginx import render
from local.nginx_proxy import nginx_binary

PINS = build_bundle.debian_pins()
HOW_TO_FIX = (
    "Install the pins as root with `make system-packages`. If Debian's archive no longer has a "
    "pinned version (a security update replaced it), update infra/nginx/debian-packages.txt to "
    "the new versions (docs/runbooks/deploy.md, 'Updating the pinned NGINX packages'): the "
    "fleet's next bundle then installs the same."
)
# Which pinned package ships each module the rendered configuration loads.
MODULE_PACKAGES = {
    "ndk_http_module.so": "libnginx-mod-http-ndk",
    "ngx_http_set_misc_module.so": "libnginx-mod-http-set-misc",
    "ngx_http_lua_module.so": "libnginx-mod-http-lua",
    "ngx_http_js_module.so": "libnginx-mod-http-js",
}

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")


def _owner(path: str) -> str:
    """The package that installed path (dpkg -S), without its architecture."""
    result = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{path} belongs to no installed package. {HOW_TO_FIX}"
    return result.stdout.split(":", 1)[0].strip()


@pytest.mark.parametrize("package", sorted(PINS))
def test_each_pinned_package_is_installed_at_its_version(package: str) -> None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package], capture_output=True, text=True, check=False
    )
    installed = result.stdout.strip() if result.returncode == 0 else "not installed"
    assert installed == f"ii  {PINS[package]}", f"{package}: {installed}, pinned {PINS[package]}. {HOW_TO_FIX}"


def test_the_nginx_the_tests_run_is_the_pinned_packages() -> None:
    binary = str(Path(nginx_binary()).resolve())
    assert _owner(binary) == "nginx", f"{binary} is not Debian's nginx package. {HOW_TO_FIX}"


def test_every_module_the_configuration_loads_is_its_pinned_packages() -> None:
    assert set(render.NGINX_MODULES) == set(MODULE_PACKAGES), "a module was added: say which package ships it"
    for module in render.NGINX_MODULES:
        path = f"{render.MODULES_DIR}/{module}"
        assert Path(path).is_file(), f"{path} is missing. {HOW_TO_FIX}"
        owner = _owner(str(Path(path).resolve()))
        assert owner == MODULE_PACKAGES[module], f"{path} belongs to {owner}. {HOW_TO_FIX}"
        assert owner in PINS, f"{owner} is not pinned in infra/nginx/debian-packages.txt"
