"""The IAM policy of each Lambda function of each deployed stage, built from one definition.

Every function gets a role of its own (Chalice's per-function `iam_policy_file`,
with `autogen_policy` false), holding `.chalice/policy-<stage>-<function>.json`,
which grants what that function does and nothing else:

- api_handler serves every route. The note intake queues a note job on the
  note queue. The audit route runs its query in the stage's Athena workgroup,
  which reads the access log table with the caller's credentials and writes
  the CSV to the results bucket, and records each export in the log bucket.
- write_note consumes the note queue (the Lambda event source polls it with
  the function's role), defers a job it will retry, moves a job that can
  never succeed to the dead-letter queue itself, and reads the HOSP service
  account secret.
- Both write their own logs and run in the VPC.

It also writes each stage's REST API resource policy,
`.chalice/policy-<stage>-rest-api.json` (`api_gateway_policy_file`): the API
is PRIVATE and answers only requests that come through the stage's
execute-api VPC endpoint, the one the proxy fleet uses; every other source is
denied. The endpoint's id is the network stack's export, resolved by
CloudFormation when the app stack is deployed.

The lists follow the AWS calls each function makes (chalicelib's boto3
clients): note_jobs.queue (note intake), audit.jobs and audit.export (audit
route), note_worker and service_account (write_note).

Resource names are those infra/notes/queues.yaml, infra/athena/audit.yaml and
the app stack (infra/app/merge.json names the functions and their log groups)
create for the stage, in the account and region the app stack is deployed to.

Every ARN with a region and an account field names both: it is written as
`{"Fn::Sub": "arn:aws:<service>:${AWS::Region}:${AWS::AccountId}:<resource>"}`,
which CloudFormation fills in with the app stack's own region and account when
it creates the role (the policy files reach AWS only through `chalice package`
and the app stack, as the REST API policy's `Fn::ImportValue` does). IAM's
policy variables cannot do this: AWS allows a variable in a Resource ARN only
in its resource part, after the fifth colon, never in the region or account
field (IAM User Guide, "IAM policy elements: Variables and tags", Resource
element), so neither `${aws:PrincipalAccount}` nor `${aws:RequestedRegion}`
may stand there. S3 ARNs have no region or account field; bucket names are
global, so the audit buckets end in the account id, and their ARNs name it
with ${aws:PrincipalAccount} (the account of the role making the request) in
the bucket name, the resource part, where a variable is allowed: another
account's bucket of the same name pattern is out of reach. Those ARNs are
plain strings, never inside a Fn::Sub, which would take the variable for one
of its own.

    python -m infra.iam.policies            # rewrite .chalice/policy-<stage>-*.json
    python -m infra.iam.policies --check    # exit 1 if a committed file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import constants

# Chalice's names of the app's functions: the one serving every route, and the
# SQS handler of app.py (tests/infra/test_iam_policies.py checks the list).
API_HANDLER = "api_handler"
NOTE_WORKER = "write_note"
FUNCTIONS = (API_HANDLER, NOTE_WORKER)
# The file name part of the REST API's resource policy (no function has this name).
REST_API = "rest-api"
# IAM replaces it with the account of the principal making the request (allowed in
# an ARN's resource part only: the S3 bucket names).
PRINCIPAL_ACCOUNT = "${aws:PrincipalAccount}"
# CloudFormation replaces them with the app stack's region and account.
STACK_REGION = "${AWS::Region}"
STACK_ACCOUNT = "${AWS::AccountId}"
# The network stack's export of the stage's execute-api interface endpoint.
EXECUTE_API_ENDPOINT_EXPORT = "ExecuteApiVpcEndpointId"
# API Gateway expands it to every stage, method and path of the API that holds the policy.
WHOLE_API = "execute-api:/*"
CHALICE_DIR = Path(__file__).resolve().parents[2] / ".chalice"
COMMAND = "python -m infra.iam.policies"

Statement = dict[str, Any]
Policy = dict[str, Any]
# A Resource entry: "*", an S3 ARN, or {"Fn::Sub": ARN in the stack's region and account}.
Resource = str | dict[str, str]


def stack_arn(service: str, resource: str) -> dict[str, str]:
    """The ARN of `resource` of `service` in the app stack's region and account."""
    return {"Fn::Sub": f"arn:aws:{service}:{STACK_REGION}:{STACK_ACCOUNT}:{resource}"}


@dataclass(frozen=True)
class StageResources:
    """Names (chalicelib.constants's) and ARN patterns of one stage's resources."""

    stage: str

    @property
    def prefix(self) -> str:
        """Start of every function and queue name of the stage (Chalice: <app>-<stage>)."""
        return constants.prefix(self.stage)

    def export(self, key: str) -> str:
        """Name of a stack export of the stage (infra/network/network.yaml exports <app>-<stage>-<Key>)."""
        return constants.stack(self.stage, key)

    @property
    def note_queue(self) -> str:
        return constants.note_queue(self.stage)

    @property
    def dead_letter_queue(self) -> str:
        return constants.dead_letter_queue(self.stage)

    @property
    def service_secret(self) -> str:
        return constants.service_secret(self.stage)

    @property
    def note_queue_arn(self) -> Resource:
        return stack_arn("sqs", self.note_queue)

    @property
    def dead_letter_queue_arn(self) -> Resource:
        return stack_arn("sqs", self.dead_letter_queue)

    @property
    def service_secret_arn(self) -> Resource:
        # Secrets Manager appends "-" and six random characters to the name in
        # the ARN; "??????" matches exactly those and nothing longer.
        return stack_arn("secretsmanager", f"secret:{self.service_secret}-??????")

    # ------------------------------------------------- audit (infra/athena/audit.yaml)

    @property
    def audit_workgroup(self) -> str:
        return constants.audit_workgroup(self.stage)

    @property
    def audit_database(self) -> str:
        return constants.audit_database(self.stage)

    @property
    def audit_table(self) -> str:
        return "access_log"

    def audit_log_bucket(self, account: str = PRINCIPAL_ACCOUNT) -> str:
        """The audit trail's bucket (Object Lock) in `account`."""
        return constants.audit_log_bucket(self.stage, account)

    def audit_results_bucket(self, account: str = PRINCIPAL_ACCOUNT) -> str:
        """Athena's output bucket in `account`."""
        return constants.audit_results_bucket(self.stage, account)

    @property
    def audit_workgroup_arn(self) -> Resource:
        return stack_arn("athena", f"workgroup/{self.audit_workgroup}")

    @property
    def audit_table_arns(self) -> list[Resource]:
        """What Glue authorises a table read on: the account's catalog, the database, the table."""
        return [
            stack_arn("glue", "catalog"),
            stack_arn("glue", f"database/{self.audit_database}"),
            stack_arn("glue", f"table/{self.audit_database}/{self.audit_table}"),
        ]

    @property
    def audit_log_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.audit_log_bucket()}"

    @property
    def audit_results_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.audit_results_bucket()}"

    def function_name(self, function: str) -> str:
        """Deployed name: the API handler is <app>-<stage>, every other <app>-<stage>-<function>
        (Chalice's naming; infra/app/merge.json sets the same FunctionName)."""
        return self.prefix if function == API_HANDLER else f"{self.prefix}-{function}"

    def log_group(self, function: str) -> str:
        return f"/aws/lambda/{self.function_name(function)}"

    def log_streams_arn(self, function: str) -> Resource:
        """The function's log streams. The app stack creates the group itself
        (infra/app/merge.json, with its retention), so no function may create one."""
        return stack_arn("logs", f"log-group:{self.log_group(function)}:*")


def statements(stage: str, function: str) -> list[Statement]:
    """What `function` of `stage` does, one statement per need, in a stable order."""
    names = StageResources(stage)
    own_logs: Statement = {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [names.log_streams_arn(function)],
    }
    found: list[Statement] = {API_HANDLER: _api_handler, NOTE_WORKER: _note_worker}[function](names)
    return [own_logs, *found, _VPC_NETWORK_INTERFACES]


def _api_handler(names: StageResources) -> list[Statement]:
    return [
        {
            # The note intake queues a note job (chalicelib/note_jobs.py) on
            # the queue it looks up by name (NOTE_QUEUE_NAME).
            "Sid": "QueueNoteJobs",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": [names.note_queue_arn],
        },
        # The audit route. Athena runs a query with the caller's credentials:
        # it reads the table's definition from Glue and the log's objects
        # from S3, and writes the CSV to the workgroup's output location. Both
        # buckets use SSE-S3, so no KMS permission is needed.
        {
            # chalicelib/audit/jobs.py starts a query and follows it
            # (start_query_execution, get_query_execution); it stops none.
            "Sid": "RunAuditQueries",
            "Effect": "Allow",
            "Action": ["athena:StartQueryExecution", "athena:GetQueryExecution"],
            "Resource": [names.audit_workgroup_arn],
        },
        {
            # The table uses partition projection: Athena computes the
            # partitions and never asks Glue for them (no glue:GetPartitions).
            "Sid": "ReadAccessLogTable",
            "Effect": "Allow",
            "Action": ["glue:GetDatabase", "glue:GetTable"],
            "Resource": names.audit_table_arns,
        },
        {
            "Sid": "FindAuditBuckets",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": [names.audit_log_bucket_arn, names.audit_results_bucket_arn],
        },
        {
            # Athena lists each projected day's prefix. Not narrowed by an
            # s3:prefix condition: S3 answers a GET of a missing export record
            # with 404 only to a caller who may list the bucket, and with 403
            # otherwise, and the route tells "not recorded yet" by the 404.
            "Sid": "ListLogBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [names.audit_log_bucket_arn],
        },
        {
            "Sid": "ReadAccessLog",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{names.audit_log_bucket_arn}/access/*"],
        },
        {
            # Every export is itself recorded in the trail (Object Lock applies);
            # later polls of the same export read its record back.
            "Sid": "KeepExportRecords",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": [f"{names.audit_log_bucket_arn}/exports/*"],
        },
        {
            # Athena writes results with the caller's credentials, and a large CSV
            # in parts: the query-result actions of AWS's AmazonAthenaFullAccess
            # (BaseQueryResultsPermissions), less the bucket's creation and settings.
            "Sid": "ListAuditResults",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": [names.audit_results_bucket_arn],
        },
        {
            # The route then reads the CSV once to hash it and presigns a GET of it.
            "Sid": "WriteAuditResults",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [f"{names.audit_results_bucket_arn}/{constants.RESULTS_PREFIX}*"],
        },
        {
            # GET /health says when the note worker's service account has no value yet,
            # from the secret's metadata: the API handler never reads the value.
            "Sid": "CheckHospServiceAccountIsSet",
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret"],
            "Resource": [names.service_secret_arn],
        },
    ]


def _note_worker(names: StageResources) -> list[Statement]:
    return [
        {
            # ReceiveMessage, DeleteMessage and GetQueueAttributes are what the
            # Lambda event source mapping needs to poll the queue with the
            # function's role; ChangeMessageVisibility lets the worker time a
            # job's next attempt. Nothing consumes the dead-letter queue.
            "Sid": "ConsumeNoteJobs",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ],
            "Resource": [names.note_queue_arn],
        },
        {
            # The worker looks both queues up by name: the note queue from the
            # event's source ARN, the dead-letter queue from
            # NOTE_DEAD_LETTER_QUEUE_NAME.
            "Sid": "FindNoteQueues",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl"],
            "Resource": [names.note_queue_arn, names.dead_letter_queue_arn],
        },
        {
            # A job that can never succeed is moved at once, with its reason.
            "Sid": "DeadLetterNoteJobs",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": [names.dead_letter_queue_arn],
        },
        {
            # Encrypted with aws/secretsmanager, so no kms:Decrypt is needed.
            "Sid": "ReadHospServiceAccount",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [names.service_secret_arn],
        },
    ]


# Every function runs in the VPC: Lambda creates and removes the function's
# network interfaces with the function's own role. These are the actions of
# AWS's AWSLambdaVPCAccessExecutionRole, which grants them on "*":
# DescribeNetworkInterfaces and DescribeSubnets work only on "*", and the
# interfaces' ids are not known before Lambda creates them. This is the only
# statement with a "*" resource.
_VPC_NETWORK_INTERFACES: Statement = {
    "Sid": "ManageVpcNetworkInterfaces",
    "Effect": "Allow",
    "Action": [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    "Resource": "*",
}


def rest_api_policy(stage: str) -> Policy:
    """The stage's REST API resource policy: only through the stage's execute-api endpoint.

    The Deny makes the rule hold whatever else may ever allow a call (an Allow
    for another principal added later): a request that did not come through
    the endpoint is refused, and API Gateway checks this before the Lambda runs.
    """
    if stage not in constants.STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(constants.STAGES)}")
    endpoint = {"Fn::ImportValue": StageResources(stage).export(EXECUTE_API_ENDPOINT_EXPORT)}
    invoke = {"Principal": "*", "Action": "execute-api:Invoke", "Resource": WHOLE_API}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyAllButTheFleetsEndpoint",
                "Effect": "Deny",
                **invoke,
                "Condition": {"StringNotEquals": {"aws:SourceVpce": endpoint}},
            },
            {
                "Sid": "AllowTheFleetsEndpoint",
                "Effect": "Allow",
                **invoke,
                "Condition": {"StringEquals": {"aws:SourceVpce": endpoint}},
            },
        ],
    }


def policy(stage: str, function: str = API_HANDLER) -> Policy:
    """The policy of one function of one stage; by default the API handler's, which
    serves every route (the screen route and the audit route)."""
    if stage not in constants.STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(constants.STAGES)}")
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}; functions: {', '.join(FUNCTIONS)}")
    return {"Version": "2012-10-17", "Statement": statements(stage, function)}


def policy_file(stage: str, function: str) -> str:
    """File name of a function's policy in .chalice/ (its `iam_policy_file`); with
    REST_API, the stage's REST API resource policy (its `api_gateway_policy_file`)."""
    return f"policy-{stage}-{function}.json"


def render(stage: str, function: str) -> str:
    """A file's content; `function` is a function's name or REST_API."""
    document = rest_api_policy(stage) if function == REST_API else policy(stage, function)
    return json.dumps(document, indent=2) + "\n"


def _files() -> list[tuple[str, str]]:
    return [(stage, function) for stage in constants.STAGES for function in (*FUNCTIONS, REST_API)]


def stale_files(chalice_dir: Path) -> list[Path]:
    """The policy files whose content is not what `render` builds, and policy files
    no function uses any more (a left-over file would look deployed)."""
    stale = []
    for stage, function in _files():
        path = chalice_dir / policy_file(stage, function)
        if not path.is_file() or path.read_text(encoding="utf-8") != render(stage, function):
            stale.append(path)
    return stale + unused_files(chalice_dir)


def unused_files(chalice_dir: Path) -> list[Path]:
    wanted = {policy_file(stage, function) for stage, function in _files()}
    return sorted(p for p in chalice_dir.glob("policy-*.json") if p.name not in wanted)


def write_all(chalice_dir: Path) -> list[Path]:
    """Write every function's file and remove policy files no function uses."""
    for path in unused_files(chalice_dir):
        path.unlink()
    written = []
    for stage, function in _files():
        path = chalice_dir / policy_file(stage, function)
        path.write_text(render(stage, function), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Write (or check) .chalice/policy-<stage>.json from infra/iam/policies.py."
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a policy file differs from its definition"
    )
    parser.add_argument("--chalice-dir", type=Path, default=CHALICE_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.chalice_dir)
        for path in stale:
            print(f"{path} differs from infra/iam/policies.py; run {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(args.chalice_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
