"""The audit trail's buckets on the local AWS (moto): where the CSVs land, and the locked log bucket.

In AWS they are infra/athena/audit.yaml's; here they are made to the same
settings that matter to the code: the log bucket has Object Lock on (so every
write needs a checksum, as in AWS), the results bucket is private.
"""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib import aws, constants

RESULTS_BUCKET = constants.audit_results_bucket(constants.LOCAL_STAGE)
LOG_BUCKET = constants.audit_log_bucket(constants.LOCAL_STAGE)


def client(aws_url: str) -> Any:
    """An S3 client of the local AWS at aws_url."""
    return boto3.client(
        "s3", endpoint_url=aws_url, region_name="eu-west-2",
        aws_access_key_id="local", aws_secret_access_key="local",  # moto accepts any key; never a real one here
        config=aws.CLIENT_CONFIG,
    )  # fmt: skip


def create(s3: Any) -> None:
    """Make both buckets on the local S3 `s3` (a boto3 client); idempotent."""
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    region = s3.meta.region_name
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    if RESULTS_BUCKET not in existing:
        s3.create_bucket(Bucket=RESULTS_BUCKET, **where)
    if LOG_BUCKET not in existing:
        s3.create_bucket(Bucket=LOG_BUCKET, ObjectLockEnabledForBucket=True, **where)
        s3.put_object_lock_configuration(
            Bucket=LOG_BUCKET,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
            },
        )


def environment(access_log: str, work_dir: str) -> dict[str, str]:
    """The audit route's variables for the local stack: DuckDB over `access_log`, these buckets.

    work_dir: where the route writes each CSV before putting it in S3, the stack's own
    (inside its run directory), so that two stacks never write into one directory.
    """
    return {
        constants.AUDIT_ENGINE: "duckdb",
        constants.AUDIT_LOCAL_LOG: access_log,
        constants.AUDIT_LOCAL_WORK_DIR: work_dir,
        constants.AUDIT_RESULTS_BUCKET: RESULTS_BUCKET,
        constants.AUDIT_RESULTS_PREFIX: constants.RESULTS_PREFIX,
        constants.AUDIT_LOG_BUCKET: LOG_BUCKET,
    }
