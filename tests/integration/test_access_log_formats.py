"""The access log's two formats (logging.conf) write the same line for the same request.

hosp_json_plain writes the line of a GET or HEAD to HOSP on the public
listener whose client text is all plain; hosp_json any other. Two proxies in
front of the same HOSP stand-in, each with one format only, get the same
requests: the plain-only one logs exactly the requests it is for, and its
lines equal the other's field for field (but for the request's own id and
times).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from infra.nginx.render import LOG_TEXT_LIMIT
from local.nginx_proxy import NginxProxy
from tests.integration.test_access_log import basic, get_raw
from tests.support import DEMO_AUTH, Hosp, RecordingServer, access_log_entry, access_log_lines, proxy_in_front

PLAIN_ONLY = "plain only"
ESCAPED_ONLY = "escaped only"
# A request's own: its id, and its times.
OWN_FIELDS = {"time", "logged_at", "request_id", "request_time", "upstream_response_time"}
AUTH = DEMO_AUTH["Authorization"].encode()


@dataclasses.dataclass
class OneFormat(NginxProxy):
    """The rendered proxy with one of its two access_log lines left out."""

    only: str = PLAIN_ONLY

    def render(self) -> None:
        super().render()
        text = self.config_path.read_text()
        plain, escaped = " if=$hosp_log_plain;", " if=$hosp_log_escaped;"
        assert text.count(plain) == text.count(escaped) == 1
        if self.only == PLAIN_ONLY:  # as rendered, less the escaped format's lines
            text = text.replace(escaped, " if=0;")
        else:  # every line in the escaped format
            text = text.replace(plain, " if=0;").replace(escaped, ";")
        self.config_path.write_text(text)


@pytest.fixture(scope="module")
def proxies(
    hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, NginxProxy]]:
    with contextlib.ExitStack() as stack:
        running: dict[str, NginxProxy] = {}
        for only in (PLAIN_ONLY, ESCAPED_ONLY):
            base = proxy_in_front(hosp.address, app, tmp_path_factory.mktemp("nginx"))
            fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(base) if field.init}
            running[only] = stack.enter_context(OneFormat(**fields, only=only))
        yield running


def lines_by_id(proxy: NginxProxy) -> dict[str, dict[str, Any]]:
    return {entry["request_id"]: entry for entry in access_log_lines(proxy)}


def comparable(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name not in OWN_FIELDS}


HEADERS = {b"Authorization": AUTH, b"X-Forwarded-For": b"203.0.113.9", b"CloudFront-Viewer-Address": b"203.0.113.9:4"}
# (what, method, target, headers, written by the plain format)
REQUESTS = [
    ("a GET", b"GET", b"/hospitals", {b"Authorization": AUTH}, True),
    ("a HEAD", b"HEAD", b"/hospitals", {b"Authorization": AUTH}, True),
    ("every header", b"GET", b"/patients/1", {**HEADERS, b"User-Agent": b"curl/8", b"X-Patient-Id": b"007"}, True),
    ("a query", b"GET", b"/hospitals//./x/..?view=full&page=2", HEADERS, True),
    ("an empty query", b"GET", b"/hospitals?", HEADERS, True),
    ("a query of a ?", b"GET", b"/hospitals??q=1", HEADERS, True),
    ("a note listing", b"GET", b"/notes?patient_id=3", HEADERS, True),
    ("quotes and controls", b"GET", b'/h"x?q="', {**HEADERS, b"User-Agent": b'a"\x01\x7f'}, True),
    ("no credentials", b"GET", b"/hospitals", {}, True),
    ("percent-encoded", b"GET", b"/patients/%31", HEADERS, True),
    ("a path at the limit", b"GET", b"/" + b"p" * (LOG_TEXT_LIMIT - 1), HEADERS, True),
    ("a path past the limit", b"GET", b"/" + b"p" * LOG_TEXT_LIMIT, HEADERS, False),
    (
        "a user agent past the limit",
        b"GET",
        b"/hospitals",
        {**HEADERS, b"User-Agent": b"u" * (LOG_TEXT_LIMIT + 1)},
        False,
    ),
    ("a user that is not ASCII", b"GET", b"/hospitals", {b"Authorization": basic("é".encode())}, False),
    ("a backslash in the path", b"GET", b"/h\\", HEADERS, False),
    ("a query not utf-8", b"GET", b"/hospitals?q=\xff", HEADERS, False),
    ("a forwarded-for not ASCII", b"GET", b"/hospitals", {**HEADERS, b"X-Forwarded-For": b"\xe9"}, False),
    ("a decoded path not ASCII", b"GET", b"/hospitals/%C3%A9", HEADERS, False),
    ("a write", b"POST", b"/notes", {**HEADERS, b"Content-Type": b"application/json"}, False),
    ("a PUT", b"PUT", b"/notes/1", HEADERS, False),
    ("a DELETE", b"DELETE", b"/notes/1", HEADERS, False),
    ("an OPTIONS", b"OPTIONS", b"/hospitals", HEADERS, False),
    ("the audit trail", b"GET", b"/audit?from=2026-01-01", HEADERS, False),
    ("the proxy's own 404", b"GET", b"/_proxy/nothing", HEADERS, True),
    ("a request line NGINX refuses", b"GET", b"/h\x01", HEADERS, False),
    ("a screen", b"POST", b"/patients/1/screen", {**HEADERS, b"Content-Type": b"application/json"}, False),
]


@pytest.mark.parametrize("case", REQUESTS, ids=[case[0] for case in REQUESTS])
def test_both_formats_write_the_same_line_and_the_plain_one_only_its_requests(
    proxies: dict[str, NginxProxy], fresh_hosp: Hosp, case: tuple[str, bytes, bytes, dict[bytes, bytes], bool]
) -> None:
    _, method, target, headers, plain = case
    body = b'{"patient_id": 1, "text": "x"}' if method in (b"POST", b"PUT") else b""
    answers = {only: get_raw(proxy.port, target, headers, method, body) for only, proxy in proxies.items()}
    escaped = access_log_entry(proxies[ESCAPED_ONLY], answers[ESCAPED_ONLY].request_id)

    assert answers[PLAIN_ONLY].status == answers[ESCAPED_ONLY].status
    if plain:
        written = access_log_entry(proxies[PLAIN_ONLY], answers[PLAIN_ONLY].request_id)
        assert comparable(written) == comparable(escaped)
    else:
        assert not_logged(proxies[PLAIN_ONLY], answers[PLAIN_ONLY].request_id)


def not_logged(proxy: NginxProxy, request_id: str) -> bool:
    """Whether the plain-only proxy wrote no line for `request_id`, read once a later request's line is there."""
    access_log_entry(proxy, get_raw(proxy.port, b"/hospitals", {b"Authorization": AUTH}).request_id)
    return request_id not in lines_by_id(proxy)


def test_an_internal_request_is_written_by_the_escaped_format(proxies: dict[str, NginxProxy], fresh_hosp: Hosp) -> None:
    internal = {only: proxy.internal_port for only, proxy in proxies.items()}
    headers = {b"Authorization": AUTH, b"X-On-Behalf-Of": b"nurse"}
    answers = {only: get_raw(port, b"/hospitals", headers) for only, port in internal.items()}

    assert access_log_entry(proxies[ESCAPED_ONLY], answers[ESCAPED_ONLY].request_id)["on_behalf_of"] == "nurse"
    assert not_logged(proxies[PLAIN_ONLY], answers[PLAIN_ONLY].request_id)
