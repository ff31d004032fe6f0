"""`make package STAGE=...`: the Chalice app of one stage as a CloudFormation template, checked.

    python -m infra.app.package --stage dev     # dist/app-dev/sam.json and deployment.zip

1. `chalice package --stage STAGE --merge-template infra/app/merge.json dist/app-STAGE/`
   writes the SAM template and the code's zip. It needs no AWS credentials and no
   network once the zip of the requirements is cached (.chalice/deployments/), but a
   region: the template itself names none (it uses ${AWS::Region}), so any region does.
   It runs only on the Python of the functions' runtime (infra/app/runtime.py), since
   Chalice names the runtime after the Python that packages; the zip holds the packages
   of the Lambda's lock, requirements.txt (boto3 and botocore included: the functions
   run the versions the tests ran, not the runtime's own).
2. The package is checked: every function names the runtime, the zip holds every locked
   package at its locked version. The runtime's deprecation date is printed, as a
   warning when it is less than 180 days away.
3. cfn-lint (errors and warnings), then checkov (every check, skips only with a reason
   next to them), on the template. The first failure stops it, with exit status 1.

The tests run the same commands (tests/infra/test_chalice_package.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from chalicelib import constants
from infra.app import runtime
from scripts.lock import canonical, locked_versions

REPO = Path(__file__).resolve().parents[2]
MERGE_TEMPLATE = REPO / "infra" / "app" / "merge.json"
DIST = REPO / "dist"
TEMPLATE_NAME = "sam.json"
ZIP_NAME = "deployment.zip"
LAMBDA_LOCK = REPO / "requirements.txt"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
# Chalice asks boto3 for a region even though the template names none.
PACKAGING_REGION = "eu-west-2"
# checkov lives in a virtual environment of its own (Makefile: CHECKOV_VENV).
CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
# A skip's reason is a sentence, not a placeholder.
MIN_SKIP_REASON = 20
MISSING_CHECKOV = f"checkov is not installed at {CHECKOV}; `make checkov` (or `make test`) installs it."


def output_dir(stage: str, dist: Path = DIST) -> Path:
    return dist / f"app-{stage}"


def chalice_package_command(stage: str, out: Path) -> list[str]:
    chalice = Path(sys.executable).with_name("chalice")
    return [str(chalice), "package", "--stage", stage, "--merge-template", str(MERGE_TEMPLATE), str(out)]


def chalice_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", PACKAGING_REGION))
    return env


def checkov_command(templates: Sequence[Path], *, json_output: bool = False) -> list[str]:
    """checkov on CloudFormation templates, offline (--skip-download: no call to its platform)."""
    command = [str(CHECKOV), "--framework", "cloudformation", "--compact", "--skip-download"]
    command += ["--output", "json"] if json_output else ["--quiet"]
    for template in templates:
        command += ["--file", str(template)]
    return command


def scan(templates: Sequence[Path], cwd: Path = REPO) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework run) for `templates`."""
    if not CHECKOV.exists():
        raise FileNotFoundError(MISSING_CHECKOV)
    command = checkov_command(templates, json_output=True)
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    if not result.stdout.strip():
        raise RuntimeError(f"checkov printed no report (exit {result.returncode}): {result.stderr.strip()}")
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def scan_problems(reports: Sequence[dict[str, Any]]) -> list[str]:
    """What makes a scan fail: failed checks, skips without a reason, files checkov could not
    parse, or nothing checked (checkov itself exits 0 on a file it cannot parse)."""
    problems = []
    for report in reports:
        summary = report["summary"]
        if summary["parsing_errors"]:
            problems.append(f"checkov could not parse {summary['parsing_errors']} file(s)")
        if not summary["passed"] and not summary["failed"] and not summary["skipped"]:
            problems.append("checkov checked nothing")
        problems += [
            f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
            for c in report["results"]["failed_checks"]
        ]
        problems += [
            f"{c['check_id']} {c['resource']} ({c['file_path']}) is skipped without a reason"
            for c in report["results"]["skipped_checks"]
            if len((c.get("check_result", {}).get("suppress_comment") or "").strip()) < MIN_SKIP_REASON
        ]
    return problems


class PackagingError(Exception):
    """The app cannot be packaged as asked, or its package is not what the tests ran."""


def package(stage: str, out: Path, env: dict[str, str] | None = None) -> Path:
    """Run `chalice package` for `stage` into `out` (emptied first) and check what it wrote;
    the template's path."""
    if stage not in constants.STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(constants.STAGES)}")
    problem = runtime.interpreter_problem()
    if problem:
        raise PackagingError(problem)
    if out.exists():
        shutil.rmtree(out)
    command = chalice_package_command(stage, out)
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=REPO, env=env or chalice_environment(), check=False)
    if result.returncode != 0:
        raise PackagingError(f"chalice package failed (exit {result.returncode})")
    template = out / TEMPLATE_NAME
    problems = package_problems(template, out / ZIP_NAME, locked_versions(LAMBDA_LOCK))
    if problems:
        raise PackagingError("\n".join(problems))
    return template


def function_runtimes(template: dict[str, Any]) -> dict[str, Any]:
    """Each function's Runtime in a packaged template, by logical id (None where it names none)."""
    return {
        name: resource.get("Properties", {}).get("Runtime")
        for name, resource in template["Resources"].items()
        if resource["Type"] in FUNCTION_TYPES
    }


def zipped_versions(archive: Path) -> dict[str, str]:
    """The version of each distribution in a deployment zip, from its *.dist-info directory."""
    with zipfile.ZipFile(archive) as zipped:
        names = {name.split("/", 1)[0] for name in zipped.namelist()}
    found = (re.fullmatch(r"(.+)-([^-]+)\.dist-info", name) for name in names)
    return {canonical(match[1]): match[2] for match in found if match}


def package_problems(template: Path, archive: Path, locked: dict[str, str]) -> list[str]:
    """How a package differs from what the tests ran: a function on another runtime than
    runtime.LAMBDA_RUNTIME, a locked package missing from the zip or at another version."""
    runtimes = function_runtimes(json.loads(template.read_text(encoding="utf-8")))
    problems = [] if runtimes else [f"{template} has no function"]
    problems += [
        f"function {name} runs on {found}, not {runtime.LAMBDA_RUNTIME}"
        for name, found in runtimes.items()
        if found != runtime.LAMBDA_RUNTIME
    ]
    zipped = zipped_versions(archive)
    for name, version in sorted(locked.items()):
        if name not in zipped:
            problems.append(f"{archive.name} lacks {name} (requirements.txt locks {version})")
        elif zipped[name] != version:
            problems.append(f"{archive.name} holds {name} {zipped[name]}, requirements.txt locks {version}")
    return problems


def lifecycle_notice(today: date) -> tuple[str, bool]:
    """The runtime's lifecycle as `make package` prints it on `today`, and whether it warns."""
    return runtime.lifecycle().notice(today)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.app.package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=constants.STAGES)
    parser.add_argument("--dist", type=Path, default=DIST, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        template = package(args.stage, output_dir(args.stage, args.dist))
    except PackagingError as exc:
        print(exc, file=sys.stderr)
        return 1
    notice, warning = lifecycle_notice(datetime.now(UTC).date())
    print(f"warning: {notice}" if warning else notice, file=sys.stderr if warning else sys.stdout, flush=True)
    lint = [str(Path(sys.executable).with_name("cfn-lint")), str(template)]
    print("+", " ".join(lint), flush=True)
    if subprocess.run(lint, check=False).returncode != 0:
        print(f"cfn-lint found problems in {template}", file=sys.stderr)
        return 1
    try:
        reports = scan([template])
    except (FileNotFoundError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for report in reports:
        summary = report["summary"]
        counts = f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
        print(f"checkov: {counts}")
    problems = scan_problems(reports)
    for problem in problems:
        print(f"checkov: {problem}", file=sys.stderr)
    if problems:
        return 1
    versions = locked_versions(LAMBDA_LOCK)
    bundled = f"boto3 {versions['boto3']}, botocore {versions['botocore']}"
    print(f"packaged {args.stage}: {template} ({runtime.LAMBDA_RUNTIME}, {bundled}; cfn-lint and checkov clean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
