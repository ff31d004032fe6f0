"""infra/athena/audit.yaml: the audit trail's archive, its table, the workgroup and their guards.

Each test states a property of the deployed stack (the trail cannot be altered or read in
clear, the table reads exactly the log's fields where Firehose writes them, a query cannot
escape the workgroup's limits), evaluated for each stage with tests/infra/cfn.py's
Deployed, rather than the template's text. cfn-lint runs on it with every other template
(test_cfn_templates.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib import constants, metrics
from chalicelib.audit import log_schema
from infra.athena import table
from infra.iam.policies import StageResources
from tests.infra.cfn import ACCOUNT, INFRA, REPO, Deployed, as_list, breaches, decode, resources

AUDIT_TEMPLATE = INFRA / "athena" / "audit.yaml"
PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"
TRAIL_SQL = REPO / "chalicelib" / "audit" / "trail.sql"
TOPIC = "arn:aws:sns:eu-west-2:123456789012:hosp-reliability-pager"
HIVE_JSON_SERDE = "org.apache.hive.hcatalog.data.JsonSerDe"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
# Firehose's arrival-day expression in a prefix, and the projected partition in a location.
FIREHOSE_DAY = "!{timestamp:yyyy-MM-dd}"
PROJECTED_DAY = "${day}"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(AUDIT_TEMPLATE)


@pytest.fixture
def deployed(template: dict[str, Any], stage: str) -> Deployed:
    return Deployed(template, Stage=stage)


# ------------------------------------------------------------------ helpers


def _logical(template: dict[str, Any], type_: str) -> str:
    (logical,) = resources(template, type_)
    return logical


def _bucket(deployed: Deployed, name: str) -> tuple[str, dict[str, Any]]:
    """Logical id and evaluated properties of the bucket named `name`."""
    found = [
        (logical, deployed.properties(logical))
        for logical in resources(deployed.template, "AWS::S3::Bucket")
        if deployed.name(logical) == name
    ]
    assert len(found) == 1, f"the template creates {len(found)} buckets named {name}"
    return found[0]


def _buckets(deployed: Deployed, stage: str) -> dict[str, tuple[str, dict[str, Any]]]:
    names = StageResources(stage)
    return {
        "log": _bucket(deployed, names.audit_log_bucket(ACCOUNT)),
        "results": _bucket(deployed, names.audit_results_bucket(ACCOUNT)),
    }


def _bucket_policy(deployed: Deployed, bucket_logical: str) -> list[dict[str, Any]]:
    """Statements of the bucket policy attached to the bucket."""
    found = [
        deployed.properties(logical)["PolicyDocument"]["Statement"]
        for logical in resources(deployed.template, "AWS::S3::BucketPolicy")
        if deployed.properties(logical)["Bucket"] == deployed.name(bucket_logical)
    ]
    assert len(found) == 1, f"{len(found)} bucket policies on {bucket_logical}"
    return list(found[0])


def _table(deployed: Deployed) -> dict[str, Any]:
    table_input: dict[str, Any] = deployed.properties(_logical(deployed.template, "AWS::Glue::Table"))["TableInput"]
    return table_input


def _destination(deployed: Deployed) -> dict[str, Any]:
    stream = deployed.properties(_logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream"))
    destination: dict[str, Any] = stream["ExtendedS3DestinationConfiguration"]
    return destination


def _processors(deployed: Deployed) -> list[tuple[str, dict[str, str]]]:
    processing = _destination(deployed)["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    return [
        (p["Type"], {q["ParameterName"]: q["ParameterValue"] for q in p.get("Parameters", [])})
        for p in processing["Processors"]
    ]


def _role_statements(deployed: Deployed, logical: str) -> list[dict[str, Any]]:
    role = deployed.properties(logical)
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _matches(pattern: str, value: str) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` any one."""
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(_matches(a.lower(), action.lower()) for a in as_list(s["Action"]))
        and any(_matches(r, resource) for r in as_list(s["Resource"]))
        for s in statements
    )


def _alarm(deployed: Deployed, metric: str) -> dict[str, Any]:
    found = [
        deployed.properties(logical)
        for logical in resources(deployed.template, "AWS::CloudWatch::Alarm")
        if deployed.properties(logical).get("MetricName") == metric
    ]
    assert len(found) == 1, f"{len(found)} alarms on {metric}"
    return found[0]


# ------------------------------------------------------------------- names


def test_the_stack_creates_the_names_the_lambda_policy_grants_on(deployed: Deployed, stage: str) -> None:
    """infra/iam/policies.py writes the policy before the stack exists: same names, by construction."""
    names = StageResources(stage)
    buckets = {deployed.name(b) for b in resources(deployed.template, "AWS::S3::Bucket")}
    assert buckets == {names.audit_log_bucket(ACCOUNT), names.audit_results_bucket(ACCOUNT)}
    assert deployed.name(_logical(deployed.template, "AWS::Glue::Database")) == names.audit_database
    assert deployed.name(_logical(deployed.template, "AWS::Glue::Table")) == names.audit_table
    assert deployed.name(_logical(deployed.template, "AWS::Athena::WorkGroup")) == names.audit_workgroup


def test_outputs_give_every_value_the_audit_route_is_configured_with(deployed: Deployed, stage: str) -> None:
    """Each environment variable of chalicelib/audit/settings.py that names a resource of
    this stack has an output whose description names the variable and whose value is the
    resource."""
    names = StageResources(stage)
    expected = {
        constants.AUDIT_DATABASE: names.audit_database,
        constants.AUDIT_WORKGROUP: names.audit_workgroup,
        constants.AUDIT_RESULTS_BUCKET: names.audit_results_bucket(ACCOUNT),
        constants.AUDIT_RESULTS_PREFIX: constants.RESULTS_PREFIX,
        constants.AUDIT_LOG_BUCKET: names.audit_log_bucket(ACCOUNT),
    }
    assert set(expected) <= set(constants.AUDIT_VARIABLES)
    outputs = deployed.template["Outputs"].values()
    for variable, value in expected.items():
        given = [deployed.value(o["Value"]) for o in outputs if f"({variable}" in o["Description"]]
        assert given == [value], variable


def test_the_audit_query_reads_the_table_of_the_stack(deployed: Deployed) -> None:
    """The table's name is not configured: trail.sql names it, in the workgroup's database."""
    sql = TRAIL_SQL.read_text(encoding="utf-8")
    name = deployed.name(_logical(deployed.template, "AWS::Glue::Table"))
    assert re.search(rf"\bFROM\s+{name}\b", sql), f"{TRAIL_SQL} does not read {name}"


# -------------------------------------------------------------- log bucket


def test_the_trail_is_locked_in_compliance_mode_by_default(deployed: Deployed, stage: str) -> None:
    _, bucket = _buckets(deployed, stage)["log"]
    assert bucket["ObjectLockEnabled"] is True
    lock = bucket["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert int(retention["Days"]) >= 365
    assert "Years" not in retention


def test_the_trails_retention_mode_and_days_are_parameters(template: dict[str, Any], stage: str) -> None:
    """GOVERNANCE lets dev try retention out; COMPLIANCE cannot be shortened by anyone."""
    assert set(template["Parameters"]["TrailRetentionMode"]["AllowedValues"]) == {"GOVERNANCE", "COMPLIANCE"}
    changed = Deployed(template, Stage=stage, TrailRetentionMode="GOVERNANCE", TrailRetentionDays="3")
    _, bucket = _buckets(changed, stage)["log"]
    retention = bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], int(retention["Days"])) == ("GOVERNANCE", 3)


def test_the_trail_is_versioned(deployed: Deployed, stage: str) -> None:
    """Object Lock needs versioning: an overwritten or deleted key keeps its locked versions."""
    _, bucket = _buckets(deployed, stage)["log"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"


def test_the_trail_outlives_the_stack(template: dict[str, Any], deployed: Deployed, stage: str) -> None:
    logical, _ = _buckets(deployed, stage)["log"]
    assert template["Resources"][logical].get("DeletionPolicy") == "RetainExceptOnCreate"
    assert template["Resources"][logical].get("UpdateReplacePolicy") == "Retain"


def test_only_the_delivery_stream_may_write_log_lines(deployed: Deployed, stage: str) -> None:
    """A bucket policy denies writes under access/ to every principal but Firehose's role,
    whatever their IAM policies grant."""
    logical, _ = _buckets(deployed, stage)["log"]
    role = _logical_role_of_stream(deployed)
    arn = deployed.name(f"{logical}.Arn")
    denies = [
        s
        for s in _bucket_policy(deployed, logical)
        if s["Effect"] == "Deny"
        and "s3:PutObject" in as_list(s["Action"])
        and any(_matches(r, f"{arn}/access/day=2026-11-28/x.gz") for r in as_list(s["Resource"]))
    ]
    assert len(denies) == 1, denies
    (deny,) = denies
    assert deny["Principal"] == "*"
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": deployed.name(f"{role}.Arn")}}


def _logical_role_of_stream(deployed: Deployed) -> str:
    stream = deployed.template["Resources"][_logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream")]
    role_arn = stream["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"]
    return str(role_arn["Fn::GetAtt"][0])


# ---------------------------------------------------------- both buckets


@pytest.mark.parametrize("which", ["log", "results"])
def test_buckets_are_encrypted_and_private(deployed: Deployed, stage: str, which: str) -> None:
    _, bucket = _buckets(deployed, stage)[which]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    blocks = bucket["PublicAccessBlockConfiguration"]
    assert blocks == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.parametrize("which", ["log", "results"])
def test_buckets_refuse_requests_without_tls(deployed: Deployed, stage: str, which: str) -> None:
    logical, _ = _buckets(deployed, stage)[which]
    arn = deployed.name(f"{logical}.Arn")
    tls = [
        s
        for s in _bucket_policy(deployed, logical)
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(tls) == 1, tls
    (deny,) = tls
    assert deny["Principal"] == "*"
    assert as_list(deny["Action"]) == ["s3:*"]
    assert set(as_list(deny["Resource"])) == {arn, f"{arn}/*"}


def test_exports_expire_within_a_week_and_the_trail_does_not(deployed: Deployed, stage: str) -> None:
    """The CSVs are copies of rows of the trail; the trail is kept by its lock."""
    buckets = _buckets(deployed, stage)
    rules = buckets["results"][1]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if r["Status"] == "Enabled" and "ExpirationInDays" in r]
    assert len(expiring) == 1
    (rule,) = expiring
    assert rule["ExpirationInDays"] <= 7
    assert not {"Prefix", "Filter"} & set(rule), "every result expires, not only some"
    for rule in buckets["log"][1].get("LifecycleConfiguration", {}).get("Rules", []):
        assert not {"ExpirationInDays", "ExpirationDate", "NoncurrentVersionExpiration"} & set(rule), rule


# -------------------------------------------------------------- delivery


def test_the_whole_access_log_of_the_stage_is_subscribed(deployed: Deployed, stage: str) -> None:
    """By default the log group infra/ec2/proxy.yaml creates for the stage, every line of it."""
    proxy = Deployed(decode(PROXY_TEMPLATE), Stage=stage)
    proxy_group = proxy.properties("AccessLogGroup")["LogGroupName"]
    subscription = deployed.properties(_logical(deployed.template, "AWS::Logs::SubscriptionFilter"))
    assert subscription["LogGroupName"] == proxy_group
    assert subscription["FilterPattern"] == ""
    stream = _logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream")
    assert subscription["DestinationArn"] == deployed.name(f"{stream}.Arn")


def test_the_log_group_can_be_given(template: dict[str, Any], stage: str) -> None:
    given = Deployed(template, Stage=stage, AccessLogGroupName="/elsewhere/proxy-access")
    subscription = given.properties(_logical(template, "AWS::Logs::SubscriptionFilter"))
    assert subscription["LogGroupName"] == "/elsewhere/proxy-access"


def test_firehose_unwraps_cloudwatch_logs_batches_into_lines(deployed: Deployed) -> None:
    """Built-in decompression, then message extraction (only the line NGINX wrote), then
    one line per record: no Lambda in the path."""
    processors = _processors(deployed)
    kinds = [kind for kind, _ in processors]
    assert kinds[:2] == ["Decompression", "CloudWatchLogProcessing"]
    assert processors[0][1] == {"CompressionFormat": "GZIP"}
    assert processors[1][1] == {"DataMessageExtraction": "true"}
    assert kinds[2:] == ["AppendDelimiterToRecord"]
    assert "Lambda" not in kinds


def test_firehose_writes_gzip_objects_by_day_into_the_trail(deployed: Deployed, stage: str) -> None:
    destination = _destination(deployed)
    logical, _ = _buckets(deployed, stage)["log"]
    assert destination["BucketARN"] == deployed.name(f"{logical}.Arn")
    assert destination["Prefix"] == f"access/day={FIREHOSE_DAY}/"
    assert destination["CustomTimeZone"] == "UTC"
    assert destination["CompressionFormat"] == "GZIP"
    assert "FileExtension" not in destination  # Firehose's own ".gz", by which Athena gunzips
    hints = destination["BufferingHints"]
    assert 60 <= hints["IntervalInSeconds"] <= 900
    assert 1 <= hints["SizeInMBs"] <= 128


def test_firehose_errors_go_outside_the_table(deployed: Deployed) -> None:
    """Failed batches are kept (with their error type) but never read as log lines."""
    errors = _destination(deployed)["ErrorOutputPrefix"]
    assert "!{firehose:error-output-type}" in errors
    assert not errors.startswith("access/")


def test_firehose_encrypts_what_it_holds_and_logs_its_errors(deployed: Deployed) -> None:
    stream = deployed.properties(_logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream"))
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] in ("AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK")
    logging = _destination(deployed)["CloudWatchLoggingOptions"]
    assert logging["Enabled"] is True
    group = _logical(deployed.template, "AWS::Logs::LogGroup")
    stream_logical = _logical(deployed.template, "AWS::Logs::LogStream")
    assert logging["LogGroupName"] == deployed.name(group)
    assert logging["LogStreamName"] == deployed.name(stream_logical)


def test_the_delivery_role_writes_only_the_log_and_error_prefixes(deployed: Deployed, stage: str) -> None:
    logical, _ = _buckets(deployed, stage)["log"]
    arn = deployed.name(f"{logical}.Arn")
    statements = _role_statements(deployed, _logical_role_of_stream(deployed))
    assert _allows(statements, "s3:PutObject", f"{arn}/access/day=2026-11-28/a.gz")
    assert _allows(statements, "s3:PutObject", f"{arn}/errors/processing-failed/day=2026-11-28/a")
    assert not _allows(statements, "s3:PutObject", f"{arn}/exports/a.json")
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectRetention",
        "s3:BypassGovernanceRetention",
    ):
        assert not _allows(statements, action, f"{arn}/access/day=2026-11-28/a.gz"), action
    results = _buckets(deployed, stage)["results"][0]
    assert not _allows(statements, "s3:PutObject", f"{deployed.name(f'{results}.Arn')}/audit/a.csv")


def test_firehose_alone_may_assume_the_delivery_role_for_this_account(deployed: Deployed) -> None:
    role = deployed.properties(_logical_role_of_stream(deployed))
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": ACCOUNT}}


def test_cloudwatch_logs_may_only_put_records_into_the_stream(deployed: Deployed) -> None:
    subscription = deployed.template["Resources"][_logical(deployed.template, "AWS::Logs::SubscriptionFilter")]
    role = str(subscription["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    (trust,) = deployed.properties(role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "logs.amazonaws.com"}
    assert "aws:SourceArn" in trust["Condition"]["StringLike"]
    statements = _role_statements(deployed, role)
    stream = deployed.name(f"{_logical(deployed.template, 'AWS::KinesisFirehose::DeliveryStream')}.Arn")
    assert {a for s in statements for a in as_list(s["Action"])} == {"firehose:PutRecord", "firehose:PutRecordBatch"}
    assert {r for s in statements for r in as_list(s["Resource"])} == {stream}


def test_no_policy_allows_a_wildcard_action_or_resource(deployed: Deployed) -> None:
    """Roles and bucket policies grant named actions on named resources. A Deny may name
    "s3:*": refusing every action over plain HTTP is the point of it."""
    statements = [
        s for role in resources(deployed.template, "AWS::IAM::Role") for s in _role_statements(deployed, role)
    ]
    for logical in resources(deployed.template, "AWS::S3::BucketPolicy"):
        statements += deployed.properties(logical)["PolicyDocument"]["Statement"]
    assert statements
    for statement in statements:
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
        if statement["Effect"] == "Allow":
            for action in as_list(statement["Action"]):
                assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), action
            for resource in as_list(statement["Resource"]):
                assert resource != "*", statement
                assert not resource.endswith(":*") or ":log-stream:" in resource, resource


# ------------------------------------------------------------------ table


def test_the_table_has_exactly_the_logs_fields_in_order(deployed: Deployed) -> None:
    assert _table(deployed)["StorageDescriptor"]["Columns"] == log_schema.athena_columns()


def test_the_committed_columns_are_the_generated_ones() -> None:
    assert table.main(["--check"]) == 0, "run: python -m infra.athena.table"


def test_the_column_check_fails_on_a_stale_template_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "audit.yaml"
    text = AUDIT_TEMPLATE.read_text(encoding="utf-8")
    copy.write_text(text.replace("{Name: status, Type: int}", "{Name: status, Type: string}"), encoding="utf-8")
    assert table.main(["--check", "--template", str(copy)]) == 1
    assert str(copy) in capsys.readouterr().err
    assert table.main(["--template", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == text


def test_the_column_check_fails_without_its_markers(tmp_path: Path) -> None:
    copy = tmp_path / "audit.yaml"
    copy.write_text(AUDIT_TEMPLATE.read_text(encoding="utf-8").replace(table.END, "# end"), encoding="utf-8")
    assert table.main(["--check", "--template", str(copy)]) == 1


def test_the_table_reads_gzip_json_lines_with_the_hive_serde(deployed: Deployed, stage: str) -> None:
    """The Hive JSON SerDe; the OpenX one is documented by AWS as non-deterministic."""
    storage = _table(deployed)["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == HIVE_JSON_SERDE
    assert "openx" not in repr(deployed.template).lower()
    assert storage["InputFormat"] == TEXT_INPUT
    bucket = StageResources(stage).audit_log_bucket(ACCOUNT)
    assert storage["Location"] == f"s3://{bucket}/access/"
    assert _table(deployed)["TableType"] == "EXTERNAL_TABLE"


def test_the_table_is_partitioned_by_day_with_projection(deployed: Deployed, stage: str) -> None:
    """No crawler and no MSCK REPAIR: Athena computes the days from these parameters."""
    parameters = _table(deployed)["Parameters"]
    assert _table(deployed)["PartitionKeys"] == [{"Name": log_schema.PARTITION, "Type": "string"}]
    day = log_schema.PARTITION
    assert parameters["projection.enabled"] == "true"
    assert parameters[f"projection.{day}.type"] == "date"
    assert parameters[f"projection.{day}.format"] == "yyyy-MM-dd"
    assert parameters[f"projection.{day}.range"] == "2026-01-01,NOW"
    assert parameters[f"projection.{day}.interval"] == "1"
    assert parameters[f"projection.{day}.interval.unit"] == "DAYS"
    bucket = StageResources(stage).audit_log_bucket(ACCOUNT)
    assert parameters["storage.location.template"] == f"s3://{bucket}/access/day={PROJECTED_DAY}/"
    assert not resources(deployed.template, "AWS::Glue::Crawler")


def test_the_projected_days_are_where_firehose_writes(deployed: Deployed, stage: str) -> None:
    """Firehose's prefix and the table's location template name the same keys, with the
    same day format."""
    bucket = StageResources(stage).audit_log_bucket(ACCOUNT)
    written = f"s3://{bucket}/" + _destination(deployed)["Prefix"].replace(FIREHOSE_DAY, PROJECTED_DAY)
    assert written == _table(deployed)["Parameters"]["storage.location.template"]


def test_the_projection_start_is_a_parameter(template: dict[str, Any], stage: str) -> None:
    changed = Deployed(template, Stage=stage, ProjectionStartDay="2027-03-01")
    assert _table(changed)["Parameters"]["projection.day.range"] == "2027-03-01,NOW"


# -------------------------------------------------------------- workgroup


def test_the_workgroup_enforces_its_output_encryption_and_scan_cap(deployed: Deployed, stage: str) -> None:
    properties = deployed.properties(_logical(deployed.template, "AWS::Athena::WorkGroup"))
    configuration = properties["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert int(configuration["BytesScannedCutoffPerQuery"]) == 10 * 1024**3
    assert configuration["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    result = configuration["ResultConfiguration"]
    results_bucket = StageResources(stage).audit_results_bucket(ACCOUNT)
    assert result["OutputLocation"] == f"s3://{results_bucket}/{constants.RESULTS_PREFIX}"
    assert result["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS", "CSE_KMS")


def test_the_scan_cap_is_a_parameter(template: dict[str, Any], stage: str) -> None:
    changed = Deployed(template, Stage=stage, BytesScannedCutoffPerQuery="20000000")
    properties = changed.properties(_logical(template, "AWS::Athena::WorkGroup"))
    assert int(properties["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"]) == 20000000


# ------------------------------------------------------------------ alarms


def test_lines_waiting_fifteen_minutes_fire_an_alarm(deployed: Deployed) -> None:
    alarm = _alarm(deployed, "DeliveryToS3.DataFreshness")
    assert alarm["Namespace"] == "AWS/Firehose"
    stream = deployed.name(_logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream"))
    assert alarm["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": stream}]
    assert alarm["Statistic"] == "Maximum"
    assert breaches(alarm, 15 * 60 + 1)
    assert not breaches(alarm, 300)  # one full buffer is normal


def test_failing_puts_to_s3_fire_an_alarm(deployed: Deployed) -> None:
    alarm = _alarm(deployed, "DeliveryToS3.Success")
    assert alarm["Namespace"] == "AWS/Firehose"
    assert alarm["Statistic"] == "Average"
    assert breaches(alarm, 0.5)
    assert not breaches(alarm, 1)


def test_no_traffic_is_not_an_alarm(deployed: Deployed) -> None:
    for logical in resources(deployed.template, "AWS::CloudWatch::Alarm"):
        assert deployed.properties(logical)["TreatMissingData"] == "notBreaching", logical


def test_alarms_notify_the_topic_only_when_one_is_given(template: dict[str, Any], stage: str) -> None:
    quiet = Deployed(template, Stage=stage)
    paged = Deployed(template, Stage=stage, AlarmTopicArn=TOPIC)
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for logical in alarms:
        for actions in ("AlarmActions", "OKActions"):
            assert quiet.properties(logical).get(actions, []) == [], (logical, actions)
            assert paged.properties(logical)[actions] == [TOPIC], (logical, actions)


def test_every_resource_name_is_the_stages(deployed: Deployed, stage: str) -> None:
    """Names other stages cannot collide with: two stages may share an account."""
    prefix = StageResources(stage).prefix
    named = [
        deployed.name(_logical(deployed.template, "AWS::KinesisFirehose::DeliveryStream")),
        deployed.name(_logical(deployed.template, "AWS::Logs::LogGroup")).removeprefix("/aws/kinesisfirehose/"),
        *(deployed.properties(a)["AlarmName"] for a in resources(deployed.template, "AWS::CloudWatch::Alarm")),
        deployed.properties(_logical(deployed.template, "AWS::Logs::SubscriptionFilter"))["FilterName"],
    ]
    for name in named:
        assert name.startswith(f"{prefix}-"), name


def test_the_admins_sign_in_to_a_pool_of_their_own_with_no_self_sign_up(deployed: Deployed) -> None:
    (pool,) = resources(deployed.template, "AWS::Cognito::UserPool")
    (client,) = resources(deployed.template, "AWS::Cognito::UserPoolClient")
    (group,) = resources(deployed.template, "AWS::Cognito::UserPoolGroup")

    assert deployed.properties(pool)["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert deployed.properties(pool)["MfaConfiguration"] == "ON"
    assert deployed.properties(client)["GenerateSecret"] is False
    assert "ALLOW_USER_PASSWORD_AUTH" not in deployed.properties(client)["ExplicitAuthFlows"]
    assert deployed.properties(group)["GroupName"] == constants.ADMIN_GROUP


def test_a_line_the_table_cannot_read_fires_an_alarm(deployed: Deployed) -> None:
    filters = [deployed.properties(f) for f in resources(deployed.template, "AWS::Logs::MetricFilter")]
    (alarm,) = [
        deployed.properties(a)
        for a in resources(deployed.template, "AWS::CloudWatch::Alarm")
        if "Metrics" in deployed.properties(a)
    ]

    assert sorted(f["FilterPattern"] for f in filters) == ["", '{ $.logged_at = "*" }']
    expressions = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    assert expressions == ["lines - readable"]
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_dashboard_shows_the_metrics_the_route_emits(deployed: Deployed) -> None:
    (dashboard,) = resources(deployed.template, "AWS::CloudWatch::Dashboard")
    body = json.loads(deployed.properties(dashboard)["DashboardBody"])
    shown = {
        line[1]
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
        if line[0] == metrics.NAMESPACE
    }

    assert shown == {metrics.AUDIT_EXPORTS_STARTED, metrics.AUDIT_EXPORTS_DELIVERED, metrics.AUDIT_REFUSALS}
