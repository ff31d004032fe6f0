"""Build the proxy fleet's bootstrap bundle: a reproducible tar.gz.

    python -m infra.ec2.build_bundle --output dist/hosp-proxy-bundle.tar.gz   (make bundle)

The bundle holds infra/nginx/ (render.py, its templates, the njs script,
dns_refresh.py) and infra/ec2/bundle/ (install.sh and the files it installs),
under their repository paths: an instance unpacks it into /opt/hosp-proxy and
runs /opt/hosp-proxy/infra/ec2/bundle/install.sh (infra/ec2/README.md).

The fleet installs exactly the Debian packages of infra/nginx/debian-packages.txt
(PACKAGE=VERSION lines), the versions the tests run: install.sh reads that file from
the bundle, and the build refuses a tree without it. With --packages DIR the bundle
also holds DIR's .deb files under packages/, with their sha256 in packages/SHA256SUMS;
DIR must hold a .deb of each pinned package at its pinned version (the names
`apt-get download PACKAGE=VERSION` writes). install.sh then installs them rather than
from Debian's mirror: for a fleet without a route to it, or after Debian's archive
dropped a pinned version (infra/ec2/README.md).

The same tree gives the same bytes, whoever builds it and whenever: entries in
sorted order, fixed times, owner root, modes 0755 for directories and scripts
(a file starting with #!) and 0644 for everything else (whatever the checkout's umask), and a
gzip header without a name or time. So its sha256, printed at the end,
identifies the release. Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The directories the bundle holds, relative to the repository.
SOURCES = ("infra/nginx", "infra/ec2/bundle")
# 2000-01-01T00:00:00Z: any fixed time would do; tar warns about times at 0.
MTIME = 946_684_800
# Build leftovers and editor files, never part of a release.
EXCLUDED_DIRS = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", "~", ".swp")


# Where --packages files go in the bundle, and which of them are taken.
PACKAGES = "packages"
PACKAGE_SUFFIX = ".deb"
# The list of their sha256 in the bundle, in sha256sum's format (install.sh checks it).
CHECKSUMS = f"{PACKAGES}/SHA256SUMS"
# The one list of the Debian packages (and versions) the fleet, the tests and `make`
# install; the bundle ships it and install.sh reads it there.
PINS = "infra/nginx/debian-packages.txt"


def members(root: Path = REPO) -> list[str]:
    """The bundle's paths (files and directories), relative to root, in the bundle's order.

    In a git checkout, only the files git tracks: a file left in the tree (a rendered
    nginx.conf, a secret written for a test, a cache) never ships. Elsewhere (an
    exported tree), every regular file but dot-files and build leftovers.
    """
    found: set[str] = set()
    tracked = _tracked(root)
    for source in SOURCES:
        top = root / source
        if not top.is_dir():
            raise FileNotFoundError(f"{top} is not a directory")
        found.update(_parents(source))
        for path in _walk(top):
            name = path.relative_to(root).as_posix()
            if tracked is None or path.is_dir() or name in tracked:
                found.add(name)
    files = {name for name in found if (root / name).is_file()}
    # Directories that hold nothing shipped (say, only untracked files) are left out too.
    return sorted(name for name in found if name in files or any(f.startswith(name + "/") for f in files))


def _tracked(root: Path) -> set[str] | None:
    """The files git tracks under SOURCES, relative to root; None when root is not a checkout."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--full-name", "--", *SOURCES],
            capture_output=True,
            check=True,
        ).stdout
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, check=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    if Path(top).resolve() != root.resolve():
        return None  # root is inside another checkout (a copy under a test's tmp dir, say)
    return {name for name in listed.decode("utf-8").split("\0") if name}


def debian_pins(path: Path = REPO / PINS) -> dict[str, str]:
    """PACKAGE -> VERSION of the pins file: one PACKAGE=VERSION a line, '#' starts a comment."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        package, equals, version = line.partition("=")
        if not equals or not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package) or not re.fullmatch(r"[\w.+:~-]+", version):
            raise ValueError(f"{path}:{number}: not PACKAGE=VERSION: {raw!r}")
        if package in pins:
            raise ValueError(f"{path}:{number}: {package} is pinned twice")
        pins[package] = version
    if not pins:
        raise ValueError(f"{path} pins no package")
    return pins


def deb_name_version(filename: str) -> tuple[str, str]:
    """(package, version) of a .deb named as apt-get download names it: NAME_VERSION_ARCH.deb,
    with an epoch's ':' written %3a."""
    parts = filename.removesuffix(PACKAGE_SUFFIX).split("_")
    if len(parts) != 3 or not filename.endswith(PACKAGE_SUFFIX):
        raise ValueError(f"{filename} is not named NAME_VERSION_ARCH.deb (as apt-get download names it)")
    return parts[0], parts[1].replace("%3a", ":").replace("%3A", ":")


def packages(directory: Path, pins: dict[str, str]) -> dict[str, Path]:
    """The bundle names (packages/NAME) of directory's .deb files, which must include each
    pinned package at its pinned version, and no other version of a pinned package."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    found = {
        f"{PACKAGES}/{path.name}": path
        for path in directory.iterdir()
        if path.is_file() and path.name.endswith(PACKAGE_SUFFIX)
    }
    versions: dict[str, list[str]] = {}
    for name in found:
        package, version = deb_name_version(name.removeprefix(f"{PACKAGES}/"))
        versions.setdefault(package, []).append(version)
    wrong = [
        f"{package}={version} (it holds {', '.join(versions.get(package, [])) or 'none'})"
        for package, version in sorted(pins.items())
        if versions.get(package) != [version]
    ]
    if wrong:
        raise FileNotFoundError(
            f"{directory} must hold one .deb of each pin of {PINS} at its version: "
            f"{'; '.join(wrong)}. Download them with apt-get download PACKAGE=VERSION"
        )
    return found


def checksums(files: dict[str, Path]) -> bytes:
    """sha256sum's lines for the package files, relative to packages/."""
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name.removeprefix(PACKAGES + '/')}\n"
        for name, path in sorted(files.items())
    ]
    return "".join(lines).encode()


def build(output: Path, root: Path = REPO, package_dir: Path | None = None) -> str:
    """Write the bundle to output; return its sha256 (hex)."""
    sources: dict[str, Path | bytes] = {name: root / name for name in members(root)}
    if PINS not in sources:
        raise FileNotFoundError(f"{root / PINS} is not in the bundle: install.sh installs the packages it pins")
    if package_dir is not None:
        shipped = packages(package_dir, debian_pins(root / PINS))
        sources |= {PACKAGES: package_dir, **shipped, CHECKSUMS: checksums(shipped)}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(sources.items()):
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if isinstance(path, Path) and path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = path if isinstance(path, bytes) else path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if data.startswith(b"#!") and not name.startswith(PACKAGES) else 0o644
                tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    # filename="" and mtime=0: the gzip header names no file and no time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=9, mtime=0) as gz:
        gz.write(archive.getvalue())
    data = compressed.getvalue()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _walk(directory: Path) -> Iterator[Path]:
    for path in directory.iterdir():
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; the bundle holds regular files only")
        if path.is_dir():
            if path.name not in EXCLUDED_DIRS and not path.name.startswith("."):
                yield path
                yield from _walk(path)
        elif not path.name.startswith(".") and not path.name.endswith(EXCLUDED_SUFFIXES):
            yield path


def _parents(source: str) -> list[str]:
    """source and the directories above it: "infra", "infra/ec2", "infra/ec2/bundle"."""
    parts = source.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, type=Path, help="the tar.gz to write")
    parser.add_argument(
        "--packages",
        type=Path,
        help=f"a directory of .deb files to ship in the bundle, installed instead of from Debian's mirror: "
        f"each package of {PINS} at its pinned version (apt-get download PACKAGE=VERSION), and any other",
    )
    args = parser.parse_args(argv)
    try:
        digest = build(args.output, package_dir=args.packages)
    except (OSError, ValueError) as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    # sha256sum's format, so that `sha256sum -c` can check a copy.
    print(f"{digest}  {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
