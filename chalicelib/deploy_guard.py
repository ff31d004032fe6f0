"""`chalice deploy` is refused: a stage is deployed by `make deploy` (docs/runbooks/deploy.md).

chalice deploy would create the functions outside CloudFormation, and unsafely so:
outside the VPC (their subnets and security group are the network stack's exports,
which .chalice/config.json cannot name), with policies whose ARNs hold
CloudFormation's ${AWS::AccountId} (IAM refuses them half-way through, leaving what
was created so far), and beside the app stack that `make deploy` owns, each undoing
the other. So app.py refuses it as Chalice loads the app, before any call to AWS.
`chalice package` (what `make package` runs) and `chalice local` are untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

REFUSAL = (
    "chalice deploy is not how this app is deployed: run `make deploy STAGE=dev` (or prod), which packages "
    "the app with chalice package and deploys it with the stacks it needs, in order (`make deploy STAGE=dev "
    "ONLY=app` for the app alone; docs/runbooks/deploy.md says why)"
)
# Chalice's own options before its command; --project-dir takes a value.
_OPTIONS_WITH_A_VALUE = frozenset({"--project-dir"})


def chalice_command(argv: Sequence[str]) -> str | None:
    """The command of a `chalice ...` command line (deploy, package, local), or None for another program."""
    if not argv or Path(argv[0]).name != "chalice":
        return None
    words = iter(argv[1:])
    for word in words:
        if word in _OPTIONS_WITH_A_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def refuse_chalice_deploy(argv: Sequence[str] | None = None) -> None:
    """Exit with REFUSAL when this process is `chalice deploy`."""
    if chalice_command(sys.argv if argv is None else argv) == "deploy":
        raise SystemExit(REFUSAL)
