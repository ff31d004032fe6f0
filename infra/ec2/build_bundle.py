"""Build the proxy fleet's bootstrap bundle: a reproducible tar.gz.

    python -m infra.ec2.build_bundle --output dist/hosp-proxy-bundle.tar.gz   (make bundle)

The bundle holds infra/nginx/ (render.py, its templates, the njs script,
dns_refresh.py) and infra/ec2/bundle/ (install.sh and the files it installs),
under their repository paths: an instance unpacks it into /opt/hosp-proxy and
runs /opt/hosp-proxy/infra/ec2/bundle/install.sh (infra/ec2/README.md).

With --packages DIR it also holds DIR's RPM files and signing keys (*.rpm, *.key)
under packages/: install.sh then installs NGINX and njs from them instead of from
nginx.org, for a fleet without a route to the internet (infra/ec2/README.md).

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
PACKAGE_SUFFIXES = (".rpm", ".key")


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


def packages(directory: Path) -> dict[str, Path]:
    """The bundle names (packages/NAME) of directory's RPM files and keys."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    found = {
        f"{PACKAGES}/{path.name}": path
        for path in directory.iterdir()
        if path.is_file() and path.name.endswith(PACKAGE_SUFFIXES)
    }
    if not any(name.endswith(".rpm") for name in found):
        raise FileNotFoundError(f"{directory} holds no .rpm file")
    return found


def build(output: Path, root: Path = REPO, package_dir: Path | None = None) -> str:
    """Write the bundle to output; return its sha256 (hex)."""
    sources = {name: root / name for name in members(root)}
    if package_dir is not None:
        sources |= {PACKAGES: package_dir, **packages(package_dir)}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(sources.items()):
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
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
        help="a directory of RPM files (nginx, nginx-module-njs) and their signing key (*.key) to ship "
        "in the bundle, installed instead of nginx.org's repository",
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
