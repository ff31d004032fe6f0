"""The IAM policy of each deployed stage's Lambdas, built from one definition.

Chalice gives every function of a stage a role with the stage's
`.chalice/policy-<stage>.json` (`autogen_policy` is false), so the file grants
what any of the stage's functions needs, and nothing of another stage:

- the screen interceptor (API handler) sends note jobs to the note queue;
- the note worker receives them through the Lambda event source (which polls
  with the function's role), moves a job that can never succeed to the
  dead-letter queue itself, and reads the HOSP service account secret;
- the audit route (API handler) runs its query in the stage's Athena
  workgroup, which reads the access log table with the caller's credentials
  and writes the CSV to the results bucket, and records each export in the
  log bucket;
- both write their logs, and both run in the VPC.

Resource names are those infra/notes/queues.yaml and infra/athena/audit.yaml
create for the stage. Region and account are `*` in every ARN: the policy
files are static JSON, deployed unchanged to whichever account the stage
lives in, and the stage's own names are what tells one stage's resources
from another's. S3 bucket names are global, so the audit buckets end in the
account id, and their ARNs name it with the policy variable
${aws:PrincipalAccount} (the account of the role making the request):
another account's bucket of the same name pattern is out of reach.

    python -m infra.iam.policies            # rewrite .chalice/policy-<stage>.json
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

APP_NAME = "hosp-reliability"
STAGES = ("dev", "prod")
# IAM replaces it with the account of the principal making the request.
PRINCIPAL_ACCOUNT = "${aws:PrincipalAccount}"
# Athena's output location in the results bucket (AUDIT_RESULTS_PREFIX).
AUDIT_RESULTS_PREFIX = "audit/"
CHALICE_DIR = Path(__file__).resolve().parents[2] / ".chalice"
COMMAND = "python -m infra.iam.policies"

Statement = dict[str, Any]
Policy = dict[str, Any]


@dataclass(frozen=True)
class StageResources:
    """Names and ARN patterns of one stage's resources."""

    stage: str

    @property
    def prefix(self) -> str:
        """Start of every function and queue name of the stage (Chalice: <app>-<stage>)."""
        return f"{APP_NAME}-{self.stage}"

    @property
    def note_queue(self) -> str:
        return f"{self.prefix}-notes.fifo"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-notes-dead.fifo"

    @property
    def service_secret(self) -> str:
        return f"{APP_NAME}/{self.stage}/hosp-service-account"

    @property
    def note_queue_arn(self) -> str:
        return f"arn:aws:sqs:*:*:{self.note_queue}"

    @property
    def dead_letter_queue_arn(self) -> str:
        return f"arn:aws:sqs:*:*:{self.dead_letter_queue}"

    @property
    def service_secret_arn(self) -> str:
        # Secrets Manager appends "-" and six random characters to the name in
        # the ARN; "??????" matches exactly those and nothing longer.
        return f"arn:aws:secretsmanager:*:*:secret:{self.service_secret}-??????"

    # ------------------------------------------------- audit (infra/athena/audit.yaml)

    @property
    def audit_workgroup(self) -> str:
        return f"{self.prefix}-audit"

    @property
    def audit_database(self) -> str:
        # Athena's names hold lower case letters, digits and underscores only.
        return f"{self.prefix.replace('-', '_')}_audit"

    @property
    def audit_table(self) -> str:
        return "access_log"

    def audit_log_bucket(self, account: str = PRINCIPAL_ACCOUNT) -> str:
        """The audit trail's bucket (Object Lock) in `account`."""
        return f"{self.prefix}-audit-log-{account}"

    def audit_results_bucket(self, account: str = PRINCIPAL_ACCOUNT) -> str:
        """Athena's output bucket in `account`."""
        return f"{self.prefix}-audit-results-{account}"

    @property
    def audit_workgroup_arn(self) -> str:
        return f"arn:aws:athena:*:*:workgroup/{self.audit_workgroup}"

    @property
    def audit_table_arns(self) -> list[str]:
        """What Glue authorises a table read on: the account's catalog, the database, the table."""
        return [
            "arn:aws:glue:*:*:catalog",
            f"arn:aws:glue:*:*:database/{self.audit_database}",
            f"arn:aws:glue:*:*:table/{self.audit_database}/{self.audit_table}",
        ]

    @property
    def audit_log_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.audit_log_bucket()}"

    @property
    def audit_results_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.audit_results_bucket()}"

    @property
    def log_group_arns(self) -> list[str]:
        groups = f"arn:aws:logs:*:*:log-group:/aws/lambda/{self.prefix}"
        return [
            # The API handler is named <app>-<stage>, with no suffix: its
            # group (CreateLogGroup) and its streams.
            groups,
            f"{groups}:*",
            # Every other function is <app>-<stage>-<name>: groups and streams.
            f"{groups}-*",
        ]


def statements(stage: str) -> list[Statement]:
    """The stage's statements, one per need, in a stable order."""
    names = StageResources(stage)
    queues = [names.note_queue_arn, names.dead_letter_queue_arn]
    return [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": names.log_group_arns,
        },
        {
            # The interceptor queues jobs; the worker moves a job that can
            # never succeed to the dead-letter queue itself.
            "Sid": "SendNoteJobs",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": queues,
        },
        {
            # Both Lambdas are given queue names (NOTE_QUEUE_NAME,
            # NOTE_DEAD_LETTER_QUEUE_NAME) and look up their URLs.
            "Sid": "FindNoteQueues",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl"],
            "Resource": queues,
        },
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
        # The audit route. Athena runs a query with the caller's credentials:
        # it reads the table's definition from Glue and the log's objects
        # from S3, and writes the CSV to the workgroup's output location. Both
        # buckets use SSE-S3, so no KMS permission is needed.
        {
            "Sid": "RunAuditQueries",
            "Effect": "Allow",
            "Action": ["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:StopQueryExecution"],
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
            "Sid": "ListAuditResults",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [names.audit_results_bucket_arn],
        },
        {
            # Athena writes the CSV (in parts when it is large); the route
            # reads it once to hash it and presigns a GET of it.
            "Sid": "WriteAuditResults",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
            "Resource": [f"{names.audit_results_bucket_arn}/{AUDIT_RESULTS_PREFIX}*"],
        },
        {
            # Encrypted with aws/secretsmanager, so no kms:Decrypt is needed.
            "Sid": "ReadHospServiceAccount",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [names.service_secret_arn],
        },
        {
            # A Lambda in a VPC: Lambda creates and removes the function's
            # network interfaces with the function's own role. These are the
            # actions of AWS's AWSLambdaVPCAccessExecutionRole, which grants
            # them on "*": DescribeNetworkInterfaces works only on "*", and the
            # interfaces' ids are not known before Lambda creates them. This
            # is the only statement with a "*" resource.
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
        },
    ]


def policy(stage: str) -> Policy:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return {"Version": "2012-10-17", "Statement": statements(stage)}


def policy_file(stage: str) -> str:
    """File name of the stage's policy in .chalice/ (its `iam_policy_file`)."""
    return f"policy-{stage}.json"


def render(stage: str) -> str:
    return json.dumps(policy(stage), indent=2) + "\n"


def stale_files(chalice_dir: Path) -> list[Path]:
    """The stages' policy files whose content is not what `render` builds."""
    stale = []
    for stage in STAGES:
        path = chalice_dir / policy_file(stage)
        if not path.is_file() or path.read_text(encoding="utf-8") != render(stage):
            stale.append(path)
    return stale


def write_all(chalice_dir: Path) -> list[Path]:
    written = []
    for stage in STAGES:
        path = chalice_dir / policy_file(stage)
        path.write_text(render(stage), encoding="utf-8")
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
