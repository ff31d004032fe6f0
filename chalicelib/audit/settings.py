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
AUDIT_TABLE = "AUDIT_TABLE"
AUDIT_WORKGROUP = "AUDIT_WORKGROUP"  # enforces the result location, encryption and scan cap
AUDIT_RESULTS_BUCKET = "AUDIT_RESULTS_BUCKET"  # where the CSVs land (Athena's output location)
AUDIT_RESULTS_PREFIX = "AUDIT_RESULTS_PREFIX"
AUDIT_LOG_BUCKET = "AUDIT_LOG_BUCKET"  # the Object Lock bucket; export records go under exports/
AUDIT_LOCAL_LOG = "AUDIT_LOCAL_LOG"  # DuckDB engine: the proxy's access log file(s), a glob
AUDIT_URL_TTL_SECONDS = "AUDIT_URL_TTL_SECONDS"  # presigned URL lifetime, at most 900
AUDIT_COGNITO_ISSUER = "AUDIT_COGNITO_ISSUER"  # https://cognito-idp.<region>.amazonaws.com/<pool id>
AUDIT_COGNITO_JWKS_URL = "AUDIT_COGNITO_JWKS_URL"  # default: <issuer>/.well-known/jwks.json
AUDIT_COGNITO_CLIENT_ID = "AUDIT_COGNITO_CLIENT_ID"  # the app client whose access tokens are accepted
AUDIT_ADMIN_GROUP = "AUDIT_ADMIN_GROUP"  # default audit-admins
VARIABLES = (
    AUDIT_ENGINE,
    AUDIT_DATABASE,
    AUDIT_TABLE,
    AUDIT_WORKGROUP,
    AUDIT_RESULTS_BUCKET,
    AUDIT_RESULTS_PREFIX,
    AUDIT_LOG_BUCKET,
    AUDIT_LOCAL_LOG,
    AUDIT_URL_TTL_SECONDS,
    AUDIT_COGNITO_ISSUER,
    AUDIT_COGNITO_JWKS_URL,
    AUDIT_COGNITO_CLIENT_ID,
    AUDIT_ADMIN_GROUP,
)

DEFAULT_ADMIN_GROUP = "audit-admins"
MAX_URL_TTL_SECONDS = 900  # 15 minutes: the longest a download link may live
DEFAULT_RESULTS_PREFIX = "audit/"


@dataclass(frozen=True)
class CognitoSettings:
    issuer: str
    jwks_url: str
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
        client_id=client_id,
        admin_group=env.get(AUDIT_ADMIN_GROUP, "").strip() or DEFAULT_ADMIN_GROUP,
    )


class AuditConfigError(ValueError):
    """The audit settings are missing or malformed; `problems` names them, never their values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
