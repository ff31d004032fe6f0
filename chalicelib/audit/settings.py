"""The audit route's settings, read from the environment at call time (as chalicelib.config).

In AWS they come from the stacks' outputs through .chalice/config.json; locally
local/stack.py sets them (DuckDB engine, moto's Cognito and S3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Environment variable names, in one place.
AUDIT_ENGINE = "AUDIT_ENGINE"  # "athena" (AWS) or "duckdb" (local)
AUDIT_DATABASE = "AUDIT_DATABASE"  # Glue database of the access-log table
AUDIT_WORKGROUP = "AUDIT_WORKGROUP"  # enforces the result location, encryption and scan cap
AUDIT_RESULTS_BUCKET = "AUDIT_RESULTS_BUCKET"  # where the CSVs land (Athena's output location)
AUDIT_RESULTS_PREFIX = "AUDIT_RESULTS_PREFIX"
AUDIT_LOG_BUCKET = "AUDIT_LOG_BUCKET"  # the Object Lock bucket; export records go under exports/
AUDIT_LOCAL_LOG = "AUDIT_LOCAL_LOG"  # DuckDB engine: the proxy's access log file(s), a glob
# DuckDB engine: where a job writes its CSV before putting it in the local S3. The local
# stack gives a directory inside its own run directory, so that stacks never share one.
AUDIT_LOCAL_WORK_DIR = "AUDIT_LOCAL_WORK_DIR"
AUDIT_URL_TTL_SECONDS = "AUDIT_URL_TTL_SECONDS"  # presigned URL lifetime, at most 900
AUDIT_COGNITO_ISSUER = "AUDIT_COGNITO_ISSUER"  # https://cognito-idp.<region>.amazonaws.com/<pool id>
AUDIT_COGNITO_JWKS_URL = "AUDIT_COGNITO_JWKS_URL"  # default: <issuer>/.well-known/jwks.json
# The pool's JWKS document itself, given at deploy; when set the keys are never fetched
# (in AWS the Lambdas run in private subnets with no route to Cognito's JWKS URL).
AUDIT_COGNITO_JWKS = "AUDIT_COGNITO_JWKS"
AUDIT_COGNITO_CLIENT_ID = "AUDIT_COGNITO_CLIENT_ID"  # the app client whose access tokens are accepted
AUDIT_ADMIN_GROUP = "AUDIT_ADMIN_GROUP"  # default audit-admins
AUDIT_WAIT_SECONDS = "AUDIT_WAIT_SECONDS"  # how long GET /audit waits for the query before a 202
VARIABLES = (
    AUDIT_ENGINE,
    AUDIT_DATABASE,
    AUDIT_WORKGROUP,
    AUDIT_RESULTS_BUCKET,
    AUDIT_RESULTS_PREFIX,
    AUDIT_LOG_BUCKET,
    AUDIT_LOCAL_LOG,
    AUDIT_LOCAL_WORK_DIR,
    AUDIT_URL_TTL_SECONDS,
    AUDIT_COGNITO_ISSUER,
    AUDIT_COGNITO_JWKS_URL,
    AUDIT_COGNITO_JWKS,
    AUDIT_COGNITO_CLIENT_ID,
    AUDIT_ADMIN_GROUP,
    AUDIT_WAIT_SECONDS,
)

DEFAULT_ADMIN_GROUP = "audit-admins"
MAX_URL_TTL_SECONDS = 900  # 15 minutes: the longest a download link may live
DEFAULT_RESULTS_PREFIX = "audit/"


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
    issuer = env.get(AUDIT_COGNITO_ISSUER, "").strip().rstrip("/")
    client_id = env.get(AUDIT_COGNITO_CLIENT_ID, "").strip()
    required = ((AUDIT_COGNITO_ISSUER, issuer), (AUDIT_COGNITO_CLIENT_ID, client_id))
    missing = [name for name, value in required if not value]
    if missing:
        raise AuditConfigError([f"{name} is not set" for name in missing])
    return CognitoSettings(
        issuer=issuer,
        jwks_url=env.get(AUDIT_COGNITO_JWKS_URL, "").strip() or f"{issuer}/.well-known/jwks.json",
        jwks=env.get(AUDIT_COGNITO_JWKS, "").strip(),
        client_id=client_id,
        admin_group=env.get(AUDIT_ADMIN_GROUP, "").strip() or DEFAULT_ADMIN_GROUP,
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
    engine = env.get(AUDIT_ENGINE, "athena").strip() or "athena"
    if engine not in ENGINES:
        problems.append(f"{AUDIT_ENGINE} must be one of {', '.join(ENGINES)}")
    required = [AUDIT_RESULTS_BUCKET, AUDIT_LOG_BUCKET]
    required += [AUDIT_DATABASE, AUDIT_WORKGROUP] if engine == "athena" else [AUDIT_LOCAL_LOG, AUDIT_LOCAL_WORK_DIR]
    problems += [f"{name} is not set" for name in required if not env.get(name, "").strip()]
    ttl = _number(env, AUDIT_URL_TTL_SECONDS, DEFAULT_URL_TTL_SECONDS, problems)
    if not 1 <= ttl <= MAX_URL_TTL_SECONDS:
        problems.append(f"{AUDIT_URL_TTL_SECONDS} must be between 1 and {MAX_URL_TTL_SECONDS}")
    wait = _number(env, AUDIT_WAIT_SECONDS, DEFAULT_WAIT_SECONDS, problems)
    if not 0 <= wait <= DEFAULT_WAIT_SECONDS:
        problems.append(f"{AUDIT_WAIT_SECONDS} must be between 0 and {DEFAULT_WAIT_SECONDS:g}")
    if problems:
        raise AuditConfigError(problems)
    prefix = env.get(AUDIT_RESULTS_PREFIX, "").strip() or DEFAULT_RESULTS_PREFIX
    return ExportSettings(
        engine=engine,
        database=env.get(AUDIT_DATABASE, "").strip(),
        workgroup=env.get(AUDIT_WORKGROUP, "").strip(),
        results_bucket=env[AUDIT_RESULTS_BUCKET].strip(),
        results_prefix=prefix if prefix.endswith("/") else prefix + "/",
        log_bucket=env[AUDIT_LOG_BUCKET].strip(),
        local_log=env.get(AUDIT_LOCAL_LOG, "").strip(),
        local_work_dir=env.get(AUDIT_LOCAL_WORK_DIR, "").strip(),
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
