"""The HOSP service account the note worker writes with.

In AWS it is a Secrets Manager secret (HOSP_SERVICE_SECRET_ID) holding
{"username", "password", "staff_id"}, read at most every CACHE_SECONDS so
that a rotated password is picked up without a deploy. Locally the three
HOSP_SERVICE_* variables hold it (the local stack sets them from the
stand-in's demo account). The password is never logged: the dataclass does
not show it in its repr.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib import aws, config

CACHE_SECONDS = 300.0

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
    if secret_id := env.get(config.HOSP_SERVICE_SECRET_ID):
        secret = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        try:
            fields = json.loads(secret)
        except ValueError as exc:
            raise ServiceAccountError(f"secret {config.HOSP_SERVICE_SECRET_ID} is not JSON") from exc
    else:
        fields = {
            "username": env.get(config.HOSP_SERVICE_USERNAME),
            "password": env.get(config.HOSP_SERVICE_PASSWORD),
            "staff_id": env.get(config.HOSP_SERVICE_STAFF_ID),
        }
    account = _account(fields)
    if environ is None:
        _cache["account"] = (now, account)
    return account


def forget() -> None:
    _cache.clear()


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
