"""The audit route's settings, read from the environment at call time (as chalicelib.config).

The variables' names are in chalicelib.constants (AUDIT_*).

In AWS they come from the stacks' outputs through .chalice/config.json; locally
local/stack.py sets them (DuckDB engine, moto's Cognito and S3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib import constants

MAX_URL_TTL_SECONDS = 900  # 15 minutes: the longest a download link may live


@dataclass(frozen=True)
class CognitoSettings:
    issuer: str
    jwks_url: str
    jwks: str  # the JWKS document given at deploy, "" when the keys are fetched from jwks_url
    client_id: str
    admin_group: str


def cognito(environ: Mapping[str, str] | None = None) -> CognitoSettings:
    """Who may sign tokens for /audit; raises AuditConfigError naming what is missing."""
    env = os.environ if environ is None else environ
    issuer = env.get(constants.AUDIT_COGNITO_ISSUER, "").strip().rstrip("/")
    client_id = env.get(constants.AUDIT_COGNITO_CLIENT_ID, "").strip()
    required = ((constants.AUDIT_COGNITO_ISSUER, issuer), (constants.AUDIT_COGNITO_CLIENT_ID, client_id))
    missing = [name for name, value in required if not value]
    if missing:
        raise AuditConfigError([f"{name} is not set" for name in missing])
    return CognitoSettings(
        issuer=issuer,
        jwks_url=env.get(constants.AUDIT_COGNITO_JWKS_URL, "").strip() or f"{issuer}/.well-known/jwks.json",
        jwks=env.get(constants.AUDIT_COGNITO_JWKS, "").strip(),
        client_id=client_id,
        admin_group=env.get(constants.AUDIT_ADMIN_GROUP, "").strip() or constants.ADMIN_GROUP,
    )


class AuditConfigError(ValueError):
    """The audit settings are missing or malformed; `problems` names them, never their values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


DEFAULT_WAIT_SECONDS = 20.0  # under API Gateway's 29 s, with the hashing and the records after it
DEFAULT_URL_TTL_SECONDS = MAX_URL_TTL_SECONDS
ENGINES = ("athena", "duckdb")


@dataclass(frozen=True)
class ExportSettings:
    engine: str  # "athena" or "duckdb"
    database: str
    workgroup: str
    results_bucket: str
    results_prefix: str
    log_bucket: str
    local_log: str
    local_work_dir: str  # "" for Athena
    url_ttl_seconds: int
    wait_seconds: float


def export(environ: Mapping[str, str] | None = None) -> ExportSettings:
    """Where the query runs and its results go; raises AuditConfigError naming every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    engine = env.get(constants.AUDIT_ENGINE, "athena").strip() or "athena"
    if engine not in ENGINES:
        problems.append(f"{constants.AUDIT_ENGINE} must be one of {', '.join(ENGINES)}")
    required = [constants.AUDIT_RESULTS_BUCKET, constants.AUDIT_LOG_BUCKET]
    required += (
        [constants.AUDIT_DATABASE, constants.AUDIT_WORKGROUP]
        if engine == "athena"
        else [constants.AUDIT_LOCAL_LOG, constants.AUDIT_LOCAL_WORK_DIR]
    )
    problems += [f"{name} is not set" for name in required if not env.get(name, "").strip()]
    ttl = _number(env, constants.AUDIT_URL_TTL_SECONDS, DEFAULT_URL_TTL_SECONDS, problems)
    if not 1 <= ttl <= MAX_URL_TTL_SECONDS:
        problems.append(f"{constants.AUDIT_URL_TTL_SECONDS} must be between 1 and {MAX_URL_TTL_SECONDS}")
    wait = _number(env, constants.AUDIT_WAIT_SECONDS, DEFAULT_WAIT_SECONDS, problems)
    if not 0 <= wait <= DEFAULT_WAIT_SECONDS:
        problems.append(f"{constants.AUDIT_WAIT_SECONDS} must be between 0 and {DEFAULT_WAIT_SECONDS:g}")
    if problems:
        raise AuditConfigError(problems)
    prefix = env.get(constants.AUDIT_RESULTS_PREFIX, "").strip() or constants.RESULTS_PREFIX
    return ExportSettings(
        engine=engine,
        database=env.get(constants.AUDIT_DATABASE, "").strip(),
        workgroup=env.get(constants.AUDIT_WORKGROUP, "").strip(),
        results_bucket=env[constants.AUDIT_RESULTS_BUCKET].strip(),
        results_prefix=prefix if prefix.endswith("/") else prefix + "/",
        log_bucket=env[constants.AUDIT_LOG_BUCKET].strip(),
        local_log=env.get(constants.AUDIT_LOCAL_LOG, "").strip(),
        local_work_dir=env.get(constants.AUDIT_LOCAL_WORK_DIR, "").strip(),
        url_ttl_seconds=int(ttl),
        wait_seconds=wait,
    )


def _number(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        problems.append(f"{name} must be a number of seconds")
        return default
