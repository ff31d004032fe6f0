"""The access log as the audit trail reads it: every field, valid UTF-8 JSON whatever a client sends.

The real NGINX with the project's rendered config, in front of the real HOSP
stand-in and of a small HTTP server standing in for the Chalice app (screens
and /audit), all over loopback. Requests that must carry bytes a client
library would clean up (raw bytes 0x80-0xFF, `%ff`, `//`) are written to a
socket as they are. The schema is chalicelib.audit.log_schema; the escaping of
client text and body_patient_id are described in docs/access-log.md.
"""

from __future__ import annotations

import base64
import codecs
import csv
import dataclasses
import json
import random
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest
import requests

from chalicelib.audit import filters
from chalicelib.audit.log_schema import FIELDS, NAMES, duckdb_columns, json_type_of
from chalicelib.note_worker import on_behalf_of_header
from infra.nginx.render import LOG_TEXT_LIMIT
from local import audit_duckdb
from local.hosp_standin.parsing import decimal
from local.nginx_proxy import NginxProxy
from local.processes import closed_port
from tests.support import (
    ACCESS_LOG_TIMEOUT,
    DEMO_AUTH,
    DEMO_PASSWORD,
    DEMO_USER,
    PROXY_TEST_TUNING,
    Hosp,
    RecordingServer,
    access_log_entry,
    access_log_lines,
    proxy_in_front,
)

SCAN_LIMIT = PROXY_TEST_TUNING.body_scan_limit
# Bytes that are not UTF-8, in every way: each byte 0x80-0xFF alone (lone
# continuation bytes, lead bytes with nothing after them), overlong forms of
# "/", an encoded surrogate, a code point above U+10FFFF, truncated sequences;
# then valid UTF-8 of two, three and four bytes, and the text "\xff".
NOT_UTF8 = (
    bytes(range(0x80, 0x100))
    + b"\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80\xf8\x88\x80\x80\x80\xc3A\xe2\x82A\xf0\x9f\x98"
)
VALID_UTF8 = "é€😀".encode()
PAYLOAD = NOT_UTF8 + VALID_UTF8 + b"\\xff\\"
# Put in every body sent: it must never reach the log.
BODY_TEXT = "body-text-that-is-never-logged"
# What the log writes for a patient_id that is not ASCII digits (docs/access-log.md, "Patient ids").
NOT_AN_ID = "not-an-id"
MAX_PATIENT_IDS = 16
# What ends a field the log cut (docs/access-log.md, "Client text").
CUT = "\\..."
TEXT_LIMIT = LOG_TEXT_LIMIT


# --- a stand-in for the Chalice app ------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with proxy_in_front(hosp.address, app, tmp_path_factory.mktemp("nginx")) as running:
        yield running


# --- helpers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    status: int
    head: str
    body: bytes

    @property
    def request_id(self) -> str:
        match = re.search(r"^X-Request-Id: ([0-9a-f]{32})\r?$", self.head, re.MULTILINE | re.IGNORECASE)
        assert match, self.head
        return match.group(1)


def raw_request(port: int, data: bytes) -> RawAnswer:
    """Send bytes as they are; read one answer (NGINX's all have a Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        length = re.search(r"^Content-Length: (\d+)\r?$", text, re.MULTILINE | re.IGNORECASE)
        while length and len(body) < int(length.group(1)) and (chunk := connection.recv(65536)):
            body += chunk
    return RawAnswer(int(text.split(" ", 2)[1]), text, body)


def get_raw(
    port: int, target: bytes, headers: dict[bytes, bytes] | None = None, method: bytes = b"GET", body: bytes = b""
) -> RawAnswer:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return raw_request(port, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def basic(user: bytes, password: bytes = b"pw") -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


def client_text(raw: bytes) -> str:
    """The documented escaping: valid UTF-8 kept, any other byte as \\xHH, a backslash as two."""
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def logged_text(raw: bytes, limit: int = TEXT_LIMIT) -> str:
    """Client text as the log writes it: escaped, and past `limit` bytes cut before the character
    or escape that would pass it, with CUT at the end."""
    escaped = client_text(raw)
    if len(escaped.encode()) <= limit:
        return escaped
    units = re.findall(r"\\\\|\\x[0-9a-f]{2}|.", escaped, re.DOTALL)
    kept, size = [], 0
    for unit in units:
        size += len(unit.encode())
        if size > limit:
            break
        kept.append(unit)
    return "".join(kept) + CUT


def patient_id(value: str) -> str:
    """A patient_id's value as the log writes it: ASCII digits without their leading zeros, at most 18."""
    digits = value.lstrip("0") or "0"
    return digits if re.fullmatch(r"[0-9]+", value) and len(digits) <= 18 else NOT_AN_ID


def patient_ids(values: list[str]) -> str:
    """The values a request names as the log lists them: each once, in order, joined by ","; at most 16."""
    ids = list(dict.fromkeys(patient_id(value) for value in values))
    return ",".join(ids[:MAX_PATIENT_IDS] + ([CUT] if len(ids) > MAX_PATIENT_IDS else []))


def raw_bytes(text: str) -> bytes:
    """The bytes a client-text field stands for (docs/access-log.md, "Client text")."""
    out, i = bytearray(), 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif text.startswith("\\x", i):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += text[i].encode()
            i += 1
    return bytes(out)


def assert_schema(entry: dict[str, Any]) -> None:
    assert sorted(entry) == sorted(NAMES)
    assert {f.name: json_type_of(entry[f.name]) for f in FIELDS} == {f.name: f.type.json for f in FIELDS}


# --- client text: valid UTF-8 JSON, reversibly escaped ------------------------------------------


@pytest.mark.parametrize(
    ("field", "target", "headers", "sent"),
    [
        pytest.param("path", b"/hospitals/" + PAYLOAD, {}, b"/hospitals/" + PAYLOAD, id="path"),
        pytest.param("normalized_path", b"/hospitals/" + PAYLOAD, {}, b"/hospitals/" + PAYLOAD, id="normalized_path"),
        pytest.param("query", b"/hospitals?q=" + PAYLOAD, {}, b"q=" + PAYLOAD, id="query"),
        pytest.param("user", b"/hospitals", {b"Authorization": basic(PAYLOAD)}, PAYLOAD, id="basic-user"),
        pytest.param("forwarded_for", b"/hospitals", {b"X-Forwarded-For": PAYLOAD}, PAYLOAD, id="x-forwarded-for"),
        pytest.param(
            "viewer_address", b"/hospitals", {b"CloudFront-Viewer-Address": PAYLOAD}, PAYLOAD, id="viewer-address"
        ),
        pytest.param("user_agent", b"/hospitals", {b"User-Agent": PAYLOAD}, PAYLOAD, id="user-agent"),
        # ASCII, which most text is, and written as it is, but for a backslash.
        pytest.param("user_agent", b"/hospitals", {b"User-Agent": b"C:\\app\\x"}, b"C:\\app\\x", id="backslash"),
        pytest.param("normalized_path", b"/hospitals/%01%7f%22", {}, b'/hospitals/\x01\x7f"', id="control characters"),
        pytest.param("patient_id", b"/hospitals", {b"X-Patient-Id": b""}, b"", id="an empty header"),
    ],
)
def test_bytes_that_are_not_utf8_are_logged_as_valid_json_from_which_they_can_be_recovered(
    proxy: NginxProxy, fresh_hosp: Hosp, *, field: str, target: bytes, headers: dict[bytes, bytes], sent: bytes
) -> None:
    answer = get_raw(proxy.port, target, headers)

    entry = access_log_entry(proxy, answer.request_id)  # every line decodes as strict UTF-8 JSON
    assert entry[field] == client_text(sent)
    assert raw_bytes(entry[field]) == sent
    assert_schema(entry)


def test_encoded_bytes_in_the_path_are_logged_apart_and_apart_from_their_text(
    proxy: NginxProxy, fresh_hosp: Hosp
) -> None:
    spellings = [b"/patients/%ff", b"/patients/%fe", b"/patients/%5cxff", b"/patients/\\xff"]

    entries = [access_log_entry(proxy, get_raw(proxy.port, target).request_id) for target in spellings]

    normalized = [raw_bytes(entry["normalized_path"]) for entry in entries]
    assert normalized == [b"/patients/\xff", b"/patients/\xfe", b"/patients/\\xff", b"/patients/\\xff"]
    assert [entry["normalized_path"] for entry in entries] == [
        "/patients/\\xff",
        "/patients/\\xfe",
        "/patients/\\\\xff",
        "/patients/\\\\xff",
    ]
    assert [raw_bytes(entry["path"]) for entry in entries] == spellings


def test_the_escaping_of_client_text_is_undone_by_the_documented_rule() -> None:
    samples = [b"", b"plain", b"\\", b"\\\\xff", b"\xff", b"a\\xffb\xffc", PAYLOAD, bytes(range(256))]

    assert [raw_bytes(client_text(sample)) for sample in samples] == samples
    assert client_text(b"\xff") != client_text(b"\\xff")


# --- the fast path: plain text is written by maps, anything else as above ----------------------

# ASCII without a backslash, but with what JSON itself escapes: a quote and control characters.
PLAIN_WITH_CONTROLS = b'say "hi"\x01\x1f\x7f\tend'


def test_a_plain_request_is_logged_field_for_field(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    headers = {
        b"Authorization": DEMO_AUTH["Authorization"].encode(),
        b"X-Forwarded-For": b"203.0.113.9, 198.51.100.7",
        b"CloudFront-Viewer-Address": b"203.0.113.9:46532",
        b"User-Agent": b"curl/7.88.1",
        b"X-Patient-Id": b"005",
    }

    answer = get_raw(proxy.port, b"/hospitals//./x/..?view=full&page=2", headers)

    entry = access_log_entry(proxy, answer.request_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert entry["logged_at"] == entry["time"][:23].replace("T", " ")
    assert isinstance(entry["request_time"], float)
    assert re.fullmatch(r"\d+\.\d{3}", entry["upstream_response_time"])
    timing = {"time", "logged_at", "request_time", "upstream_response_time"}
    assert {name: value for name, value in entry.items() if name not in timing} == {
        "request_id": answer.request_id,
        "user": DEMO_USER,
        "on_behalf_of": "",
        "audit_user": "",
        "client_ip": "127.0.0.1",
        "forwarded_for": "203.0.113.9, 198.51.100.7",
        "viewer_address": "203.0.113.9:46532",
        "method": "GET",
        "path": "/hospitals//./x/..",
        "normalized_path": "/hospitals/",
        "query": "view=full&page=2",
        "patient_id": "5",
        "body_patient_id": "",
        "query_patient_id": "",
        "status": answer.status,
        "bytes_sent": len(answer.body),
        "upstream_addr": fresh_hosp.address,
        "upstream_status": str(answer.status),
        "retry_budget": "",
        "listener": "public",
        "route": "hosp",
        "user_agent": "curl/7.88.1",
        "note_handoff": "",
    }


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        pytest.param(b"/hospitals?", b"/hospitals", b"", id="an empty query"),
        pytest.param(b"/hospitals??q=1", b"/hospitals", b"?q=1", id="a query starting with ?"),
        pytest.param(b"/hospitals?q=\xff", b"/hospitals", b"q=\xff", id="a query that is not utf-8"),
        pytest.param(b"/hospitals/\xff?q=1", b"/hospitals/\xff", b"q=1", id="a path that is not utf-8"),
        pytest.param(b"/h\\?q=\\", b"/h\\", b"q=\\", id="backslashes"),
        pytest.param(
            b"/" + b"p" * (TEXT_LIMIT - 1) + b"?q=1", b"/" + b"p" * (TEXT_LIMIT - 1), b"q=1", id="at the limit"
        ),
        pytest.param(b"/" + b"p" * TEXT_LIMIT + b"?q=1", b"/" + b"p" * TEXT_LIMIT, b"q=1", id="one past it"),
    ],
)
def test_the_path_and_the_query_are_read_apart_from_the_target(
    proxy: NginxProxy, fresh_hosp: Hosp, target: bytes, path: bytes, query: bytes
) -> None:
    answer = get_raw(proxy.port, target)

    entry = access_log_entry(proxy, answer.request_id)
    assert (entry["path"], entry["query"]) == (logged_text(path), logged_text(query))


@pytest.mark.parametrize("extra", [b"", b"\xff", b"\\"], ids=["plain", "not utf-8", "a backslash"])
@pytest.mark.parametrize("field", ["user", "on_behalf_of", "forwarded_for", "viewer_address", "user_agent"])
def test_quotes_and_control_characters_in_each_header_field_are_escaped_by_json(
    proxy: NginxProxy, fresh_hosp: Hosp, field: str, extra: bytes
) -> None:
    text = PLAIN_WITH_CONTROLS + extra
    headers = {
        "user": {b"Authorization": basic(text)},
        "on_behalf_of": {b"X-On-Behalf-Of": text},
        "forwarded_for": {b"X-Forwarded-For": text},
        "viewer_address": {b"CloudFront-Viewer-Address": text},
        "user_agent": {b"User-Agent": text},
    }[field]
    port = int(proxy.internal_url.rsplit(":", 1)[1]) if field == "on_behalf_of" else proxy.port

    answer = get_raw(port, b"/hospitals", headers)

    [line] = proxy_log_lines(proxy, answer.request_id)
    assert json.loads(line)[field] == client_text(text)
    assert b'say \\"hi\\"\\u0001\\u001F\x7f\\tend' in line  # NGINX's JSON escapes (DEL is not one)
    assert_schema(json.loads(line))


def proxy_log_lines(proxy: NginxProxy, request_id: str) -> list[bytes]:
    """The raw bytes of a request's line, once it is written."""
    access_log_entry(proxy, request_id)
    return [line for line in proxy.access_log.read_bytes().splitlines() if request_id.encode() in line]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "M-_X"])
def test_every_method_is_logged_as_sent_and_only_writes_are_scanned(
    proxy: NginxProxy, fresh_hosp: Hosp, method: str
) -> None:
    body = json.dumps(note(7)).encode()

    answer = get_raw(
        proxy.port, b"/notes/1", {b"Authorization": DEMO_AUTH["Authorization"].encode()}, method.encode(), body
    )

    entry = access_log_entry(proxy, answer.request_id)
    scanned = method in {"POST", "PUT", "PATCH"}
    assert (entry["method"], entry["body_patient_id"]) == (method, "7" if scanned else "")


def test_the_log_asks_njs_for_a_screens_note_handoff_only(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    """note_handoff is empty off a screen, also for a path the hand-off's filter runs on (a retry)."""
    fresh_hosp.script("503")

    answer = requests.get(proxy.url + "/patients/1", headers=DEMO_AUTH, timeout=10)

    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert (entry["route"], entry["upstream_status"], entry["note_handoff"]) == ("hosp", "503 : 200", "")


# --- the schema: every line has exactly the schema's fields, with its JSON types ----------------


def assert_logged_with_schema(proxy: NginxProxy, request_id: str) -> dict[str, Any]:
    entry = access_log_entry(proxy, request_id)
    assert_schema(entry)
    return entry


def test_a_normal_request_is_logged_with_the_schema(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = requests.get(proxy.url + "/hospitals", params={"view": "full"}, headers=DEMO_AUTH, timeout=10)

    entry = assert_logged_with_schema(proxy, answer.headers["X-Request-Id"])
    assert (entry["status"], entry["route"], entry["method"], entry["query"]) == (200, "hosp", "GET", "view=full")


def test_logged_at_is_the_instant_of_time_in_utc_as_a_timestamp(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = requests.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10)

    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", entry["logged_at"])
    instant = datetime.fromisoformat(entry["time"]).astimezone(UTC)
    assert entry["logged_at"] == instant.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_duckdb_reads_every_line_with_the_schemas_types(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    """The local audit query reads the log with duckdb_columns(); logged_at is a TIMESTAMP."""
    request_id = requests.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10).headers["X-Request-Id"]
    access_log_entry(proxy, request_id)
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in duckdb_columns().items())

    relation = duckdb.sql(
        f"SELECT request_id, logged_at, time FROM read_json('{proxy.access_log}', "
        f"format = 'newline_delimited', columns = {{{columns}}})"
    )
    assert relation is not None
    rows = relation.fetchall()

    assert len(rows) == len(access_log_lines(proxy))
    for _, logged_at, text in rows:
        assert logged_at == datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
    assert request_id in [row[0] for row in rows]


def test_a_method_outside_the_api_is_logged_with_the_schema_as_it_was_sent(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = get_raw(proxy.port, b"/patients/%35?x=1", method=b"PROPFIND")

    entry = assert_logged_with_schema(proxy, answer.request_id)
    assert answer.status == 405
    # Not the "GET /_proxy/error" NGINX's error page turns it into.
    assert (entry["method"], entry["path"], entry["normalized_path"], entry["query"]) == (
        "PROPFIND",
        "/patients/%35",
        "/patients/5",
        "x=1",
    )
    assert (entry["status"], entry["body_patient_id"]) == (405, "")


def test_a_body_over_the_limit_is_logged_with_the_schema(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    # Refused on its Content-Length, before a byte of the body is read.
    answer = raw_request(
        proxy.port,
        b"PUT /patients/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 99999999\r\n\r\n",
    )

    entry = assert_logged_with_schema(proxy, answer.request_id)
    assert (answer.status, entry["status"], entry["method"], entry["normalized_path"]) == (
        413,
        413,
        "PUT",
        "/patients/5",
    )
    assert entry["body_patient_id"] == "?"  # never read, never sent on
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"G\xffT /patients/1 HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"],
)
def test_a_malformed_request_is_logged_with_the_schema(
    proxy: NginxProxy, fresh_hosp: Hosp, request_bytes: bytes
) -> None:
    answer = raw_request(proxy.port, request_bytes)

    assert answer.status == 400
    entry = assert_logged_with_schema(proxy, json.loads(answer.body)["request_id"])
    assert entry["status"] == 400
    assert entry["normalized_path"] == ""  # NGINX could not read the request
    assert entry["route"] == "malformed"


MALFORMED = "malformed request: the proxy could not read it"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /../patients/1 HTTP/1.1\r\nHost: a\r\n\r\n", id="above the root"),
        pytest.param(b"GET /patients/%2e%2e/%2e%2e/1 HTTP/1.1\r\nHost: a\r\n\r\n", id="encoded, above the root"),
        pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", id="a header without a colon"),
        pytest.param(b"GARBAGE\r\n\r\n", id="no request line"),
    ],
)
def test_a_request_nginx_could_not_read_is_malformed_not_one_without_a_host(
    proxy: NginxProxy, fresh_hosp: Hosp, request_bytes: bytes
) -> None:
    answer = raw_request(proxy.port, request_bytes)

    error = json.loads(answer.body)
    assert answer.status == 400
    assert error == {"error": MALFORMED, "status": 400, "request_id": error["request_id"]}
    entry = assert_logged_with_schema(proxy, error["request_id"])
    assert (entry["route"], entry["status"], entry["upstream_addr"]) == ("malformed", 400, "")
    assert fresh_hosp.received() == 0


def test_a_request_without_a_host_is_still_refused_for_its_host(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = raw_request(proxy.port, b"GET /patients/1 HTTP/1.0\r\n\r\n")

    error = json.loads(answer.body)
    assert (answer.status, error["error"]) == (400, "the request has no valid Host header")
    assert access_log_entry(proxy, error["request_id"])["route"] == "host-refused"


def test_a_retried_request_is_logged_with_the_schema(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503")

    answer = requests.get(proxy.url + "/patients/1", headers=DEMO_AUTH, timeout=10)

    entry = assert_logged_with_schema(proxy, answer.headers["X-Request-Id"])
    assert (entry["status"], entry["upstream_status"], entry["retry_budget"]) == (200, "503 : 200", "PASSED")


def test_a_screen_is_logged_with_the_schema(proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer) -> None:
    answer = requests.post(
        proxy.url + "/patients/1/screen", json={"images": ["aGVsbG8="]}, headers=DEMO_AUTH, timeout=10
    )

    entry = assert_logged_with_schema(proxy, answer.headers["X-Request-Id"])
    assert (entry["route"], entry["status"], entry["body_patient_id"]) == ("screen", 200, "")
    assert entry["note_handoff"] == "sent"
    assert [r.path for r in fresh_app.wait_for(1)] == ["/note-intake"]


def test_an_audit_request_is_logged_with_the_schema(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer
) -> None:
    answer = requests.get(proxy.url + "/audit", headers=DEMO_AUTH, timeout=10)

    entry = assert_logged_with_schema(proxy, answer.headers["X-Request-Id"])
    assert (entry["route"], entry["status"], entry["normalized_path"]) == ("audit", 200, "/audit")


# --- body_patient_id ----------------------------------------------------------------------------


def note(patient_id: object) -> dict[str, object]:
    return {"title": "X-ray", "body": BODY_TEXT, "patient_id": patient_id, "staff_id": 1}


def sized(patient_id: int, size: int) -> bytes:
    """A note body of exactly `size` bytes: its text is padded."""
    body = json.dumps(note(patient_id)).encode()
    padded = json.dumps({**note(patient_id), "body": BODY_TEXT + "x" * (size - len(body))}).encode()
    assert len(padded) == size
    return padded


def deep(depth: int) -> bytes:
    return b'{"patient_id": 1, "body": "' + BODY_TEXT.encode() + b'", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("method", "body", "headers", "logged_value"),
    [
        pytest.param("POST", json.dumps(note(3)).encode(), {}, "3", id="a number"),
        pytest.param("POST", json.dumps(note("0042")).encode(), {}, "42", id="a string"),
        pytest.param(
            "POST", b'{"patient_id": 5.0, "body": "' + BODY_TEXT.encode() + b'"}', {}, NOT_AN_ID, id="not digits"
        ),
        pytest.param(
            "POST",
            b'{"patient_id": 1, "body": "' + BODY_TEXT.encode() + b'", "patient_id": "2"}',
            {},
            "1,2",
            id="duplicate keys: both",
        ),
        pytest.param(
            "POST", b'{"patient_id": 1, "patient_id": "01", "patient_id": "\\u0031"}', {}, "1", id="the same id thrice"
        ),
        pytest.param(
            "POST", b'{"patient\\u005fid": 4, "body": "' + BODY_TEXT.encode() + b'"}', {}, "4", id="escaped key"
        ),
        pytest.param(
            "POST",
            b'{"note": {"patient_id": 5}, "list": [{"patient_id": 6}], "body": "' + BODY_TEXT.encode() + b'"}',
            {},
            "",
            id="nested patient_id ignored",
        ),
        pytest.param(
            "POST",
            b'{"body": "' + BODY_TEXT.encode() + b' \\"patient_id\\": 7", "patient_id": 8}',
            {},
            "8",
            id="patient_id inside a string ignored",
        ),
        pytest.param(
            "POST", b'{"body": "' + BODY_TEXT.encode() + b' \\"patient_id\\": 7"}', {}, "", id="only inside a string"
        ),
        pytest.param("POST", json.dumps(note(9)).encode(), {"X-Patient-Id": "10"}, "9", id="a misleading header"),
        pytest.param(
            "POST",
            b'{"patient_id": "\\u00e9\\\\x\\ud800", "body": "' + BODY_TEXT.encode() + b'"}',
            {},
            NOT_AN_ID,
            id="string escapes, not digits",
        ),
        pytest.param("POST", b'{"patient_id": "\\u0035\\u0030"}', {}, "50", id="escaped digits"),
        pytest.param("POST", json.dumps(note(None)).encode(), {}, NOT_AN_ID, id="null names no patient"),
        pytest.param("POST", json.dumps(note("1" * 19)).encode(), {}, NOT_AN_ID, id="19 digits"),
        pytest.param("POST", deep(100_000), {}, "?", id="nested 100,000 deep"),
        pytest.param("POST", deep(990), {}, "1", id="nested 990 deep"),
        pytest.param("POST", b'{"patient_id": 3, "body": "' + BODY_TEXT.encode() + b'",}', {}, "?", id="malformed"),
        pytest.param("POST", b'[{"patient_id": 3, "body": "' + BODY_TEXT.encode() + b'"}]', {}, "?", id="an array"),
        pytest.param("POST", b'{"patient_id": "\xff", "body": "' + BODY_TEXT.encode() + b'"}', {}, "?", id="not UTF-8"),
        pytest.param("POST", sized(11, SCAN_LIMIT), {}, "11", id="at the scan limit"),
        pytest.param("POST", sized(12, SCAN_LIMIT + 1), {}, "?", id="over the scan limit"),
        pytest.param("PATCH", json.dumps(note(13)).encode(), {}, "13", id="a PATCH"),
        pytest.param("GET", b"", {}, "", id="a GET"),
        pytest.param("DELETE", b"", {}, "", id="a DELETE"),
    ],
)
def test_body_patient_id_is_the_top_level_patient_id_of_a_write(
    proxy: NginxProxy, fresh_hosp: Hosp, *, method: str, body: bytes, headers: dict[str, str], logged_value: str
) -> None:
    answer = requests.request(
        method, proxy.url + "/notes", data=body or None, headers={**DEMO_AUTH, **headers}, timeout=30
    )

    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert entry["body_patient_id"] == logged_value
    assert entry["patient_id"] == patient_ids([headers["X-Patient-Id"]] if "X-Patient-Id" in headers else [])
    assert BODY_TEXT.encode() not in proxy.access_log.read_bytes()


def test_the_scan_limit_is_a_render_setting(hosp: Hosp, fresh_hosp: Hosp, tmp_path: Path) -> None:
    tuning = dataclasses.replace(PROXY_TEST_TUNING, body_scan_limit=4096)
    with NginxProxy(hosp.address, tmp_path, tuning=tuning) as small:
        answers = [
            requests.post(small.url + "/notes", data=sized(patient, size), headers=DEMO_AUTH, timeout=10)
            for patient, size in ((18, 4096), (19, 4097))
        ]
        entries = [access_log_entry(small, answer.headers["X-Request-Id"]) for answer in answers]

    assert [entry["body_patient_id"] for entry in entries] == ["18", "?"]


# What the generated bodies are made of: patient_id keys in every spelling,
# values of every kind, and what damages a body.
KEYS = ('"patient_id"', '"patient\\u005fid"', '"\\u0070atient_id"', '"patient_ids"', '"Patient_id"', '"a"')
SCALARS = (
    "1", "-0", "12.5e3", "0.5", "true", "null",
    '"7"', '"é"', '"?"', '""', '"patient_id"', '"a\\"b"', '"\\n\\t\\/"',
    '"\\u00e9\\\\x"', '"\\ud800"', '"\\ud83d\\ude00"',
)  # fmt: skip
DAMAGE = (
    b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"0", b"-", b"e", b"t",
    b"\x01", b"\xff", b"\xc3", b"NaN", b"/*c*/", codecs.BOM_UTF8,
)  # fmt: skip


class Literal(str):
    """A JSON number, as written."""


class Members(list[tuple[str, object]]):
    """A JSON object's members, every one of them, in order (duplicate keys included)."""


def reference_patient_id(body: bytes) -> str:
    """body_patient_id as Python's json reads the body: every top-level patient_id, as patient ids."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    if body.startswith(codecs.BOM_UTF8):
        return "?"
    try:
        value = json.loads(
            body.decode("utf-8"),
            parse_int=Literal,
            parse_float=Literal,
            parse_constant=refuse,
            object_pairs_hook=Members,
        )
    except ValueError:  # UnicodeDecodeError and JSONDecodeError too
        return "?"
    if not isinstance(value, Members):
        return "?"
    found = [member for key, member in value if key == "patient_id"]
    # A string's text (a lone surrogate included) or a number as written; anything else is no id.
    return patient_ids([member if isinstance(member, str) else "-" for member in found])


def generated_bodies(count: int, seed: int) -> list[bytes]:
    """JSON objects with patient_id keys in every place and spelling, half of them then damaged."""
    rng = random.Random(seed)

    def value(depth: int) -> str:
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            return rng.choice(SCALARS)
        if roll < 0.75:
            return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        return obj(depth + 1)

    def obj(depth: int) -> str:
        members = [rng.choice(KEYS) + rng.choice([":", " : "]) + value(depth) for _ in range(rng.randint(0, 4))]
        return "{" + rng.choice([",", ", ", ",\n"]).join(members) + "}"

    def damaged(text: str) -> bytes:
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.4 and data:
                del data[min(at, len(data) - 1)]
            else:
                data[at:at] = rng.choice(DAMAGE)
        return bytes(data)

    bodies = []
    for _ in range(count):
        text = obj(0)
        bodies.append(text.encode() if rng.random() < 0.5 else damaged(text))
    return bodies


def test_body_patient_id_agrees_with_pythons_json_on_generated_bodies(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    bodies = generated_bodies(300, seed=20261128)
    with requests.Session() as session:
        answers = [session.post(proxy.url + "/notes", data=body, headers=DEMO_AUTH, timeout=10) for body in bodies]

    logged_values = [access_log_entry(proxy, answer.headers["X-Request-Id"])["body_patient_id"] for answer in answers]
    expected = [reference_patient_id(body) for body in bodies]
    assert [(b, v) for b, v, e in zip(bodies, logged_values, expected, strict=True) if v != e] == []
    assert {"", "?"} < set(expected)  # the sample has bodies of every kind


def test_a_chunked_body_is_scanned(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    body = json.dumps(note(14)).encode()
    chunks = iter([body[:10], body[10:25], body[25:]])

    answer = requests.post(proxy.url + "/notes", data=chunks, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 201
    assert access_log_entry(proxy, answer.headers["X-Request-Id"])["body_patient_id"] == "14"


def test_a_retried_put_is_scanned_after_its_retry(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    fresh_hosp.script("503", "502")
    body = b'{"name": "Eastside", "patient_id": "15", "note": "' + BODY_TEXT.encode() + b'"}'

    answer = requests.put(proxy.url + "/hospitals/1", data=body, headers=DEMO_AUTH, timeout=10)

    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert entry["upstream_status"] == "503 : 502, 200"  # the body went through @hosp_retry
    assert entry["body_patient_id"] == "15"


def test_a_body_nested_100000_deep_leaves_the_worker_serving(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    started = time.monotonic()
    deep_answer = requests.post(proxy.url + "/notes", data=deep(100_000), headers=DEMO_AUTH, timeout=10)
    after = requests.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10)

    assert access_log_entry(proxy, deep_answer.headers["X-Request-Id"])["body_patient_id"] == "?"
    assert after.status_code == 200
    assert access_log_entry(proxy, after.headers["X-Request-Id"])["status"] == 200
    assert time.monotonic() - started < ACCESS_LOG_TIMEOUT
    assert "exited on signal" not in proxy.error_log.read_text()


def test_the_body_text_and_the_password_never_reach_the_log(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    requests.post(proxy.url + "/notes", json=note(16), headers=DEMO_AUTH, timeout=10)
    requests.put(proxy.url + "/hospitals/1", json={"name": BODY_TEXT}, headers=DEMO_AUTH, timeout=10)

    whole_log = proxy.access_log.read_bytes()
    assert BODY_TEXT.encode() not in whole_log
    assert DEMO_PASSWORD.encode() not in whole_log


# --- query_patient_id ---------------------------------------------------------------------------


def reference_query_patient_id(target: bytes) -> str:
    """query_patient_id as the HOSP stand-in reads a note listing's target: urlsplit, then
    Python's own parse_qs with its defaults, and every value (the stand-in's list_notes takes
    the first, HOSP may take another) as a patient id.

    The stand-in's http.server reads the target as Latin-1; here its bytes that are not
    ASCII (which a client should have percent-encoded) are read as the bytes they are
    (surrogateescape), as the log keeps them. unquote leaves such characters alone either
    way, and none of them is a digit."""
    query = urlsplit(target.decode("utf-8", "surrogateescape")).query
    values = parse_qs(query).get("patient_id")
    if not values:
        return ""
    return patient_ids(values)


LISTING_QUERIES = [
    pytest.param(b"patient_id=5", id="plain"),
    pytest.param(b"patient_id=05", id="a leading zero"),
    pytest.param(b"patient_id=000", id="zeros"),
    pytest.param(b"patient_id=%35", id="an encoded digit"),
    pytest.param(b"patient%5Fid=2", id="an encoded key"),
    pytest.param(b"patient_id=&patient_id=2", id="a blank value first"),
    pytest.param(b"patient_id=2&patient_id=3", id="two values: both"),
    pytest.param(b"patient_id=2&patient_id=02&patient%5Fid=3&patient_id=x", id="values repeated and not ids"),
    pytest.param(b"&".join(b"patient_id=%d" % n for n in range(1, 21)), id="20 values: the first 16"),
    pytest.param(b"patient_id=5&view=full", id="first, then more"),
    pytest.param(b"view=full&patient_id=0012&x=%zz", id="among others"),
    pytest.param(b"&&patient_id=7&", id="empty fields"),
    pytest.param(b"patient_id=%ff", id="not UTF-8 once decoded"),
    pytest.param(b"patient_id=%e2%82A%f0%80%80%af%ed%a0%80", id="invalid sequences"),
    pytest.param(b"patient_id=%zz", id="not an escape"),
    pytest.param(b"patient_id=%", id="a lone percent"),
    pytest.param(b"patient_id=%%35", id="percent before an escape"),
    pytest.param(b"patient_id=5+", id="a plus after"),
    pytest.param(b"patient_id=+5", id="a plus before"),
    pytest.param(b"patient_id=%2B5", id="an encoded plus"),
    pytest.param(b"patient+id=3", id="a plus in the key"),
    pytest.param(b"a=1;patient_id=4", id="a semicolon is no separator"),
    pytest.param(b"patient_id", id="no equals sign"),
    pytest.param(b"patient_id=", id="no value"),
    pytest.param(b"patient_id%3D5", id="an encoded equals sign"),
    pytest.param(b"patient_id=1=2", id="an equals sign in the value"),
    pytest.param(b"patient_id=%D9%A5", id="an Arabic-Indic digit"),
    pytest.param("patient_id=\u0665".encode(), id="the same, not encoded"),
    pytest.param(b"patient_id=%C3\xa9", id="an escape, then a raw byte"),
    pytest.param(b"patient_id=\xff%5c\\x", id="a raw byte and backslashes"),
    pytest.param(b"patient_id=%22%00%0a", id="a quote and control characters"),
    pytest.param(b"PATIENT_ID=5", id="another case"),
    pytest.param(b"patient_id=123456789012345678", id="18 digits"),
    pytest.param(b"patient_id=5#x", id="a fragment after"),
    pytest.param(b"x=1#&patient_id=5", id="in the fragment"),
    pytest.param(b"patient_id=5?x", id="a question mark in the value"),
    pytest.param(b"patient_id=" + b"9" * 4096, id="4 kB of digits"),
    pytest.param(b"patient_id=" + b"%ff" * 1365, id="4 kB of escapes"),
    pytest.param(b"x" + b"&" * 4000 + b"patient_id=%30%36", id="4,000 fields"),
]


@pytest.mark.parametrize("query", LISTING_QUERIES)
def test_query_patient_id_is_the_patient_id_pythons_parse_qs_reads(
    proxy: NginxProxy, fresh_hosp: Hosp, query: bytes
) -> None:
    target = b"/notes?" + query
    expected = reference_query_patient_id(target)

    answer = get_raw(proxy.port, target, {b"Authorization": DEMO_AUTH["Authorization"].encode()})

    entry = access_log_entry(proxy, answer.request_id)  # every line decodes as strict UTF-8 JSON
    assert_schema(entry)
    assert entry["query_patient_id"] == expected
    assert entry["query"] == logged_text(target.partition(b"?")[2])  # the query itself, as sent
    # The stand-in read the same fields: it lists the first value's notes if that is a positive
    # id (decimal), or every note when none is asked for, and refuses any other value.
    values = parse_qs(urlsplit(target.decode("utf-8", "surrogateescape")).query).get("patient_id")
    assert answer.status == (200 if not values or decimal(values[0]) else 400)


# What the generated queries are made of: patient_id in every spelling, values that
# are digits or look like them, and every way of damaging a field.
QUERY_KEYS = (
    b"patient_id", b"patient%5Fid", b"patient%5fid", b"%70atient_id", b"patient_id%00", b"PATIENT_ID",
    b"patient+id", b"patient_id+", b"patient_id\xff", b"x", b"",
)  # fmt: skip
QUERY_VALUES = (
    b"5", b"05", b"0", b"", b"%35", b"+5", b"5+", b"%2B5", b"%ff", b"%zz", b"%", b"%e2%82", b"%C3%A9",
    "\u0665".encode(), b"\xff", b"%C3\xa9", b"5#x", b"1=2", b"\\", b"%5C", b"9" * 19, b"0" * 20 + b"8",
)  # fmt: skip
QUERY_SEPARATORS = (b"&", b"&", b"&", b"&&", b";")


def generated_queries(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)

    def field() -> bytes:
        if rng.random() < 0.1:
            return rng.choice(QUERY_KEYS)  # no "="
        return rng.choice(QUERY_KEYS) + b"=" + rng.choice(QUERY_VALUES)

    queries = []
    for _ in range(count):
        fields = [field() for _ in range(rng.randint(0, 5))]
        query = b""
        for item in fields:
            query += (rng.choice(QUERY_SEPARATORS) if query else b"") + item
        queries.append(query)
    return queries


def test_query_patient_id_agrees_with_parse_qs_on_generated_queries(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    targets = [b"/notes?" + query for query in generated_queries(300, seed=20261128)]

    entries = [access_log_entry(proxy, get_raw(proxy.port, target).request_id) for target in targets]

    logged_values = [entry["query_patient_id"] for entry in entries]
    expected = [reference_query_patient_id(target) for target in targets]
    assert [(t, v, e) for t, v, e in zip(targets, logged_values, expected, strict=True) if v != e] == []
    # The sample has every kind: none, an id, not an id, and more than one.
    assert "" in expected
    assert any(value.isdigit() for value in expected)
    assert NOT_AN_ID in expected
    assert any("," in value for value in expected)


def test_a_fragment_before_the_query_leaves_no_query(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    target = b"/notes#?patient_id=5"

    answer = get_raw(proxy.port, target, {b"Authorization": DEMO_AUTH["Authorization"].encode()})

    entry = access_log_entry(proxy, answer.request_id)
    assert (entry["query"], entry["query_patient_id"]) == ("patient_id=5", "")
    assert reference_query_patient_id(target) == ""
    assert answer.status == 200  # the stand-in listed every note


@pytest.mark.parametrize(
    ("method", "target", "logged_value"),
    [
        pytest.param(b"GET", b"/notes.json?patient_id=05", "5", id="json suffix"),
        pytest.param(b"GET", b"//notes//?patient_id=05", "5", id="slashes"),
        pytest.param(b"GET", b"/n%6ftes?patient_id=05", "5", id="an encoded path"),
        pytest.param(b"HEAD", b"/notes?patient_id=05", "5", id="HEAD"),
        pytest.param(b"GET", b"/notes", "", id="no query"),
        pytest.param(b"POST", b"/notes?patient_id=05", "", id="a write"),
        pytest.param(b"GET", b"/notes/5?patient_id=3", "", id="a note"),
        pytest.param(b"GET", b"/notesx?patient_id=3", "", id="another path"),
        pytest.param(b"GET", b"/hospitals?patient_id=3", "", id="hospitals"),
        pytest.param(b"GET", b"/notes%0a?patient_id=3", "", id="a newline after the path"),
    ],
)
def test_query_patient_id_is_logged_for_note_listings_only(
    proxy: NginxProxy, fresh_hosp: Hosp, *, method: bytes, target: bytes, logged_value: str
) -> None:
    body = b'{"title": "t", "body": "' + BODY_TEXT.encode() + b'", "staff_id": 1}' if method == b"POST" else b""

    answer = get_raw(proxy.port, target, {b"Authorization": DEMO_AUTH["Authorization"].encode()}, method, body)

    entry = access_log_entry(proxy, answer.request_id)
    assert_schema(entry)
    assert entry["query_patient_id"] == logged_value


# --- /audit goes to the Chalice app, never to HOSP -----------------------------------------------


@pytest.mark.parametrize(
    ("target", "forwarded", "normalized"),
    [
        (b"/audit", "/audit", "/audit"),
        (b"/audit/abc?from=2026-11-01&patient=%35", "/audit/abc?from=2026-11-01&patient=%35", "/audit/abc"),
        (b"/%61udit", "/audit", "/audit"),
        (b"//audit", "/audit", "/audit"),
        (b"/audit//exports/../x", "/audit/x", "/audit/x"),
        (b"/x/../audit/a%20b?q", "/audit/a%20b?q", "/audit/a b"),
    ],
)
def test_every_spelling_of_audit_reaches_the_app_with_its_credentials_and_never_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, *, target: bytes, forwarded: str, normalized: str
) -> None:
    authorization = b"Bearer an.audit.token"

    answer = get_raw(proxy.port, target, {b"Authorization": authorization})

    assert (answer.status, answer.body) == (200, RecordingServer.ANSWER)
    [received] = fresh_app.received
    assert (received.method, received.path) == ("GET", forwarded)  # the normalized path, the query as sent
    assert received.headers["Authorization"] == authorization.decode()
    assert received.headers["X-Request-Id"] == answer.request_id
    assert received.headers["Host"] == "127.0.0.1"
    entry = access_log_entry(proxy, answer.request_id)
    assert (entry["route"], entry["normalized_path"], entry["path"]) == (
        "audit",
        normalized,
        target.split(b"?")[0].decode(),
    )
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize(
    ("target", "normalized"), [(b"/audit/", "/audit/"), (b"//audit/", "/audit/"), (b"/audit/a/b", "/audit/a/b")]
)
def test_an_audit_path_the_api_does_not_serve_is_the_proxys_404_logged_as_audit(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, target: bytes, normalized: str
) -> None:
    answer = get_raw(proxy.port, target, {b"Authorization": b"Bearer an.audit.token"})

    assert answer.status == 404
    assert json.loads(answer.body)["request_id"] == answer.request_id
    entry = access_log_entry(proxy, answer.request_id)
    assert (entry["route"], entry["normalized_path"], entry["status"]) == ("audit", normalized, 404)
    assert fresh_app.received == []
    assert fresh_hosp.received() == 0


def test_a_write_to_audit_is_the_proxys_405_logged_as_audit_and_never_sent_on(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer
) -> None:
    body = json.dumps({"patient_id": 17, "reason": BODY_TEXT}).encode()

    answer = requests.post(proxy.url + "/audit/exports", data=body, headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET"
    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert (entry["route"], entry["method"], entry["status"]) == ("audit", "POST", 405)
    assert fresh_app.received == []
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize("target", ["/auditx", "/audit.json", "/auditing/1"])
def test_a_path_that_only_starts_like_audit_goes_to_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, target: str
) -> None:
    answer = requests.get(proxy.url + target, headers=DEMO_AUTH, timeout=10)

    assert access_log_entry(proxy, answer.headers["X-Request-Id"])["route"] == "hosp"
    assert fresh_hosp.received() == 1
    assert fresh_app.received == []


def test_the_internal_listener_sends_audit_to_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer
) -> None:
    answer = requests.get(proxy.internal_url + "/audit", headers=DEMO_AUTH, timeout=10)

    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert (entry["listener"], entry["route"]) == ("internal", "hosp")
    assert fresh_hosp.received() == 1
    assert fresh_app.received == []


@pytest.mark.parametrize("failure", ["503", "drop"])
def test_a_failing_audit_request_is_tried_once_and_never_at_hosp(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, failure: str
) -> None:
    if failure == "drop":
        fresh_app.drop = True
    else:
        fresh_app.statuses = [int(failure)]

    answer = requests.get(proxy.url + "/audit/queries", headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == (502 if failure == "drop" else 503)
    assert len(fresh_app.received) == 1
    assert fresh_hosp.received() == 0
    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert (entry["route"], entry["normalized_path"]) == ("audit", "/audit/queries")


def test_requests_are_logged_as_they_arrived_even_when_the_proxy_answers(tmp_path: Path, hosp: Hosp) -> None:
    """A /audit request the app cannot take is still logged as an audit request to its path."""
    with NginxProxy(hosp.address, tmp_path, tuning=PROXY_TEST_TUNING, interceptor=f"127.0.0.1:{closed_port()}") as down:
        answer = requests.get(down.url + "/audit/x", params={"q": "1"}, headers=DEMO_AUTH, timeout=10)
        entry = access_log_entry(down, answer.headers["X-Request-Id"])

    assert answer.status_code == 502
    assert (entry["route"], entry["method"], entry["normalized_path"], entry["query"]) == (
        "audit",
        "GET",
        "/audit/x",
        "q=1",
    )
    assert_schema(entry)


@pytest.mark.parametrize("nurse", [b"nurse-joy", "Zo\u00eb".encode(), b"DOMAIN\\joy", b"joy\xff"])
def test_on_behalf_of_is_logged_from_the_internal_listener_only(
    proxy: NginxProxy, fresh_hosp: Hosp, nurse: bytes
) -> None:
    headers = {b"Authorization": DEMO_AUTH["Authorization"].encode(), b"X-On-Behalf-Of": nurse}
    internal = get_raw(int(proxy.internal_url.rsplit(":", 1)[1]), b"/hospitals", headers)
    public = get_raw(proxy.port, b"/hospitals", headers)

    from_internal = access_log_entry(proxy, internal.request_id)
    from_public = access_log_entry(proxy, public.request_id)
    assert raw_bytes(from_internal["on_behalf_of"]) == nurse
    assert from_public["on_behalf_of"] == ""  # a client cannot claim to act for someone
    assert_schema(from_internal)


@pytest.mark.parametrize(
    "nurse",
    [b"nurse-joy", "Zo\u00eb".encode(), b"DOMAIN\\joy", b"joy\xff", b"joy\\xff", b"joy\\...", b"a \\ b\xc3"],
    ids=["ascii", "utf-8", "backslash", "not utf-8", "a client's own \\xff", "a client's own \\...", "mixed"],
)
def test_the_workers_rows_name_the_nurse_exactly_as_her_own_row_does(
    proxy: NginxProxy, fresh_hosp: Hosp, nurse: bytes
) -> None:
    """Her screen's row logs her Basic user; the worker, handed that logged text, names her in
    X-On-Behalf-Of (note_worker.on_behalf_of_header), and its row's on_behalf_of is the same text."""
    hers = get_raw(proxy.port, b"/hospitals", {b"Authorization": basic(nurse)})
    logged_user = access_log_entry(proxy, hers.request_id)["user"]
    header = on_behalf_of_header(logged_user)
    assert header == nurse

    workers = get_raw(
        int(proxy.internal_url.rsplit(":", 1)[1]),
        b"/hospitals",
        {b"Authorization": DEMO_AUTH["Authorization"].encode(), b"X-On-Behalf-Of": header},
    )
    assert access_log_entry(proxy, workers.request_id)["on_behalf_of"] == logged_user


# --- screens: one definition of the path, for the proxy and the trail ---------------------------

SCREEN_SPELLINGS = [
    "/patients/4/screen",
    "/patients/4/screen.json",
    "/patients/4/screen.JSON",
    "/patients/4/screen.xml",
    "/patients/4/screen/",
    "/patients/04/screen.Json/",
    "//patients/%34/./screen.JSON",
]


def test_every_screen_the_proxy_catches_is_the_patients_in_the_trail(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, tmp_path: Path
) -> None:
    answers = [
        get_raw(proxy.port, target.encode(), {b"Authorization": DEMO_AUTH["Authorization"].encode()}, b"POST", b"{}")
        for target in SCREEN_SPELLINGS
    ]
    entries = [access_log_entry(proxy, answer.request_id) for answer in answers]

    assert [entry["route"] for entry in entries] == ["screen"] * len(SCREEN_SPELLINGS)
    now = datetime.now(UTC)
    chosen = filters.parse({"patient_id": ["4"]}, now + timedelta(seconds=1))
    out = tmp_path / "trail.csv"
    audit_duckdb.export_csv(str(proxy.access_log), chosen.query_parameters(), out, today=now.date())
    with out.open(newline="", encoding="utf-8") as file:
        found = {row["request_id"]: row["patient_id"] for row in csv.DictReader(file)}
    assert {answer.request_id: found.get(answer.request_id) for answer in answers} == {
        answer.request_id: "4" for answer in answers
    }


# --- every field a client supplies is bounded ---------------------------------------------------


def test_a_write_naming_a_140000_character_patient_logs_a_short_line(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    body = json.dumps({"patient_id": "A" * 140_000}).encode()

    answer = requests.post(proxy.url + "/notes", data=body, timeout=10)  # no credentials

    assert answer.status_code == 401
    entry = access_log_entry(proxy, answer.headers["X-Request-Id"])
    assert entry["body_patient_id"] == NOT_AN_ID
    [line] = [
        line for line in proxy.access_log.read_bytes().splitlines() if answer.headers["X-Request-Id"].encode() in line
    ]
    assert len(line) < 2000


LONG = 3000  # bytes, over the limit, under NGINX's 8 kB for a header or the request line


@pytest.mark.parametrize(
    ("field", "target", "headers", "sent"),
    [
        pytest.param("path", b"/hospitals/" + b"p" * LONG, {}, b"/hospitals/" + b"p" * LONG, id="path"),
        pytest.param(
            "normalized_path",
            b"/hospitals/" + b"%ff" * (LONG // 3),
            {},
            b"/hospitals/" + b"\xff" * (LONG // 3),
            id="normalized_path",
        ),
        pytest.param("query", b"/hospitals?q=" + b"\\" * LONG, {}, b"q=" + b"\\" * LONG, id="query"),
        pytest.param("user", b"/hospitals", {b"Authorization": basic(b"u" * LONG)}, b"u" * LONG, id="basic-user"),
        pytest.param(
            "forwarded_for",
            b"/hospitals",
            {b"X-Forwarded-For": b"1.2.3.4, " * 400},
            b"1.2.3.4, " * 400,
            id="x-forwarded-for",
        ),
        pytest.param(
            "viewer_address",
            b"/hospitals",
            {b"CloudFront-Viewer-Address": VALID_UTF8 * 400},
            VALID_UTF8 * 400,
            id="viewer-address",
        ),
        pytest.param("user_agent", b"/hospitals", {b"User-Agent": PAYLOAD * 20}, PAYLOAD * 20, id="user-agent"),
    ],
)
def test_client_text_over_the_limit_is_cut_and_says_so(
    proxy: NginxProxy, fresh_hosp: Hosp, *, field: str, target: bytes, headers: dict[bytes, bytes], sent: bytes
) -> None:
    answer = get_raw(proxy.port, target, headers)

    logged = access_log_entry(proxy, answer.request_id)[field]
    assert logged == logged_text(sent)
    assert logged.endswith(CUT)
    assert TEXT_LIMIT - 4 < len(logged[: -len(CUT)].encode()) <= TEXT_LIMIT
    assert sent.startswith(raw_bytes(logged[: -len(CUT)]))


def test_a_method_over_the_limit_is_cut(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = get_raw(proxy.port, b"/hospitals", method=b"M" * LONG)

    entry = access_log_entry(proxy, answer.request_id)
    assert (answer.status, entry["method"]) == (405, "M" * TEXT_LIMIT + CUT)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"a" * TEXT_LIMIT, id="ascii at the limit"),
        pytest.param(b"a" * (TEXT_LIMIT + 1), id="ascii one past it"),
        pytest.param(b"a" * (TEXT_LIMIT - 2) + b"\xff", id="an escape that would pass it"),
        pytest.param(b"a" * (TEXT_LIMIT - 4) + b"\xff", id="an escape up to it"),
        pytest.param(b"a" * (TEXT_LIMIT - 1) + "é".encode(), id="a character that would pass it"),
        pytest.param(b"a" * (TEXT_LIMIT - 1) + b"\\", id="a backslash that would pass it"),
    ],
)
def test_text_is_cut_at_the_limit_never_inside_a_character_or_an_escape(
    proxy: NginxProxy, fresh_hosp: Hosp, text: bytes
) -> None:
    answer = get_raw(proxy.port, b"/hospitals", {b"User-Agent": text})

    assert access_log_entry(proxy, answer.request_id)["user_agent"] == logged_text(text)


@pytest.mark.parametrize(
    ("header", "logged_value"),
    [(b"5", "5"), (b"0005", "5"), (b"0", "0"), (b"-5", NOT_AN_ID), (b"1" * 19, NOT_AN_ID), (PAYLOAD, NOT_AN_ID)],
)
def test_the_patient_id_header_is_logged_as_an_id_or_not_one(
    proxy: NginxProxy, fresh_hosp: Hosp, header: bytes, logged_value: str
) -> None:
    answer = get_raw(proxy.port, b"/hospitals", {b"X-Patient-Id": header})

    assert access_log_entry(proxy, answer.request_id)["patient_id"] == logged_value


def test_a_body_naming_more_than_16_patients_lists_16_and_says_so(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    body = b"{" + b",".join(b'"patient_id": %d' % n for n in range(1, 21)) + b"}"

    answer = requests.post(proxy.url + "/notes", data=body, headers=DEMO_AUTH, timeout=10)

    logged = access_log_entry(proxy, answer.headers["X-Request-Id"])["body_patient_id"]
    assert logged == ",".join(str(n) for n in range(1, 17)) + "," + CUT
