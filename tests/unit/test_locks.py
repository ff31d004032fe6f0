"""Every lock agrees with its requirements (scripts/lock.py), and .venv is its lock.

A requirements file (requirements/*.in) says what an environment asks for; its lock says
every package make installs, each with its hashes. A failure names the package and says
what to run (`make lock`); these tests need no network.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from scripts.lock import LOCKS, REPO, Lock, canonical, locked_versions

LAMBDA_LOCK, DEV_LOCK = LOCKS[0], LOCKS[1]


@dataclass
class Entry:
    """One package of a lock: its pin, the hashes of its files, and what asked for it."""

    name: str
    version: str
    marker: Marker | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip().rstrip("\\").strip()
        if not line.startswith((" ", "#")) and text:
            requirement = Requirement(text)
            pins = [str(spec.version) for spec in requirement.specifier if spec.operator == "=="]
            assert len(pins) == 1, f"{path.name}: {requirement.name} is not pinned with ==: {line}"
            entries.append(Entry(canonical(requirement.name), pins[0], requirement.marker))
        elif text.startswith("--hash="):
            entries[-1].hashes.append(text.removeprefix("--hash="))
        elif entries and text.startswith("#") and text != "# via":
            entries[-1].via.append(re.sub(r"^#\s*(via\s+)?", "", text))
    return entries


@dataclass
class Asked:
    """What a requirements file asks for, with the files it includes (-r) and its constraints (-c)."""

    requirements: dict[str, tuple[Requirement, Path]] = field(default_factory=dict)
    constraints: list[Path] = field(default_factory=list)


def read_requirements(path: Path, asked: Asked | None = None) -> Asked:
    asked = Asked() if asked is None else asked
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text.startswith("-r "):
            read_requirements((path.parent / text[3:].strip()).resolve(), asked)
        elif text.startswith("-c "):
            asked.constraints.append((path.parent / text[3:].strip()).resolve())
        elif text:
            requirement = Requirement(text)
            asked.requirements[canonical(requirement.name)] = (requirement, path)
    return asked


def disagreements(lock: Lock, root: Path = REPO) -> list[str]:
    """Each way `lock` disagrees with its requirements, naming the package (files relative to `root`)."""

    def _name(path: Path) -> str:
        return str(path.relative_to(root))

    asked = read_requirements(lock.requirements)
    entries = read_lock(lock.lock)
    pinned = {entry.name: entry for entry in entries}
    problems = []
    if "#    make lock" not in lock.lock.read_text(encoding="utf-8").splitlines()[:3]:
        problems.append(f"{_name(lock.lock)} was not written by make lock")
    for name, (requirement, source) in sorted(asked.requirements.items()):
        if name not in pinned:
            problems.append(f"{name}: {_name(source)} asks for it, {_name(lock.lock)} does not lock it (make lock)")
        elif not requirement.specifier.contains(pinned[name].version, prereleases=True):
            problems.append(
                f"{name}: {_name(source)} asks for {requirement.specifier}, "
                f"{_name(lock.lock)} locks {pinned[name].version} (make lock)"
            )
    for constraint in asked.constraints:
        for name, version in sorted(locked_versions(constraint).items()):
            if name in pinned and pinned[name].version != version:
                problems.append(
                    f"{name}: {_name(lock.lock)} locks {pinned[name].version}, "
                    f"its constraint {_name(constraint)} {version} (make lock)"
                )
    problems += [f"{entry.name}: {_name(lock.lock)} has no hash for it" for entry in entries if not entry.hashes]
    # What nothing asks for any more: a package reached from no requirement through the
    # lock's own "via" annotations (a requirement dropped without `make lock`).
    needed = set(asked.requirements)
    while True:
        more = {entry.name for entry in entries if entry.name not in needed and needed & set(entry.via)}
        if not more:
            break
        needed |= more
    problems += [
        f"{entry.name}: {_name(lock.lock)} locks it, but nothing in {_name(lock.requirements)} needs it (make lock)"
        for entry in entries
        if entry.name not in needed
    ]
    return problems


@pytest.mark.parametrize("lock", LOCKS, ids=[str(lock.lock.relative_to(REPO)) for lock in LOCKS])
def test_every_lock_agrees_with_its_requirements(lock: Lock) -> None:
    assert disagreements(lock) == []


def test_the_lambda_lock_holds_boto3_and_botocore() -> None:
    """The functions carry their own, so they run the versions the tests ran."""
    assert {"boto3", "botocore"} <= set(locked_versions(LAMBDA_LOCK.lock))


def test_the_tests_run_the_lambdas_versions() -> None:
    """Every package the Lambda's lock and the dev lock share is at one version in both."""
    lambda_versions, dev_versions = locked_versions(LAMBDA_LOCK.lock), locked_versions(DEV_LOCK.lock)
    assert set(lambda_versions) <= set(dev_versions)
    assert {name: dev_versions[name] for name in lambda_versions} == lambda_versions


def test_this_environment_is_exactly_its_lock() -> None:
    """make installs .venv from requirements/dev.txt and nothing else."""
    entries = read_lock(DEV_LOCK.lock)
    wanted = {entry.name: entry.version for entry in entries if not entry.marker or entry.marker.evaluate()}
    installed = {canonical(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    assert installed == wanted


# --------------------------------------------------------- a lock that disagrees


def _lock(folder: Path, requirements: str, lock: str) -> Lock:
    paths = folder / "example.in", folder / "example.txt"
    paths[0].write_text(requirements, encoding="utf-8")
    paths[1].write_text("# This file was autogenerated by uv via the following command:\n#    make lock\n" + lock)
    return Lock(*paths)


BOTO = """\
boto3==1.44.8 \\
    --hash=sha256:aa
    # via -r example.in
botocore==1.44.8 \\
    --hash=sha256:bb
    # via
    #   -r example.in
    #   boto3
jmespath==1.1.0 \\
    --hash=sha256:cc
    # via botocore
"""


def test_a_lock_that_agrees_has_no_disagreement(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "boto3==1.44.8\nbotocore==1.44.8\n", BOTO)
    assert disagreements(lock, tmp_path) == []


def test_a_pin_moved_without_make_lock_is_named(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "boto3==1.44.8\nbotocore==1.44.18\n", BOTO)
    assert disagreements(lock, tmp_path) == [
        "botocore: example.in asks for ==1.44.18, example.txt locks 1.44.8 (make lock)"
    ]


def test_a_requirement_the_lock_lacks_and_a_package_nothing_needs_are_named(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "botocore==1.44.8\nrequests==2.34.2\n", BOTO)
    assert disagreements(lock, tmp_path) == [
        "requests: example.in asks for it, example.txt does not lock it (make lock)",
        "boto3: example.txt locks it, but nothing in example.in needs it (make lock)",
    ]


def test_a_package_without_a_hash_is_named(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "boto3==1.44.8\nbotocore==1.44.8\n", BOTO.replace("    --hash=sha256:cc\n", ""))
    assert disagreements(lock, tmp_path) == ["jmespath: example.txt has no hash for it"]


def test_a_lock_off_its_constraint_is_named(tmp_path: Path) -> None:
    (tmp_path / "constraint.txt").write_text("jmespath==1.0.1 \\\n    --hash=sha256:dd\n", encoding="utf-8")
    lock = _lock(tmp_path, "-c constraint.txt\nboto3==1.44.8\nbotocore==1.44.8\n", BOTO)
    assert disagreements(lock, tmp_path) == [
        "jmespath: example.txt locks 1.1.0, its constraint constraint.txt 1.0.1 (make lock)"
    ]


def test_a_lock_not_written_by_make_lock_is_named(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "boto3==1.44.8\nbotocore==1.44.8\n", BOTO)
    lock.lock.write_text(BOTO, encoding="utf-8")
    assert disagreements(lock, tmp_path) == ["example.txt was not written by make lock"]
