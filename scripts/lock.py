"""`make lock`: the lock of every Python environment, resolved from the pins we choose.

Each environment has a requirements file, `requirements/<name>.in` (the packages it asks
for, pinned `==` by hand), and a lock (every package it installs, transitive ones
included, each pinned with the hashes of its files), written by uv's resolver:

| environment | requirements | lock | installed by |
|---|---|---|---|
| the Lambda package | requirements/lambda.in | requirements.txt | `chalice package`, which reads requirements.txt |
| development, tests, local stack | requirements/dev.in | requirements/dev.txt | make, into .venv |
| checkov | requirements/checkov.in | requirements/checkov.txt | make, into .venv/checkov |
| uv itself | requirements/uv.in | requirements/uv.txt | make (pip --require-hashes), into .venv/uv |

make installs each environment from its lock and nothing else (`uv pip sync
--require-hashes`: exactly the lock's packages, every file checked against its hash).
A lock keeps its pins across `make lock` unless its requirements move them;
`make lock UPGRADE=1` moves every package not pinned by hand to its newest release.
tests/unit/test_locks.py fails, naming the package, when a lock and its requirements
disagree.

    python -m scripts.lock --uv .venv/uv/bin/uv [--upgrade]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.app.runtime import LAMBDA_PLATFORM, LAMBDA_RUNTIME, python_version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
COMPILE_COMMAND = "make lock"


@dataclass(frozen=True)
class Lock:
    """One environment: its requirements, its lock, and where it runs."""

    requirements: Path
    lock: Path
    # The Lambda's lock is resolved for the Lambda's platform, wheels only (the zip
    # cannot build anything); the others for any platform that runs the runtime's Python.
    lambda_platform: bool = False

    def compile_command(self, uv: str, *, upgrade: bool = False) -> list[str]:
        major, minor = python_version(LAMBDA_RUNTIME)
        # Paths relative to the checkout: the lock's annotations name them.
        requirements, lock = (str(path.relative_to(REPO)) for path in (self.requirements, self.lock))
        command = [uv, "pip", "compile", requirements, "--output-file", lock]
        command += ["--generate-hashes", "--python-version", f"{major}.{minor}", "--quiet"]
        command += ["--custom-compile-command", COMPILE_COMMAND]
        if self.lambda_platform:
            command += ["--python-platform", LAMBDA_PLATFORM, "--only-binary", ":all:"]
        else:
            command += ["--universal"]
        return [*command, "--upgrade"] if upgrade else command


# In the order they are resolved: dev.in is constrained by the Lambda's lock.
LOCKS = (
    Lock(REQUIREMENTS / "lambda.in", REPO / "requirements.txt", lambda_platform=True),
    Lock(REQUIREMENTS / "dev.in", REQUIREMENTS / "dev.txt"),
    Lock(REQUIREMENTS / "checkov.in", REQUIREMENTS / "checkov.txt"),
    Lock(REQUIREMENTS / "uv.in", REQUIREMENTS / "uv.txt"),
)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them: PyJWT, pyjwt and py_jwt are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """The version a lock pins for each package, by canonical name (the first entry of a
    package a universal lock pins twice, under two markers)."""
    versions: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            versions.setdefault(canonical(match[1]), match[2])
    return versions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lock", description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default=shutil.which("uv"), help="the uv to resolve with (default: uv on PATH)")
    parser.add_argument("--upgrade", action="store_true", help="move every package not pinned by hand")
    args = parser.parse_args(argv)
    if not args.uv:
        print("uv is not installed: `make lock` installs it into .venv/uv", file=sys.stderr)
        return 1
    for lock in LOCKS:
        command = lock.compile_command(args.uv, upgrade=args.upgrade)
        print("+", " ".join(command), flush=True)
        if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
            print(f"could not lock {lock.requirements.relative_to(REPO)}", file=sys.stderr)
            return 1
        print(f"locked {lock.requirements.relative_to(REPO)} -> {lock.lock.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
