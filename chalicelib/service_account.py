"""The HOSP service account the note worker writes with.

In AWS it is a Secrets Manager secret (HOSP_SERVICE_SECRET_ID) holding
{"username", "password", "staff_id"}, read at most every CACHE_SECONDS so
that a rotated password is picked up without a deploy. Locally the three
HOSP_SERVICE_* variables hold it (the local stack sets them from the
stand-in's demo account). The password is never logged: the dataclass does
not show it in its repr.

A secret that is missing, has no value yet (the notes stack creates it empty),
cannot be read by the function, or does not hold the account is a configuration
error (ServiceAccountError), not a failure of HOSP: the worker keeps the job
waiting and says so (note_worker.handle). `value_problem` tells GET /health,
from the secret's metadata alone, whether the secret has a value at all.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from chalicelib import aws, constants

CACHE_SECONDS = 300.0
# Errors of Secrets Manager that only an operator can fix: no such secret, no value
# (no AWSCURRENT version), a secret scheduled for deletion, no permission, no key.
CONFIGURATION_ERRORS = frozenset(
    {"ResourceNotFoundException", "InvalidRequestException", "AccessDeniedException", "DecryptionFailure"}
)
PUT_VALUE = "put it with `aws secretsmanager put-secret-value` (docs/runbooks/deploy.md)"

# The account read last, and when (time.monotonic()); one entry at most.
_cache: dict[str, tuple[float, ServiceAccount]] = {}


class ServiceAccountError(RuntimeError):
    """The service account is not configured; the message says what is missing, never a value."""


@dataclass(frozen=True)
class ServiceAccount:
    username: str
    password: str = field(repr=False)
    staff_id: int

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def load(environ: Mapping[str, str] | None = None) -> ServiceAccount:
    now = time.monotonic()
    cached = _cache.get("account")
    if cached is not None and now - cached[0] < CACHE_SECONDS and environ is None:
        return cached[1]
    env = os.environ if environ is None else environ
    if secret_id := env.get(constants.HOSP_SERVICE_SECRET_ID):
        fields = _secret_fields(secret_id)
    else:
        fields = {
            "username": env.get(constants.HOSP_SERVICE_USERNAME),
            "password": env.get(constants.HOSP_SERVICE_PASSWORD),
            "staff_id": env.get(constants.HOSP_SERVICE_STAFF_ID),
        }
    account = _account(fields)
    if environ is None:
        _cache["account"] = (now, account)
    return account


def forget() -> None:
    _cache.clear()


def value_problem(secret_id: str) -> str | None:
    """Why the secret `secret_id` holds no account yet, from its metadata (DescribeSecret:
    the value is never read), or None when it has a current value."""
    try:
        described = aws.client("secretsmanager").describe_secret(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in CONFIGURATION_ERRORS:
            raise
        return f"the HOSP service account's secret cannot be described ({code})"
    if described.get("DeletedDate"):
        return "the HOSP service account's secret is scheduled for deletion"
    stages = described.get("VersionIdsToStages") or {}
    if not any("AWSCURRENT" in labels for labels in stages.values()):
        return f"the HOSP service account's secret has no value yet: {PUT_VALUE}"
    return None


def _secret_fields(secret_id: str) -> object:
    try:
        secret = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in CONFIGURATION_ERRORS:
            raise  # throttled, unavailable: a later attempt may read it
        raise ServiceAccountError(
            f"the secret {constants.HOSP_SERVICE_SECRET_ID} names cannot be read ({code}); "
            f"if it has no value yet, {PUT_VALUE}"
        ) from exc
    if "SecretString" not in secret:
        raise ServiceAccountError(f"the secret {constants.HOSP_SERVICE_SECRET_ID} names holds no text")
    try:
        return json.loads(secret["SecretString"])
    except ValueError as exc:
        raise ServiceAccountError(f"the secret {constants.HOSP_SERVICE_SECRET_ID} names is not JSON") from exc


def _account(fields: object) -> ServiceAccount:
    if not isinstance(fields, dict):
        raise ServiceAccountError("the service account is not a JSON object")
    missing = [name for name in ("username", "password", "staff_id") if not fields.get(name)]
    if missing:
        raise ServiceAccountError(f"the HOSP service account lacks {', '.join(missing)}")
    try:
        staff_id = int(fields["staff_id"])
    except (TypeError, ValueError) as exc:
        raise ServiceAccountError("the service account's staff_id is not a number") from exc
    return ServiceAccount(str(fields["username"]), str(fields["password"]), staff_id)
