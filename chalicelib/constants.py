"""The names the app, the infrastructure, the local stack and the benchmarks agree on, in one place.

- the app's name and its stages;
- the environment variables the Lambdas read, grouped by concern;
- the names of a stage's resources, each derived from the app and the stage
  (the note queues, the HOSP service account's secret, the audit trail's
  workgroup, database and buckets, the stacks and their exports);
- the Cognito group whose members may read the audit trail.

Standard library only, and nothing read at import: chalicelib ships in the
Lambda, and infra/, local/, bench/ and the tests import this module too.

Files that cannot import it keep the names as text: .chalice/config.json (read
by Chalice) and the CloudFormation templates under infra/. Tests compare them
with this module (tests/unit/test_names.py, tests/infra).
"""

from __future__ import annotations

APP_NAME = "hosp-reliability"
LOCAL_STAGE = "local"  # `chalice local` and the local stack; never deployed
STAGES = ("dev", "prod")  # the deployed stages, each with its own stacks

# ---------------------------------------------------------------- environment variables

# The app (chalicelib/config.py).
STAGE = "STAGE"
HOSP_BASE_URL = "HOSP_BASE_URL"
APP_VARIABLES = (STAGE, HOSP_BASE_URL)

# The note queue and its dead-letter queue; by default named after the stage
# (note_queue, dead_letter_queue below).
NOTE_QUEUE_NAME = "NOTE_QUEUE_NAME"
NOTE_DEAD_LETTER_QUEUE_NAME = "NOTE_DEAD_LETTER_QUEUE_NAME"
NOTE_QUEUE_VARIABLES = (NOTE_QUEUE_NAME, NOTE_DEAD_LETTER_QUEUE_NAME)

# The HOSP service account that writes the notes (chalicelib/service_account.py):
# in AWS a Secrets Manager secret {"username", "password", "staff_id"}; locally the
# three variables.
HOSP_SERVICE_SECRET_ID = "HOSP_SERVICE_SECRET_ID"
HOSP_SERVICE_USERNAME = "HOSP_SERVICE_USERNAME"
HOSP_SERVICE_PASSWORD = "HOSP_SERVICE_PASSWORD"
HOSP_SERVICE_STAFF_ID = "HOSP_SERVICE_STAFF_ID"
SERVICE_ACCOUNT_VARIABLES = (
    HOSP_SERVICE_SECRET_ID,
    HOSP_SERVICE_USERNAME,
    HOSP_SERVICE_PASSWORD,
    HOSP_SERVICE_STAFF_ID,
)

# The audit route (chalicelib/audit/settings.py). In AWS they come from the
# stacks' outputs through .chalice/config.json; locally local/stack.py sets them.
AUDIT_ENGINE = "AUDIT_ENGINE"  # "athena" (AWS) or "duckdb" (local)
AUDIT_DATABASE = "AUDIT_DATABASE"  # Glue database of the access-log table
AUDIT_WORKGROUP = "AUDIT_WORKGROUP"  # enforces the result location, encryption and scan cap
AUDIT_RESULTS_BUCKET = "AUDIT_RESULTS_BUCKET"  # where the CSVs land (Athena's output location)
AUDIT_RESULTS_PREFIX = "AUDIT_RESULTS_PREFIX"  # default: RESULTS_PREFIX
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
AUDIT_ADMIN_GROUP = "AUDIT_ADMIN_GROUP"  # default: ADMIN_GROUP
AUDIT_WAIT_SECONDS = "AUDIT_WAIT_SECONDS"  # how long GET /audit waits for the query before a 202
AUDIT_VARIABLES = (
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

# Every variable the app reads: nothing else belongs in a stage's environment_variables,
# and the local stack lets none of them through from the shell.
VARIABLES = (*APP_VARIABLES, *NOTE_QUEUE_VARIABLES, *SERVICE_ACCOUNT_VARIABLES, *AUDIT_VARIABLES)

# ---------------------------------------------------------------- names of things

# The Cognito group whose members may read the audit trail (infra/athena/audit.yaml
# creates it; AUDIT_ADMIN_GROUP may name another).
ADMIN_GROUP = "audit-admins"
# Athena's output location in the results bucket (AUDIT_RESULTS_PREFIX's default).
RESULTS_PREFIX = "audit/"


def prefix(stage: str) -> str:
    """Start of the stage's resource names: <app>-<stage> (Chalice names the API handler so)."""
    return f"{APP_NAME}-{stage}"


def stack(stage: str, key: str) -> str:
    """A stack of the stage (<app>-<stage>-network, ...-app), or an export of one
    (infra/network/network.yaml exports <app>-<stage>-<Key>): the same pattern."""
    return f"{prefix(stage)}-{key}"


def note_queue(stage: str) -> str:
    """The FIFO note queue (infra/notes/queues.yaml)."""
    return f"{prefix(stage)}-notes.fifo"


def dead_letter_queue(stage: str) -> str:
    """The note queue's dead-letter queue (infra/notes/queues.yaml)."""
    return f"{prefix(stage)}-notes-dead.fifo"


def service_secret(stage: str) -> str:
    """The Secrets Manager secret of the HOSP service account (infra/notes/queues.yaml)."""
    return f"{APP_NAME}/{stage}/hosp-service-account"


def audit_workgroup(stage: str) -> str:
    """The Athena workgroup of the audit query (infra/athena/audit.yaml)."""
    return f"{prefix(stage)}-audit"


def audit_database(stage: str) -> str:
    """The Glue database of the access-log table: Athena's names hold lower case
    letters, digits and underscores only."""
    return f"{prefix(stage).replace('-', '_')}_audit"


def audit_log_bucket(stage: str, account: str = "") -> str:
    """The audit trail's Object Lock bucket. Bucket names are global, so a deployed
    stage's ends in its account id; the local stack's (one account, moto's) has none."""
    return _with_account(f"{prefix(stage)}-audit-log", account)


def audit_results_bucket(stage: str, account: str = "") -> str:
    """Athena's output bucket, where the CSVs land; named as audit_log_bucket."""
    return _with_account(f"{prefix(stage)}-audit-results", account)


def _with_account(name: str, account: str) -> str:
    return f"{name}-{account}" if account else name
