"""One list of the Debian packages of the proxy's NGINX: infra/nginx/debian-packages.txt.

The fleet's bootstrap (install.sh), the bundle's builder and `make system-packages` (which
`make test` and `make run` run) all take their packages and versions from that file, so
the fleet installs the build the tests ran. No other file names a version of them.
"""

from __future__ import annotations

import os
import re
import subprocess

from infra.ec2 import build_bundle

REPO = build_bundle.REPO
PINS = REPO / build_bundle.PINS
INSTALL_SH = REPO / "infra" / "ec2" / "bundle" / "install.sh"
FIX = (
    "Take the packages and versions from infra/nginx/debian-packages.txt, the one list the fleet "
    "and the tests install (docs/runbooks/deploy.md, 'Updating the pinned NGINX packages')."
)


def test_the_pins_file_is_package_equals_version_lines() -> None:
    pins = build_bundle.debian_pins()
    assert {"nginx", "nginx-common", "libnginx-mod-http-js", "libnginx-mod-http-lua"} <= set(pins)
    assert pins["nginx"] == pins["nginx-common"], "nginx and nginx-common come from one source package"


def test_install_sh_reads_the_pins_from_the_bundle_and_holds_them() -> None:
    install = INSTALL_SH.read_text()
    assert 'done <"$root/infra/nginx/debian-packages.txt"' in install, FIX
    assert '"${apt_install[@]}" "${pins[@]}"' in install, FIX
    assert 'apt-mark hold "${pins[@]%%=*}"' in install, FIX
    assert "--allow-downgrades" in install


def test_the_makefiles_system_packages_installs_the_pins() -> None:
    # Run under `make test` too: without the outer make's variables, and without
    # the "Entering directory" lines a make inside a make prints.
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    env = {name: value for name, value in os.environ.items() if name not in outer}
    recipe = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "--always-make", "system-packages"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "scripts/ensure-system-packages.sh" in recipe
    # The arguments the script gets, as the recipe's shell expands them.
    recipe = subprocess.run(
        ["bash", "-c", recipe.replace("scripts/ensure-system-packages.sh", "echo", 1)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for package, version in build_bundle.debian_pins().items():
        assert f" {package}={version} " in f" {recipe} ", (
            f"make system-packages does not install {package}={version}. {FIX}"
        )


def test_no_other_file_names_a_version_of_the_pinned_packages() -> None:
    """A second list would drift from the first: no tracked file but the pins file names a
    pinned version next to its package."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    names = [name for name in tracked.decode().split("\0") if name and name != build_bundle.PINS]
    pins = build_bundle.debian_pins()
    patterns = [
        re.compile(rf"(?<![\w.-]){re.escape(package)}(?:=|_){re.escape(version.replace(':', '%3a'))}(?![\w.+~-])")
        for package, version in pins.items()
    ] + [
        re.compile(rf"(?<![\w.-]){re.escape(package)}={re.escape(version)}(?![\w.+~-])")
        for package, version in pins.items()
    ]
    found = []
    for name in names:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".gz", ".ico"} or name.startswith("tests/"):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {m.group(0)}" for pattern in patterns for m in pattern.finditer(text)]
    assert not found, f"pinned versions named outside {build_bundle.PINS}: {found}. {FIX}"
