"""The audit trail through the whole local stack, as an admin uses it.

One stack for the module, started in this process as `make run` starts it:
requests go through the real NGINX (8080's stand-in) to the stand-in and to
`chalice local`, which runs trail.sql on DuckDB over NGINX's own access log.
Tokens are real ones from the local Cognito (moto). Raw paths are sent with
http.client, which sends them exactly as written.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import io
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from chalicelib import constants
from chalicelib.audit import route
from local import audit_buckets, cognito
from local.hosp_standin import api
from local.hosp_standin.parsing import decimal
from local.stack import AUDIT_WORK_DIR, Stack
from tests.error_shape import assert_error
from tests.support import DEMO_AUTH, access_log_entry, whole_stack

WAIT = 30.0  # seconds an export may take here; a bound, not an expectation


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with whole_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def pool(stack: Stack) -> cognito.LocalCognito:
    return cognito.find(stack.aws_url)


@pytest.fixture(scope="module")
def admin(pool: cognito.LocalCognito) -> str:
    return cognito.sign_in(pool, "audit-admin").access


def send(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def audit(stack: Stack, token: str | None, **filters: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{stack.proxy.url}/audit", params=filters, headers=headers, timeout=WAIT)


def export(stack: Stack, token: str, **filters: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The ready answer of an export and the rows of its CSV, downloaded through the link."""
    answer = audit(stack, token, **filters)
    deadline = time.monotonic() + WAIT
    while answer.status_code == 202 and time.monotonic() < deadline:
        time.sleep(float(answer.headers["Retry-After"]))
        answer = requests.get(
            f"{stack.proxy.url}{answer.json()['poll']}", headers={"Authorization": f"Bearer {token}"}, timeout=WAIT
        )
    assert answer.status_code == 200, answer.text
    ready = answer.json()
    download = requests.get(ready["url"], timeout=WAIT)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == ready["sha256"]
    return ready, list(csv.DictReader(io.StringIO(download.content.decode("utf-8"))))


def marked() -> str:
    """A user agent no other request of the run has, to find a request's row."""
    return f"audit-test/{uuid.uuid4().hex}"


# --- who may ask, through the front door and chalice local ---------------------------------------


def test_an_admins_token_gets_the_trail_and_everyone_else_is_refused(stack: Stack, pool: cognito.LocalCognito) -> None:
    admin_tokens = cognito.sign_in(pool, "audit-admin")
    viewer = cognito.sign_in(pool, "audit-viewer").access
    tampered = admin_tokens.access[:-4] + ("AAAA" if not admin_tokens.access.endswith("AAAA") else "BBBB")

    assert audit(stack, admin_tokens.access).status_code in (200, 202)
    assert audit(stack, viewer).status_code == 403
    assert audit(stack, None).status_code == 401
    assert audit(stack, admin_tokens.id).status_code == 401  # an ID token is not an access token
    assert audit(stack, tampered).status_code == 401
    assert audit(stack, "not-a-token").status_code == 401
    assert requests.get(f"{stack.proxy.url}/audit", auth=("test-account", "x"), timeout=WAIT).status_code == 401


def test_the_access_log_names_each_verified_caller_a_refused_one_included(
    stack: Stack, pool: cognito.LocalCognito, admin: str
) -> None:
    viewer = cognito.sign_in(pool, "audit-viewer").access
    answers = {
        "viewer": audit(stack, viewer),
        "admin": audit(stack, admin, user="test-account"),
        "admin, bad filter": audit(stack, admin, limit="1"),
        "no token": audit(stack, None),
        "ID token": audit(stack, cognito.sign_in(pool, "audit-admin").id),
    }

    assert {who: answer.status_code for who, answer in answers.items()} == {
        "viewer": 403, "admin": answers["admin"].status_code, "admin, bad filter": 400,
        "no token": 401, "ID token": 401,
    }  # fmt: skip
    assert answers["admin"].status_code in (200, 202)
    assert all(route.CALLER_HEADER not in answer.headers for answer in answers.values())  # kept from the client
    logged = {who: access_log_entry(stack.proxy, answer.headers["X-Request-Id"]) for who, answer in answers.items()}
    assert {who: line["audit_user"] for who, line in logged.items()} == {
        "viewer": "audit-viewer", "admin": "audit-admin", "admin, bad filter": "audit-admin",
        "no token": "", "ID token": "",
    }  # fmt: skip
    assert {line["route"] for line in logged.values()} == {"audit"}
    assert all(line["user"] == "" for line in logged.values())  # the HOSP user a request claimed: none here
    text = stack.proxy.access_log.read_text()
    assert viewer not in text  # never a token
    assert admin not in text


def test_an_export_is_written_in_the_stacks_own_run_dir(stack: Stack, admin: str) -> None:
    work_dir = stack.run_dir / AUDIT_WORK_DIR
    assert stack.chalice.env is not None
    assert stack.chalice.env[constants.AUDIT_LOCAL_WORK_DIR] == str(work_dir)

    export(stack, admin)

    assert work_dir.is_dir()  # made by the export's job in chalice local
    assert list(work_dir.iterdir()) == []  # each CSV is removed once it is in S3


def test_audit_requests_never_reach_hosp(stack: Stack, admin: str) -> None:
    before = requests.get(f"http://127.0.0.1:{stack.ports.hosp}/_sim/stats", timeout=10).json()["total"]

    for path in ("/audit", "/%61udit", "//audit", "/audit/0b9a4b5e-7d3c-4c47-9b8e-2f7d0e6c1a11"):
        assert send(stack.ports.proxy, "GET", path, headers={"Authorization": f"Bearer {admin}"}) in (200, 202, 404)

    after = requests.get(f"http://127.0.0.1:{stack.ports.hosp}/_sim/stats", timeout=10).json()["total"]
    assert after == before


# --- what the trail says ---------------------------------------------------------------------------

# Spellings of a patient's path, and what else a client might send. The stand-in's own
# router says which patient each one is (tests below never hard-code it).
SPELLINGS = [
    "/patients/5",
    "/patients/5.json",
    "/patients/5/",
    "/p%61tients/5.json",
    "/patients/5%2f",
    "//patients//5",
    "/patients/%35",
    "/patients/05",
    "/patients/5x",
    "/patients/5.xml",
    "/patients/%D9%A5",
    "/patients//5/",
    "/patients/6",
]


def hosp_patient(path: str) -> str:
    """The patient record the stand-in's router resolves `path` to ('' for none)."""
    found = api.match("GET", path)
    if found.route is None and found.allowed:
        found = api.match(found.allowed[0], path)
    if found.route is None or not found.route.template.startswith("/patients/{id}"):
        return ""
    return str(found.record_id)


def test_the_patient_of_each_spelling_is_the_one_hosps_router_resolves(stack: Stack, admin: str) -> None:
    agents = {}
    for path in SPELLINGS:
        agents[path] = marked()
        send(stack.ports.proxy, "GET", path, headers={**DEMO_AUTH, "User-Agent": agents[path]})

    _, rows = export(stack, admin)
    _, patient_5 = export(stack, admin, patient_id="5")

    by_agent = {row["user_agent"]: row for row in rows}
    assert {path: by_agent[agents[path]]["patient_id"] for path in SPELLINGS} == {
        path: hosp_patient(path) for path in SPELLINGS
    }
    shown = {row["user_agent"] for row in patient_5}
    assert {path for path in SPELLINGS if agents[path] in shown} == {p for p in SPELLINGS if hosp_patient(p) == "5"}


# Spellings of a note listing's query. The stand-in's own query parser says which
# patient each one asks for (the test below never hard-codes it); %ff, %zz and a
# lone % are what no URL decoder takes.
LISTING_QUERIES = [
    "patient_id=5",
    "patient_id=05",
    "patient_id=%35",
    "patient%5Fid=5",
    "patient_id=&patient_id=5",
    "patient_id=5&patient_id=6",
    "patient_id=5&patient_id=05&patient_id=x",
    "view=full&patient_id=0005",
    "a=1;patient_id=5",
    "PATIENT_ID=5",
    "patient_id=%ff",
    "patient_id=%zz",
    "patient_id=%",
    "patient_id=5+",
    "patient_id=%D9%A5",
    "patient_id=6",
]


def hosp_listed_patients(query: str) -> str:
    """The patients `query` names as the stand-in's server reads its fields (parse_qs): every value
    as an id (ASCII digits, leading zeros dropped, at most 18) or not-an-id, each once, joined by ","."""
    ids = [
        (value.lstrip("0") or "0") if decimal(value) is not None and len(value.lstrip("0")) <= 18 else "not-an-id"
        for value in parse_qs(query).get("patient_id", [])
    ]
    return ",".join(dict.fromkeys(ids))


def hosp_lists(query: str) -> bool:
    """Whether the stand-in lists notes for `query` (its first value a positive id, or none asked
    for) rather than answer 400."""
    values = parse_qs(query).get("patient_id")
    return not values or bool(decimal(values[0]))


def test_a_note_listing_names_the_patient_hosps_query_parser_reads(stack: Stack, admin: str) -> None:
    agents = {}
    statuses = {}
    for query in LISTING_QUERIES:
        agents[query] = marked()
        statuses[query] = send(
            stack.ports.proxy, "GET", "/notes?" + query, headers={**DEMO_AUTH, "User-Agent": agents[query]}
        )

    _, rows = export(stack, admin)  # the export succeeds, whatever the queries held
    _, patient_5 = export(stack, admin, patient_id="5")

    by_agent = {row["user_agent"]: row for row in rows}
    assert {query: by_agent[agents[query]]["patient_id"] for query in LISTING_QUERIES} == {
        query: hosp_listed_patients(query) for query in LISTING_QUERIES
    }
    # The stand-in read the same: a positive id or none is a listing, anything else a 400.
    assert statuses == {query: 200 if hosp_lists(query) else 400 for query in LISTING_QUERIES}
    shown = {row["user_agent"] for row in patient_5}
    assert {query for query in LISTING_QUERIES if agents[query] in shown} == {
        query for query in LISTING_QUERIES if "5" in hosp_listed_patients(query).split(",")
    }


def test_a_note_write_names_the_body_patient_not_the_header(stack: Stack, admin: str) -> None:
    agent = marked()
    note = json.dumps({"title": "t", "body": "b", "patient_id": 7, "staff_id": 1}).encode()
    headers = {**DEMO_AUTH, "Content-Type": "application/json", "X-Patient-Id": "9", "User-Agent": agent}

    assert send(stack.ports.proxy, "POST", "/notes", note, headers) == 201

    _, rows = export(stack, admin, method="POST", path_prefix="/notes")
    (row,) = [r for r in rows if r["user_agent"] == agent]
    assert row["patient_id"] == "7"
    assert row["authenticated"] == "true"


def test_a_write_naming_two_patients_is_found_by_either(stack: Stack, admin: str) -> None:
    agent = marked()
    note = b'{"title": "t", "body": "b", "patient_id": 7, "staff_id": 1, "patient_id": 8}'
    send(
        stack.ports.proxy,
        "POST",
        "/notes",
        note,
        {**DEMO_AUTH, "Content-Type": "application/json", "User-Agent": agent},
    )

    found = {patient: export(stack, admin, patient_id=patient)[1] for patient in ("7", "8")}

    for patient, rows in found.items():
        (row,) = [r for r in rows if r["user_agent"] == agent]
        assert row["patient_id"] == "7,8", patient


def test_an_unauthenticated_write_naming_a_140000_character_patient_leaves_every_export_whole(
    stack: Stack, admin: str
) -> None:
    agent = marked()
    body = json.dumps({"patient_id": "A" * 140_000}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": agent}

    assert send(stack.ports.proxy, "POST", "/notes", body, headers) == 401

    _, rows = export(stack, admin)  # it used to answer 500: the CSV reader's field limit
    (row,) = [r for r in rows if r["user_agent"] == agent]
    assert (row["patient_id"], row["authenticated"], row["status"]) == ("not-an-id", "false", "401")


def test_a_formula_in_a_header_is_text_in_the_csv(stack: Stack, admin: str) -> None:
    agent = '=HYPERLINK("http://evil.example","x")' + uuid.uuid4().hex
    send(stack.ports.proxy, "GET", "/hospitals", headers={**DEMO_AUTH, "User-Agent": agent})

    _, rows = export(stack, admin)

    assert "'" + agent in {row["user_agent"] for row in rows}


def test_a_failed_password_guess_is_not_that_users_action(stack: Stack, admin: str) -> None:
    agent = marked()
    wrong = base64.b64encode(b"test-account:wrong").decode()
    guess = {"Authorization": f"Basic {wrong}", "User-Agent": agent}
    assert send(stack.ports.proxy, "GET", "/patients/1", headers=guess) == 401

    _, rows = export(stack, admin, user="test-account", status="401")

    (row,) = [r for r in rows if r["user_agent"] == agent]
    assert row["authenticated"] == "false"


def test_non_utf8_bytes_from_a_client_still_make_a_row(stack: Stack, admin: str) -> None:
    agent = marked()
    raw = (
        b"GET /patients/%ff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + agent.encode() + b"\xff\r\n"
        b"Authorization: " + DEMO_AUTH["Authorization"].encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.ports.proxy), timeout=30) as client:
        client.sendall(raw)
        while client.recv(65536):
            pass

    _, rows = export(stack, admin)

    assert [r for r in rows if r["user_agent"].startswith(agent)]
    assert all(r["path"] != "(unreadable log line)" for r in rows)


def test_a_note_the_worker_wrote_is_the_nurses_and_every_export_is_recorded(stack: Stack, admin: str) -> None:
    image = "aGVsbG8gd29ybGQ="
    screen = requests.post(
        f"{stack.proxy.url}/patients/2/screen", json={"images": [image]}, headers=DEMO_AUTH, timeout=30
    )
    assert screen.status_code == 200
    request_id = screen.headers["X-Request-Id"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        notes = requests.get(f"{stack.proxy.url}/notes", params={"patient_id": "2"}, headers=DEMO_AUTH, timeout=10)
        if any(request_id in note["body"] for note in notes.json()):
            break
        time.sleep(0.2)

    ready, rows = export(stack, admin, user="test-account", patient_id="2")

    mine = [r for r in rows if r["request_id"] == request_id]
    written = [r for r in mine if r["method"] == "POST" and r["path"] == "/notes"]
    assert len(written) == 1
    assert written[0]["user"] == "notes-service"
    assert written[0]["on_behalf_of"] == "test-account"
    s3 = audit_buckets.client(stack.aws_url)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=audit_buckets.LOG_BUCKET, Prefix="exports/")["Contents"]]
    (record_key,) = [k for k in keys if k.endswith(f"{ready['job_id']}.json")]
    record = json.loads(s3.get_object(Bucket=audit_buckets.LOG_BUCKET, Key=record_key)["Body"].read())
    assert record["first_delivered_to"] == "audit-admin"
    assert record["sha256"] == ready["sha256"]
    assert record["filters"] == ready["filters"]


# --- errors: one shape from the proxy and from the app (docs/errors.md) --------------------------


def test_every_error_through_the_front_door_has_the_one_shape_and_the_proxys_request_id(
    stack: Stack, pool: cognito.LocalCognito, admin: str
) -> None:
    viewer = cognito.sign_in(pool, "audit-viewer").access
    bearer = {"admin": {"Authorization": f"Bearer {admin}"}, "viewer": {"Authorization": f"Bearer {viewer}"}}
    asked = {
        ("proxy", 404): requests.get(f"{stack.proxy.url}/_proxy/nothing", timeout=WAIT),
        ("proxy", 405): requests.request("PROPFIND", f"{stack.proxy.url}/hospitals", headers=DEMO_AUTH, timeout=WAIT),
        ("audit", 401): requests.get(f"{stack.proxy.url}/audit", timeout=WAIT),
        ("audit", 403): requests.get(f"{stack.proxy.url}/audit", headers=bearer["viewer"], timeout=WAIT),
        ("audit", 400): requests.get(f"{stack.proxy.url}/audit?limit=1", headers=bearer["admin"], timeout=WAIT),
        ("audit", 404): requests.get(f"{stack.proxy.url}/audit/not-a-job", headers=bearer["admin"], timeout=WAIT),
    }

    for (who, status), answer in asked.items():
        assert answer.status_code == status, (who, answer.text)
        assert answer.headers["Content-Type"] == "application/json", who
        assert_error(answer.content, status, request_id=answer.headers["X-Request-Id"])
