"""The /health answer: whether this stage is configured to reach HOSP and to write notes.

Anyone can call it, so it names problems but never an address. It is cheap: the
configuration is read from the environment, and the one call it makes, whether the
note worker's service account secret has a value (DescribeSecret: metadata, never
the value), is made at most once a minute per container, and only in a stage that
names the secret and is otherwise configured.
"""

from __future__ import annotations

import os
import time

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import config, constants, logs, service_account

SECRET_CHECK_SECONDS = 60.0

# The last answer about the secret: (time.monotonic(), secret id, problem or None).
_checked: list[tuple[float, str, str | None]] = []


def report() -> tuple[int, dict[str, object]]:
    """(HTTP status, body): 200 with the stage when configured, 503 listing the problems."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        return 503, {"status": "misconfigured", "problems": exc.problems}
    problem = _service_account_problem(os.environ.get(constants.HOSP_SERVICE_SECRET_ID, ""))
    if problem:
        return 503, {"status": "misconfigured", "problems": [problem]}
    return 200, {"status": "ok", "stage": settings.stage}


def forget() -> None:
    _checked.clear()


def _service_account_problem(secret_id: str) -> str | None:
    if not secret_id:
        return None  # locally the account comes from the environment (service_account)
    now = time.monotonic()
    if _checked and _checked[0][1] == secret_id and now - _checked[0][0] < SECRET_CHECK_SECONDS:
        return _checked[0][2]
    try:
        problem = service_account.value_problem(secret_id)
    except (ClientError, BotoCoreError) as exc:  # Secrets Manager unreachable: not a finding about the secret
        logs.warning("health_secret_check_failed", reason=type(exc).__name__)
        return None
    _checked[:] = [(now, secret_id, problem)]
    return problem
