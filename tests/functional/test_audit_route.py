"""GET /audit and GET /audit/{job_id} through the Chalice app, on the Athena engine.

AWS is a moto server on a free loopback port: its Cognito signs the tokens (the
local pool of local/cognito.py), its S3 holds the buckets, its Athena keeps the
query executions. moto's Athena runs no SQL, so a test writes the CSV where
Athena would; and it never fails, so botocore's Stubber plays Athena for the
FAILED, CANCELLED and throttled cases. The query's semantics are tested on
DuckDB (test_audit_trail_sql.py).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from chalice.test import Client

import app
from chalicelib import aws, constants, screen_path
from chalicelib.audit import auth, export, jobs, query, route
from local import audit_buckets, cognito
from tests.error_shape import assert_error
from tests.support import local_aws

WORKGROUP = constants.audit_workgroup("test")
DATABASE = "hosp_reliability_test"
CSV = (
    '"time","user","on_behalf_of","authenticated","client_ip","method","path","patient_id","status","attempts",'
    '"request_id","user_agent"\n'
    '"2026-11-27T10:00:00.000+00:00","nurse-joy","","true","203.0.113.9","GET","/patients/5","5","200","1",'
    '"00000000000000000000000000000001","curl/8.0 ""quoted""\nsecond line"\n'
    '"","","","","","","(unreadable log line)","",,,"",""\n'
)


@pytest.fixture(scope="module")
def aws_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_aws(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def pool(aws_url: str) -> cognito.LocalCognito:
    return cognito.create(aws_url)


@pytest.fixture(scope="module")
def tokens(pool: cognito.LocalCognito) -> dict[str, str]:
    return {user.username: cognito.sign_in(pool, user.username).access for user in cognito.DEMO_USERS}


@pytest.fixture(scope="module")
def boto(aws_url: str) -> dict[str, Any]:
    """Clients of the moto server, for the tests' own set-up and checks."""
    made = {
        name: boto3.client(
            name, endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        for name in ("s3", "athena")
    }
    audit_buckets.create(made["s3"])
    made["athena"].create_work_group(Name=WORKGROUP)
    made["athena"].create_work_group(Name="someone-elses")
    return made


@pytest.fixture
def configured(
    aws_url: str, pool: cognito.LocalCognito, boto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The app's environment for Athena against the moto server; fresh clients and keys."""
    for name in constants.AUDIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    environment = {
        **pool.environment(),
        constants.AUDIT_ENGINE: "athena",
        constants.AUDIT_DATABASE: DATABASE,
        constants.AUDIT_WORKGROUP: WORKGROUP,
        constants.AUDIT_RESULTS_BUCKET: audit_buckets.RESULTS_BUCKET,
        constants.AUDIT_LOG_BUCKET: audit_buckets.LOG_BUCKET,
        constants.AUDIT_WAIT_SECONDS: "0",
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    auth.reset()
    yield
    aws.reset()
    auth.reset()


@pytest.fixture
def athena_steps(aws_url: str) -> Iterator[None]:
    """moto's query executions move QUEUED -> RUNNING -> SUCCEEDED one step per two status reads."""
    transition = {"model_name": "athena::execution", "transition": {"progression": "manual", "times": 2}}
    requests.post(f"{aws_url}/moto-api/state-manager/set-transition", json=transition, timeout=10).raise_for_status()
    yield
    requests.post(
        f"{aws_url}/moto-api/state-manager/unset-transition", json={"model_name": "athena::execution"}, timeout=10
    ).raise_for_status()


def get(path: str, token: str | None = None, **headers: str) -> Any:
    sent = {"Accept": "*/*", **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    with Client(app.app, stage_name="local") as client:
        return client.http.get(path, headers=sent)


def body(answer: Any) -> dict[str, Any]:
    return dict(json.loads(answer.body))


def athena_writes_the_csv(boto: dict[str, Any], job_id: str, text: str = CSV) -> None:
    key = f"{constants.RESULTS_PREFIX}{job_id}.csv"
    boto["s3"].put_object(Bucket=audit_buckets.RESULTS_BUCKET, Key=key, Body=text.encode())


def export_records(boto: dict[str, Any], job_id: str) -> dict[str, dict[str, Any]]:
    listed = boto["s3"].list_objects_v2(Bucket=audit_buckets.LOG_BUCKET, Prefix="exports/").get("Contents", [])
    found = {}
    for item in listed:
        if job_id in item["Key"]:
            record = json.loads(boto["s3"].get_object(Bucket=audit_buckets.LOG_BUCKET, Key=item["Key"])["Body"].read())
            found[record["event"]] = record
    return found


# --- who may ask ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
def test_no_token_is_a_401_that_says_how_to_authenticate() -> None:
    answer = get("/audit")

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    assert body(answer)["error"]


@pytest.mark.usefixtures("configured")
def test_a_valid_token_of_someone_not_an_admin_is_a_403(tokens: dict[str, str]) -> None:
    answer = get("/audit", tokens["audit-viewer"])

    assert answer.status_code == 403


@pytest.mark.usefixtures("configured")
def test_a_refused_caller_is_named_to_the_proxy_and_in_the_apps_log(
    tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    answer = get("/audit", tokens["audit-viewer"], **{"X-Request-Id": "0" * 31 + "7"})

    assert answer.status_code == 403
    assert answer.headers[route.CALLER_HEADER] == "audit-viewer"  # the proxy logs it, then hides it
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (refusal,) = [line for line in logged if line.get("event") == "audit_refused"]
    assert refusal["status"] == 403
    assert refusal["user"] == "audit-viewer"
    assert refusal["request_id"] == "0" * 31 + "7"
    assert tokens["audit-viewer"] not in json.dumps(logged)


@pytest.mark.usefixtures("configured")
def test_every_answer_after_the_token_verified_names_the_caller_and_no_other_does(tokens: dict[str, str]) -> None:
    assert get("/audit?limit=10", tokens["audit-admin"]).headers[route.CALLER_HEADER] == "audit-admin"  # 400
    assert get("/audit/not-a-job", tokens["audit-admin"]).headers[route.CALLER_HEADER] == "audit-admin"  # 404
    assert route.CALLER_HEADER not in get("/audit").headers  # 401: no token
    assert route.CALLER_HEADER not in get("/audit", tokens["audit-admin"][:-4] + "AAAA").headers  # 401: forged


@pytest.mark.parametrize(
    ("username", "sent"),
    [
        ("audit-admin", "audit-admin"),
        ("a.b_c~d", "a.b_c~d"),
        ("jos\u00e9 o'brien", "jos%C3%A9%20o%27brien"),
        ("a@b.example", "a%40b.example"),
        ('"\\\r\n%', "%22%5C%0D%0A%25"),
        ("\ud800x", "%5Cud800x"),  # a lone surrogate, which a JSON token can hold: named, never a crash
    ],
)
def test_the_callers_name_is_sent_percent_encoded(username: str, sent: str) -> None:
    assert route.caller_header_value(username) == sent


@pytest.mark.usefixtures("configured")
def test_the_token_is_checked_before_the_filters(tokens: dict[str, str]) -> None:
    assert get("/audit?bogus=1").status_code == 401
    assert get("/audit?bogus=1", tokens["audit-viewer"]).status_code == 403
    assert get("/audit/not-a-job").status_code == 401


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("query_string", "field"),
    [
        ("from=2026-11-27", "from"),
        ("to=2026-11-27T00:00:00%2B02:00", "to"),
        ("user=a&user=b", "user"),
        ("patient_id=5%27%3B--", "patient_id"),
        ("status=5__", "status"),
        ("limit=10", "limit"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(tokens: dict[str, str], query_string: str, field: str) -> None:
    answer = get(f"/audit?{query_string}", tokens["audit-admin"])

    assert answer.status_code == 400
    assert body(answer)["field"] == field
    assert body(answer)["accepts"]


@pytest.mark.usefixtures("configured")
def test_a_job_id_that_is_not_an_athena_id_is_a_404_without_asking_athena(tokens: dict[str, str]) -> None:
    with Stubber(aws.client("athena")):  # no response queued: any call to Athena would fail the test
        assert get("/audit/..%2F..%2Fetc", tokens["audit-admin"]).status_code == 404
        assert get("/audit/DROP%20TABLE", tokens["audit-admin"]).status_code == 404


@pytest.mark.usefixtures("configured")
def test_another_workgroups_query_is_not_an_export(tokens: dict[str, str], boto: dict[str, Any]) -> None:
    sql, _ = query.positional()
    foreign = boto["athena"].start_query_execution(
        QueryString=sql,
        WorkGroup="someone-elses",
        ResultConfiguration={"OutputLocation": f"s3://{audit_buckets.RESULTS_BUCKET}/audit/"},
    )["QueryExecutionId"]

    assert get(f"/audit/{foreign}", tokens["audit-admin"]).status_code == 404


@pytest.mark.usefixtures("configured")
def test_a_link_longer_than_15_minutes_is_a_configuration_error(
    tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(constants.AUDIT_URL_TTL_SECONDS, "3600")

    answer = get("/audit", tokens["audit-admin"])

    assert answer.status_code == 503
    assert any(constants.AUDIT_URL_TTL_SECONDS in problem for problem in body(answer)["problems"])


# --- the export ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("configured", "athena_steps")
def test_a_running_query_is_a_202_then_a_link_to_the_csv(
    tokens: dict[str, str], boto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(constants.AUDIT_URL_TTL_SECONDS, "300")
    before = datetime.now(UTC)

    started = get("/audit?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&user=nurse-joy", tokens["audit-admin"])
    job_id = body(started)["job_id"]

    assert started.status_code == 202
    assert started.headers["Retry-After"] == "2"
    assert started.headers["Location"] == body(started)["poll"] == f"/audit/{job_id}"
    assert body(started)["filters"] == {
        "from": "2026-11-27T00:00:00.000Z",
        "to": "2026-11-28T00:00:00.000Z",
        "user": "nurse-joy",
    }
    # The parameters went to Athena as literals, apart from the SQL text.
    execution = boto["athena"].get_query_execution(QueryExecutionId=job_id)["QueryExecution"]
    assert "'nurse-joy'" in execution["ExecutionParameters"]
    assert "nurse-joy" not in execution["Query"]

    athena_writes_the_csv(boto, job_id)
    answers = [get(f"/audit/{job_id}", tokens["audit-admin"]) for _ in range(6)]
    done = next(a for a in answers if a.status_code != 202)

    assert done.status_code == 200
    ready = body(done)
    assert ready["rows"] == 2
    assert ready["unreadable_rows"] == 1
    assert ready["sha256"] == hashlib.sha256(CSV.encode()).hexdigest()
    assert ready["bytes"] == len(CSV.encode())
    assert ready["file_name"] == "audit_20261127T000000Z_20261128T000000Z.csv"
    assert ready["expires_in_seconds"] == 300
    expires = datetime.fromisoformat(ready["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=300) <= expires <= datetime.now(UTC) + timedelta(seconds=300)

    link = urlsplit(ready["url"])
    signed = parse_qs(link.query)
    assert signed["X-Amz-Expires"] == ["300"]
    assert signed["response-content-disposition"] == [f'attachment; filename="{ready["file_name"]}"']
    download = requests.get(ready["url"], timeout=10)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == ready["sha256"]

    records = export_records(boto, job_id)
    assert records["audit_export_started"]["requested_by"] == "audit-admin"
    assert records["audit_export_started"]["filters"] == ready["filters"]
    assert records["audit_export"]["sha256"] == ready["sha256"]
    assert records["audit_export"]["rows"] == 2


@pytest.mark.usefixtures("configured")
def test_asking_again_for_a_finished_export_reads_its_record_not_the_file(
    tokens: dict[str, str], boto: dict[str, Any]
) -> None:
    job_id = started_and_written(tokens, boto)
    ready = get(f"/audit/{job_id}", tokens["audit-admin"])
    athena_writes_the_csv(boto, job_id, CSV + '"changed",,,,,,,,,,,\n')

    again = get(f"/audit/{job_id}", tokens["audit-admin"])

    assert ready.status_code == again.status_code == 200
    assert body(again)["sha256"] == body(ready)["sha256"] == hashlib.sha256(CSV.encode()).hexdigest()


@pytest.mark.usefixtures("configured")
def test_a_finished_export_whose_file_has_expired_is_a_410(tokens: dict[str, str], boto: dict[str, Any]) -> None:
    job_id = started_and_written(tokens, boto)
    boto["s3"].delete_object(Bucket=audit_buckets.RESULTS_BUCKET, Key=f"audit/{job_id}.csv")  # the lifecycle rule

    answer = get(f"/audit/{job_id}", tokens["audit-admin"])

    assert answer.status_code == 410
    assert "ask again" in body(answer)["error"]


def started_and_written(tokens: dict[str, str], boto: dict[str, Any]) -> str:
    """An export moto's Athena has finished (it does at once), with its CSV where Athena puts it."""
    with Stubber(aws.client("athena")) as stub:  # the start only: the CSV is not there yet
        stub.add_response("start_query_execution", {"QueryExecutionId": JOB})
        stub.add_response("get_query_execution", stubbed_execution(JOB, "RUNNING"))
        stub.add_response("get_query_execution", stubbed_execution(JOB, "RUNNING"))
        assert get("/audit", tokens["audit-admin"]).status_code == 202
    job_id = boto["athena"].start_query_execution(
        QueryString=query.positional()[0],
        WorkGroup=WORKGROUP,
        ResultConfiguration={"OutputLocation": f"s3://{audit_buckets.RESULTS_BUCKET}/audit/"},
        ExecutionParameters=stubbed_execution(JOB, "RUNNING")["QueryExecution"]["ExecutionParameters"],
    )["QueryExecutionId"]
    athena_writes_the_csv(boto, job_id)
    return str(job_id)


# --- Athena's failures, played by botocore's Stubber ---------------------------------------------


def stubbed_execution(job_id: str, state: str, **status: Any) -> dict[str, Any]:
    sql, _ = query.positional()
    now = datetime.now(UTC)
    parameters = {
        "first_day": "2026-11-26",
        "last_day": "2026-11-28",
        "from_time": "2026-11-27 00:00:00.000",
        "to_time": "2026-11-27 12:00:00.000",
        "user": "",
        "patient_id": "",
        "method": "",
        "path_prefix": "",
        "status_low": 0,
        "status_high": 999,
        "screen_path": screen_path.pattern(),
    }
    return {
        "QueryExecution": {
            "QueryExecutionId": job_id,
            "Query": sql,
            "WorkGroup": WORKGROUP,
            "ExecutionParameters": [query.athena_literal(v) for v in query.values(parameters)],
            "ResultConfiguration": {"OutputLocation": f"s3://{audit_buckets.RESULTS_BUCKET}/audit/{job_id}.csv"},
            "Status": {"State": state, "SubmissionDateTime": now, **status},
        }
    }


JOB = "0b9a4b5e-7d3c-4c47-9b8e-2f7d0e6c1a11"


@pytest.fixture
def athena_stub(configured: None) -> Iterator[Stubber]:
    with Stubber(aws.client("athena")) as stub:
        yield stub


def test_a_failed_query_is_a_502_with_athenas_reason(athena_stub: Stubber, tokens: dict[str, str]) -> None:
    reason = "Query exhausted resources at this scale factor"
    athena_stub.add_response("get_query_execution", stubbed_execution(JOB, "FAILED", StateChangeReason=reason))

    answer = get(f"/audit/{JOB}", tokens["audit-admin"])

    assert answer.status_code == 502
    assert body(answer)["reason"] == reason
    assert body(answer)["filters"]["to"] == "2026-11-27T12:00:00.000Z"


def test_a_line_the_table_cannot_read_fails_the_export_with_a_hint(
    athena_stub: Stubber, tokens: dict[str, str]
) -> None:
    reason = "HIVE_CURSOR_ERROR: Row is not a valid JSON Object - JSONException: s3://trail/access/day=2026-11-27/x.gz"
    athena_stub.add_response("get_query_execution", stubbed_execution(JOB, "FAILED", StateChangeReason=reason))

    answer = get(f"/audit/{JOB}", tokens["audit-admin"])

    assert answer.status_code == 502
    assert body(answer)["reason"] == reason
    assert "docs/audit.md" in body(answer)["hint"]


def test_a_failure_athena_calls_retryable_is_a_503_with_retry_after(
    athena_stub: Stubber, tokens: dict[str, str]
) -> None:
    failed = stubbed_execution(JOB, "FAILED", AthenaError={"ErrorCategory": 1, "Retryable": True})
    athena_stub.add_response("get_query_execution", failed)

    answer = get(f"/audit/{JOB}", tokens["audit-admin"])

    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0


def test_an_unknown_job_is_a_404(athena_stub: Stubber, tokens: dict[str, str]) -> None:
    # What Athena answers for an id it does not know (moto answers a 500 instead).
    athena_stub.add_client_error("get_query_execution", "InvalidRequestException", "not found", 400)

    assert get(f"/audit/{JOB}", tokens["audit-admin"]).status_code == 404


def test_a_cancelled_query_is_a_410(athena_stub: Stubber, tokens: dict[str, str]) -> None:
    athena_stub.add_response("get_query_execution", stubbed_execution(JOB, "CANCELLED"))

    assert get(f"/audit/{JOB}", tokens["audit-admin"]).status_code == 410


def test_a_throttled_start_is_a_429_with_retry_after(athena_stub: Stubber, tokens: dict[str, str]) -> None:
    athena_stub.add_client_error("start_query_execution", "TooManyRequestsException", "Rate exceeded", 400)

    answer = get("/audit", tokens["audit-admin"])

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "5"


def test_athena_refusing_the_query_is_a_503_not_a_500(athena_stub: Stubber, tokens: dict[str, str]) -> None:
    athena_stub.add_client_error("start_query_execution", "InternalServerException", "boom", 500)

    answer = get("/audit", tokens["audit-admin"])

    assert answer.status_code == 503
    assert "InternalServerException" in body(answer)["reason"]


@pytest.mark.usefixtures("configured")
def test_every_link_handed_out_is_recorded_with_whom_it_went_to(
    tokens: dict[str, str], boto: dict[str, Any], pool: cognito.LocalCognito
) -> None:
    idp = cognito.client(pool.aws_url)
    second = "audit-admin-two"
    password = "Audit-admin-two-local-only-1"
    idp.admin_create_user(UserPoolId=pool.pool_id, Username=second, MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool.pool_id, Username=second, Password=password, Permanent=True)
    idp.admin_add_user_to_group(UserPoolId=pool.pool_id, Username=second, GroupName=constants.ADMIN_GROUP)
    other = cognito.sign_in(pool, second, password).access
    job_id = started_and_written(tokens, boto)

    first = get(f"/audit/{job_id}", tokens["audit-admin"])
    again = get(f"/audit/{job_id}", other)

    assert first.status_code == again.status_code == 200
    listed = boto["s3"].list_objects_v2(Bucket=audit_buckets.LOG_BUCKET, Prefix="exports/")["Contents"]
    deliveries = [
        json.loads(boto["s3"].get_object(Bucket=audit_buckets.LOG_BUCKET, Key=item["Key"])["Body"].read())
        for item in listed
        if job_id in item["Key"] and ".delivered." in item["Key"]
    ]
    assert sorted(d["delivered_to"] for d in deliveries) == ["audit-admin", second]
    versions = boto["s3"].list_object_versions(Bucket=audit_buckets.LOG_BUCKET, Prefix="exports/").get("Versions", [])
    finals = [v for v in versions if v["Key"].endswith(f"{job_id}.json")]
    assert len(finals) == 1  # the export's record is written once, whoever finishes it


@pytest.mark.usefixtures("configured")
def test_two_callers_finishing_one_export_at_once_keep_one_record(tokens: dict[str, str], boto: dict[str, Any]) -> None:
    job_id = started_and_written(tokens, boto)
    job = jobs.AthenaEngine(DATABASE, WORKGROUP, audit_buckets.RESULTS_BUCKET, "audit/").job(job_id)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        records = list(pool.map(lambda n: export.finish(audit_buckets.LOG_BUCKET, job, f"caller-{n}"), range(4)))

    versions = boto["s3"].list_object_versions(Bucket=audit_buckets.LOG_BUCKET, Prefix="exports/").get("Versions", [])
    assert len([v for v in versions if v["Key"].endswith(f"{job_id}.json")]) == 1
    assert len({record["completed_at"] for record in records}) == 1  # all four see the one kept


@pytest.mark.usefixtures("configured")
def test_a_conditional_write_s3_calls_conflicting_is_tried_again(tokens: dict[str, str], boto: dict[str, Any]) -> None:
    job_id = started_and_written(tokens, boto)
    job = jobs.AthenaEngine(DATABASE, WORKGROUP, audit_buckets.RESULTS_BUCKET, "audit/").job(job_id)
    s3 = aws.client("s3")
    real_put = s3.put_object
    conflicts = iter([True])

    def put_once_conflicting(**kwargs: Any) -> Any:
        if kwargs.get("IfNoneMatch") and next(conflicts, False):
            raise ClientError({"Error": {"Code": "ConditionalRequestConflict", "Message": "retry"}}, "PutObject")
        return real_put(**kwargs)

    s3.put_object = put_once_conflicting
    try:
        record = export.finish(audit_buckets.LOG_BUCKET, job, "audit-admin")
    finally:
        s3.put_object = real_put

    stored = json.loads(
        boto["s3"].get_object(Bucket=audit_buckets.LOG_BUCKET, Key=export.record_key(job))["Body"].read()
    )
    assert stored["sha256"] == record["sha256"] == hashlib.sha256(CSV.encode()).hexdigest()


# --- the one shape of every error (docs/errors.md) -----------------------------------------------

REQUEST_ID = "0123456789abcdef" * 2  # as the proxy sends it in X-Request-Id


def sent_with_id(path: str, token: str | None = None) -> Any:
    return get(path, token, **{"X-Request-Id": REQUEST_ID})


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        (None, "/audit", 401),
        ("forged", "/audit", 401),
        ("audit-viewer", "/audit", 403),
        ("audit-viewer", "/audit/not-a-job", 403),
        ("audit-admin", "/audit?limit=10", 400),
        ("audit-admin", "/audit?from=yesterday", 400),
        ("audit-admin", "/audit/not-a-job", 404),
    ],
)
def test_every_refusal_is_an_error_in_the_one_shape_with_the_proxys_request_id(
    tokens: dict[str, str], who: str | None, path: str, status: int
) -> None:
    token = tokens["audit-admin"][:-4] + "AAAA" if who == "forged" else tokens.get(who or "")

    answer = sent_with_id(path, token)

    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    error = assert_error(answer.body, status, request_id=REQUEST_ID)
    if status == 400:
        assert error["field"] == path.partition("?")[2].partition("=")[0]
        assert error["accepts"]


@pytest.mark.usefixtures("configured")
def test_a_misconfigured_route_is_a_503_in_the_one_shape_naming_its_problems(
    tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_URL_TTL_SECONDS", "3600")

    answer = sent_with_id("/audit", tokens["audit-admin"])

    assert answer.status_code == 503
    assert assert_error(answer.body, 503, request_id=REQUEST_ID)["problems"]


@pytest.mark.usefixtures("configured")
def test_without_the_proxys_request_id_an_error_names_the_id_the_app_logged(
    tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    answer = get("/audit", tokens["audit-viewer"])

    error = assert_error(answer.body, 403)
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (refusal,) = [line for line in logged if line.get("event") == "audit_refused"]
    assert error["request_id"] == refusal["request_id"]
    assert len(error["request_id"]) == 32


@pytest.mark.parametrize(
    ("state", "status", "extra"),
    [
        ({"State": "FAILED", "StateChangeReason": "Query exhausted resources"}, 502, {"reason", "job_id", "filters"}),
        (
            {"State": "FAILED", "StateChangeReason": "HIVE_CURSOR_ERROR: s3://trail/x.gz"},
            502,
            {"reason", "hint", "job_id", "filters"},
        ),
        (
            {"State": "FAILED", "AthenaError": {"ErrorCategory": 1, "Retryable": True}},
            503,
            {"reason", "job_id", "filters"},
        ),
        ({"State": "CANCELLED"}, 410, {"job_id", "filters"}),
    ],
)
def test_a_query_that_did_not_finish_is_an_error_in_the_one_shape(
    athena_stub: Stubber, tokens: dict[str, str], state: dict[str, Any], status: int, extra: set[str]
) -> None:
    athena_stub.add_response("get_query_execution", stubbed_execution(JOB, state.pop("State"), **state))

    answer = sent_with_id(f"/audit/{JOB}", tokens["audit-admin"])

    assert answer.status_code == status
    error = assert_error(answer.body, status, request_id=REQUEST_ID)
    assert set(error) == {"error", "status", "request_id", *extra}
    assert error["job_id"] == JOB


@pytest.mark.parametrize(("code", "status"), [("TooManyRequestsException", 429), ("InternalServerException", 503)])
def test_athena_refusing_a_start_is_an_error_in_the_one_shape(
    athena_stub: Stubber, tokens: dict[str, str], code: str, status: int
) -> None:
    athena_stub.add_client_error("start_query_execution", code, "no", 400)

    answer = sent_with_id("/audit", tokens["audit-admin"])

    assert answer.status_code == status
    assert_error(answer.body, status, request_id=REQUEST_ID)
    assert int(answer.headers["Retry-After"]) > 0


def test_a_fault_of_the_route_is_a_500_in_the_one_shape(
    athena_stub: Stubber, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(export, "record_start", broken)
    athena_stub.add_response("start_query_execution", {"QueryExecutionId": JOB})
    athena_stub.add_response("get_query_execution", stubbed_execution(JOB, "RUNNING"))

    answer = sent_with_id("/audit", tokens["audit-admin"])

    assert answer.status_code == 500
    assert "a bug" not in assert_error(answer.body, 500, request_id=REQUEST_ID)["error"]


@pytest.mark.usefixtures("configured")
def test_the_answers_that_are_not_errors_say_where_the_export_is_in_state_not_status(
    tokens: dict[str, str], boto: dict[str, Any]
) -> None:
    job_id = started_and_written(tokens, boto)
    with Stubber(aws.client("athena")) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": JOB})
        stub.add_response("get_query_execution", stubbed_execution(JOB, "RUNNING"))
        stub.add_response("get_query_execution", stubbed_execution(JOB, "RUNNING"))
        running = body(get("/audit", tokens["audit-admin"]))

    ready = body(get(f"/audit/{job_id}", tokens["audit-admin"]))

    assert (running["state"], ready["state"]) == ("running", "ready")
    assert not {"status", "status_code", "error"} & (set(running) | set(ready))
