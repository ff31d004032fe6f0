"""The audit route's grants in .chalice/policy-<stage>.json, against infra/athena/audit.yaml.

Athena runs the route's query with the route's own credentials, so the policy grants what
Athena does on its behalf (read the table and the log, write the CSV) and what the route
does itself (start and follow the query, record the export in the trail, read and presign
the CSV). Grants are checked by evaluating IAM's matching, policy variable included,
against the ARNs the audit stack would have, not by comparing strings; each Resource is
first given the value CloudFormation gives it in the app stack (ACCOUNT, REGION). The
Athena actions granted are the Athena calls chalicelib makes. The rest of the policy is
checked in test_iam_policies.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from chalicelib import constants
from chalicelib.constants import STAGES
from infra.iam import policies
from infra.iam.policies import PRINCIPAL_ACCOUNT, StageResources
from tests.infra import lambdas
from tests.infra.cfn import ACCOUNT, INFRA, REGION, REPO, Deployed, as_list, decode, resources

AUDIT_TEMPLATE = INFRA / "athena" / "audit.yaml"
OTHER_ACCOUNT = "999999999999"
DAY_OBJECT = "access/day=2026-11-28/hosp-reliability-access-log-1-2026-11-28-10-00-00-abc.gz"
EXPORT_RECORD = "exports/2026-11-28/0b5c2c1e-1d1a-4c1e-9a1e-0123456789ab.json"
RESULT_CSV = "audit/0b5c2c1e-1d1a-4c1e-9a1e-0123456789ab.csv"
# A boto3 Athena call in chalicelib: aws.client("athena").<operation>(
_ATHENA_CALL = re.compile(r"""client\(\s*["']athena["']\s*\)\s*\.\s*([a-z_]+)\(""")
# The app stack, deployed in ACCOUNT and REGION: what CloudFormation makes of a policy's Fn::Sub.
_APP_STACK = Deployed({"Resources": {}})


@pytest.fixture
def policy(stage: str) -> dict[str, Any]:
    return policies.policy(stage)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(AUDIT_TEMPLATE)


@pytest.fixture
def arns(template: dict[str, Any], stage: str) -> dict[str, str]:
    """ARNs of the stage's audit resources as the stack would create them in ACCOUNT."""
    return _arns(Deployed(template, Stage=stage))


# ------------------------------------------------------------------ helpers


def _arns(deployed: Deployed) -> dict[str, str]:
    def only(type_: str) -> str:
        (logical,) = resources(deployed.template, type_)
        return str(deployed.name(logical))

    buckets = {
        ("log" if "-audit-log-" in name else "results"): name
        for name in (deployed.name(b) for b in resources(deployed.template, "AWS::S3::Bucket"))
    }
    database, table = only("AWS::Glue::Database"), only("AWS::Glue::Table")
    return {
        "workgroup": f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{only('AWS::Athena::WorkGroup')}",
        "catalog": f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        "database": f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{database}",
        "table": f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{database}/{table}",
        "log": f"arn:aws:s3:::{buckets['log']}",
        "results": f"arn:aws:s3:::{buckets['results']}",
    }


def athena_actions_called() -> set[str]:
    """The IAM actions of the boto3 Athena operations chalicelib calls (start_query_execution
    is athena:StartQueryExecution)."""
    calls = {
        operation
        for path in (REPO / "chalicelib").rglob("*.py")
        for operation in _ATHENA_CALL.findall(path.read_text(encoding="utf-8"))
    }
    assert calls, "chalicelib makes no Athena call: the pattern no longer finds them"
    return {"athena:" + "".join(word.title() for word in call.split("_")) for call in calls}


def _deployed(resource: Any, account: str = ACCOUNT) -> str:
    """A Resource entry as IAM evaluates it for a role of `account` in the app stack: the
    stack's Fn::Sub filled in, then ${aws:PrincipalAccount} replaced with the role's account."""
    return str(_APP_STACK.value(resource)).replace(PRINCIPAL_ACCOUNT, account)


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` any one."""
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _allows(policy: dict[str, Any], action: str, resource: str, *, account: str = ACCOUNT) -> bool:
    """Whether a role of `account` with this (Allow-only) policy may do `action` on `resource`:
    IAM replaces ${aws:PrincipalAccount} with the role's account before matching."""
    return any(
        statement["Effect"] == "Allow"
        and any(_matches(a, action, ignore_case=True) for a in as_list(statement["Action"]))
        and any(_matches(_deployed(r, account), resource) for r in as_list(statement["Resource"]))
        for statement in policy["Statement"]
    )


# ------------------------------------------------------------- what it may do


def test_the_route_may_run_and_follow_queries_in_its_workgroup(policy: dict[str, Any], arns: dict[str, str]) -> None:
    for action in ("athena:StartQueryExecution", "athena:GetQueryExecution"):
        assert _allows(policy, action, arns["workgroup"]), action


def test_the_athena_actions_granted_are_the_calls_the_route_makes(policy: dict[str, Any]) -> None:
    """Nothing the code never does: no StopQueryExecution, no GetQueryResults (the route
    reads the CSV from S3)."""
    granted = {a for s in policy["Statement"] for a in as_list(s["Action"]) if a.startswith("athena:")}
    assert granted == athena_actions_called() == {"athena:StartQueryExecution", "athena:GetQueryExecution"}


def test_athena_may_read_the_tables_definition_for_the_route(policy: dict[str, Any], arns: dict[str, str]) -> None:
    for action in ("glue:GetDatabase", "glue:GetTable"):
        for resource in ("catalog", "database", "table"):
            assert _allows(policy, action, arns[resource]), (action, resource)


def test_athena_may_read_the_log_for_the_route(policy: dict[str, Any], arns: dict[str, str]) -> None:
    assert _allows(policy, "s3:ListBucket", arns["log"])
    assert _allows(policy, "s3:GetBucketLocation", arns["log"])
    assert _allows(policy, "s3:GetObject", f"{arns['log']}/{DAY_OBJECT}")


def test_athena_may_write_the_csv_where_the_workgroup_puts_it(policy: dict[str, Any], arns: dict[str, str]) -> None:
    assert _allows(policy, "s3:GetBucketLocation", arns["results"])
    assert _allows(policy, "s3:ListBucket", arns["results"])
    # A large CSV goes up in parts, with the route's credentials (AmazonAthenaFullAccess's
    # query-result actions, less creating or configuring the bucket).
    assert _allows(policy, "s3:ListBucketMultipartUploads", arns["results"])
    assert not _allows(policy, "s3:ListBucketMultipartUploads", arns["log"])
    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        assert _allows(policy, action, f"{arns['results']}/{RESULT_CSV}"), action
        assert _allows(policy, action, f"{arns['results']}/{RESULT_CSV}.metadata"), action


def test_the_route_may_record_each_export_in_the_trail(policy: dict[str, Any], arns: dict[str, str]) -> None:
    for action in ("s3:PutObject", "s3:GetObject"):
        assert _allows(policy, action, f"{arns['log']}/{EXPORT_RECORD}"), action


# ---------------------------------------------------------- what it may not


def test_the_route_cannot_write_or_alter_the_log(policy: dict[str, Any], arns: dict[str, str]) -> None:
    """Only Firehose writes log lines, and no one in the route's role deletes or unlocks."""
    assert not _allows(policy, "s3:PutObject", f"{arns['log']}/{DAY_OBJECT}")
    for key in (DAY_OBJECT, EXPORT_RECORD):
        for action in (
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:PutObjectRetention",
            "s3:PutObjectLegalHold",
            "s3:BypassGovernanceRetention",
        ):
            assert not _allows(policy, action, f"{arns['log']}/{key}"), (action, key)
    for action in ("s3:PutBucketPolicy", "s3:PutBucketObjectLockConfiguration", "s3:DeleteBucket"):
        assert not _allows(policy, action, arns["log"]), action


def test_the_route_reads_only_the_logs_and_its_own_records(policy: dict[str, Any], arns: dict[str, str]) -> None:
    """Firehose's error objects (whole failed batches) are not the route's to read."""
    assert not _allows(policy, "s3:GetObject", f"{arns['log']}/errors/processing-failed/day=2026-11-28/x")


def test_the_route_cannot_change_the_table_or_the_workgroup(policy: dict[str, Any], arns: dict[str, str]) -> None:
    for action in ("glue:UpdateTable", "glue:DeleteTable", "glue:CreateTable", "glue:GetPartitions"):
        assert not _allows(policy, action, arns["table"]), action
    for action in (
        "athena:UpdateWorkGroup",
        "athena:DeleteWorkGroup",
        "athena:GetQueryResults",
        "athena:StopQueryExecution",
    ):
        assert not _allows(policy, action, arns["workgroup"]), action


def test_another_accounts_bucket_of_the_same_name_is_out_of_reach(policy: dict[str, Any], stage: str) -> None:
    """Bucket names are global: one named like ours but ending in another account id
    (which anyone can create in their own account) matches no grant."""
    names = StageResources(stage)
    for bucket, key in (
        (names.audit_log_bucket(OTHER_ACCOUNT), EXPORT_RECORD),
        (names.audit_results_bucket(OTHER_ACCOUNT), RESULT_CSV),
    ):
        for action in ("s3:PutObject", "s3:GetObject"):
            assert not _allows(policy, action, f"arn:aws:s3:::{bucket}/{key}"), (bucket, action)
        assert not _allows(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}"), bucket


def test_a_stage_reaches_no_audit_resource_of_another_stage(
    policy: dict[str, Any], template: dict[str, Any], stage: str
) -> None:
    for other in STAGES:
        if other == stage:
            continue
        theirs = _arns(Deployed(template, Stage=other))
        for resource in ("workgroup", "database", "table", "log", "results"):
            arn = theirs[resource]
            for candidate in (arn, f"{arn}/{DAY_OBJECT}", f"{arn}/{EXPORT_RECORD}", f"{arn}/{RESULT_CSV}"):
                reached = [
                    s["Sid"]
                    for s in policy["Statement"]
                    if s["Resource"] != "*" and any(_matches(_deployed(r), candidate) for r in as_list(s["Resource"]))
                ]
                assert not reached, (candidate, reached)


def test_no_kms_permission_is_needed(policy: dict[str, Any], template: dict[str, Any]) -> None:
    """Both buckets use SSE-S3 and the workgroup SSE_S3: the route needs no key, and has none."""
    assert not resources(template, "AWS::KMS::Key")
    actions = {a for s in policy["Statement"] for a in as_list(s["Action"])}
    assert not {a for a in actions if a.startswith("kms:")}


def test_the_stages_audit_settings_name_what_the_policy_grants(stage: str) -> None:
    """.chalice/config.json's audit values (those it sets) are chalicelib.constants's names,
    the ones the policy grants; the buckets' account id is the deploying account's, so only
    its form is checked."""
    names = StageResources(stage)
    environment = lambdas.chalice_config(stage).environment_variables
    expected = {
        constants.AUDIT_DATABASE: re.escape(names.audit_database),
        constants.AUDIT_WORKGROUP: re.escape(names.audit_workgroup),
        constants.AUDIT_RESULTS_PREFIX: re.escape(constants.RESULTS_PREFIX),
        constants.AUDIT_ADMIN_GROUP: re.escape(constants.ADMIN_GROUP),
        constants.AUDIT_LOG_BUCKET: re.escape(constants.audit_log_bucket(stage)) + "-[0-9]{12}",
        constants.AUDIT_RESULTS_BUCKET: re.escape(constants.audit_results_bucket(stage)) + "-[0-9]{12}",
    }
    for variable, pattern in expected.items():
        if variable in environment:
            assert re.fullmatch(pattern, environment[variable]), (variable, environment[variable])
