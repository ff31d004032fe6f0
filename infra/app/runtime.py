"""The Lambda runtime every function runs on: one choice, held wherever it matters.

`chalice package` names each function's runtime after the Python that runs it, so left
alone the runtime would be whatever Python the packager has. Instead it is chosen here:

- every function of the packaged template names LAMBDA_RUNTIME (infra/app/package.py
  checks the template), and `make package` refuses to run on another Python;
- every test runs on it: the Makefile's PYTHON (python3.11) builds .venv, and the locks
  are resolved for it (scripts/lock.py), the Lambda's for the Lambda's platform;
- `make package` prints the runtime's deprecation date and warns when it is less than
  WARN_DAYS away, from cfn-lint's data on Lambda's runtimes (so it moves with cfn-lint's pin).

Moving to another runtime is one commit: LAMBDA_RUNTIME, the Makefile's PYTHON and
`make lock` (tests/unit/test_runtime.py checks that they agree).

Imports only the standard library at the top: `make lock` runs it before .venv exists.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import date
from importlib import resources

LAMBDA_RUNTIME = "python3.11"
# Lambda's python3.11 runs on Amazon Linux 2 (glibc 2.26), x86_64 (the functions name no
# other architecture): manylinux2014 (glibc 2.17) wheels run there, newer ones may not.
LAMBDA_PLATFORM = "x86_64-manylinux2014"
# Warn when the runtime's deprecation is less than this many days away: time to test
# and deploy its successor before functions on it can no longer be created.
WARN_DAYS = 180
LIFECYCLE_DATA = "LmbdRuntimeLifecycle.json"


def python_version(runtime: str) -> tuple[int, int]:
    """(3, 11) for "python3.11"."""
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    if not match:
        raise ValueError(f"not a Python runtime: {runtime!r}")
    return int(match[1]), int(match[2])


def interpreter_problem(version_info: tuple[int, int, int] | None = None) -> str | None:
    """Why this Python (or `version_info`) cannot package the app, or None when it is the runtime's."""
    if version_info is None:
        version_info = (sys.version_info.major, sys.version_info.minor, sys.version_info.micro)
    wanted = python_version(LAMBDA_RUNTIME)
    if tuple(version_info[:2]) == wanted:
        return None
    running = ".".join(str(part) for part in version_info)
    return (
        f"this is Python {running}, but the functions run on {LAMBDA_RUNTIME} (infra/app/runtime.py): every "
        f"environment is built, and the app packaged (chalice names the runtime after the Python that packages), "
        f"with Python {wanted[0]}.{wanted[1]} alone, so that the tests run what is deployed; "
        f"make clean, then make ... PYTHON=python{wanted[0]}.{wanted[1]}"
    )


@dataclass(frozen=True)
class Lifecycle:
    """When Lambda stops supporting a runtime (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)."""

    runtime: str
    deprecated: date
    create_block: date
    update_block: date
    successor: str | None

    def notice(self, today: date) -> tuple[str, bool]:
        """What `make package` prints on `today`, and whether it is a warning."""
        left = (self.deprecated - today).days
        dates = (
            f"deprecated on {self.deprecated}, creating functions on it blocked from {self.create_block}, "
            f"updating them from {self.update_block}"
        )
        successor = f"; its successor is {self.successor}" if self.successor else ""
        if left < 0:
            return f"Lambda runtime {self.runtime}: {dates}: deprecated {-left} days ago{successor}", True
        if left < WARN_DAYS:
            return f"Lambda runtime {self.runtime}: {dates}: {left} days left{successor}", True
        return f"Lambda runtime {self.runtime}: {dates} ({left} days away)", False


def lifecycle(runtime: str = LAMBDA_RUNTIME, data: dict[str, dict[str, str | None]] | None = None) -> Lifecycle:
    """`runtime`'s dates, from cfn-lint's data on Lambda's runtimes unless `data` is given."""
    table = _cfn_lint_lifecycles() if data is None else data
    if runtime not in table:
        raise LookupError(f"cfn-lint's data on Lambda's runtimes has no {runtime!r}")
    entry = table[runtime]
    return Lifecycle(
        runtime=runtime,
        deprecated=date.fromisoformat(str(entry["deprecated"])),
        create_block=date.fromisoformat(str(entry["create-block"])),
        update_block=date.fromisoformat(str(entry["update-block"])),
        successor=entry.get("successor"),
    )


def _cfn_lint_lifecycles() -> dict[str, dict[str, str | None]]:
    """The data cfn-lint's deprecated-runtime rules (W2531, E2531, E2533) read."""
    # cfn-lint is a development package, imported only here (`make lock` runs without it).
    text = resources.files("cfnlint.data.AdditionalSpecs").joinpath(LIFECYCLE_DATA).read_text(encoding="utf-8")
    loaded: dict[str, dict[str, str | None]] = json.loads(text)
    return loaded


def main() -> int:
    """`python -m infra.app.runtime`: whether this Python may build the environments (make runs it first)."""
    problem = interpreter_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"Python {sys.version.split()[0]}: the functions' runtime is {LAMBDA_RUNTIME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
