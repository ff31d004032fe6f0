"""CloudFront's secret origin header: the public listener refuses a request without it, and rotation works.

The real NGINX rendered with origin secrets (render.py --origin-secret-file;
ProxySettings.origin_secrets), in front of the real HOSP stand-in and of a
small recording HTTP server standing in for the Chalice app, all over
loopback. The stand-in does not record headers, so a second NGINX proxies to
a recording server in HOSP's place to show that the header is never passed
on. The secrets are made for each run: none is in the repository.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, Hosp, RecordingServer, access_log_entry, proxy_in_front

HEADER = "X-Origin-Verify"
# 43 characters of A-Z, a-z, 0-9, _ and -, as CloudFront's OriginSecret.
CURRENT = secrets.token_urlsafe(32)
PREVIOUS = secrets.token_urlsafe(32)
REFUSED_MESSAGE = "missing or wrong origin header"
RELOAD_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """The proxy during a rotation: the current and the previous secret are both accepted."""
    with proxy_in_front(
        hosp.address, app, tmp_path_factory.mktemp("nginx"), origin_secrets=(CURRENT, PREVIOUS)
    ) as running:
        yield running


def get(proxy: NginxProxy, path: str = "/hospitals", secret: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {**DEMO_AUTH, **({HEADER: secret} if secret is not None else {}), **kwargs.pop("headers", {})}
    return requests.request(kwargs.pop("method", "GET"), proxy.url + path, headers=headers, timeout=10, **kwargs)


def log_entry(proxy: NginxProxy, answer: requests.Response) -> dict[str, Any]:
    return access_log_entry(proxy, answer.headers["X-Request-Id"])


def assert_refused(answer: requests.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "error": REFUSED_MESSAGE,
        "status": 403,
        "request_id": answer.headers["X-Request-Id"],
    }


# --- the public listener ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        ("GET", "/hospitals", None),  # HOSP, retried
        ("POST", "/notes", b'{"patient_id": 1, "text": "x"}'),  # HOSP, once
        ("POST", "/patients/1/screen", b'{"images": []}'),  # a screen
        ("POST", "/patients/x/screen", b"{}"),  # the proxy's own 404
        ("GET", "/audit", None),  # the audit trail's API
        ("GET", "/audit/notes", None),
        ("PROPFIND", "/hospitals", None),  # a method the API does not use: refused first
    ],
)
def test_a_request_without_the_header_is_refused_before_any_routing(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, sent: tuple[str, str, bytes | None]
) -> None:
    method, path, body = sent
    answer = get(proxy, path, method=method, data=body)

    assert_refused(answer)
    assert fresh_hosp.received() == 0
    assert fresh_app.received == []
    entry = log_entry(proxy, answer)
    assert (entry["route"], entry["status"], entry["listener"]) == ("origin-refused", 403, "public")
    assert (entry["method"], entry["path"]) == (method, path)
    assert entry["upstream_addr"] == ""


@pytest.mark.parametrize(
    "wrong",
    [
        "",
        "wrong",
        secrets.token_urlsafe(32),  # the right shape, not a secret
        CURRENT.swapcase(),  # compared with case
        CURRENT[:-1],
        CURRENT + "x",
        "x" + CURRENT,
        f"{CURRENT}, {PREVIOUS}",
    ],
    ids=["empty", "short", "random", "other-case", "cut", "longer", "prefixed", "both"],
)
def test_a_wrong_value_is_refused(proxy: NginxProxy, fresh_hosp: Hosp, wrong: str) -> None:
    answer = get(proxy, secret=wrong)

    assert_refused(answer)
    assert fresh_hosp.received() == 0


@pytest.mark.parametrize("secret", [CURRENT, PREVIOUS], ids=["current", "previous"])
def test_the_current_and_the_previous_secret_are_both_accepted(
    proxy: NginxProxy, fresh_hosp: Hosp, fresh_app: RecordingServer, secret: str
) -> None:
    hosp_answer = get(proxy, secret=secret)
    screen = get(proxy, "/patients/1/screen", secret=secret, method="POST", data=b'{"images": ["eA=="]}')
    audit = get(proxy, "/audit", secret=secret)

    assert hosp_answer.status_code == 200, hosp_answer.text
    assert fresh_hosp.received() == 2  # the GET and the screen
    assert log_entry(proxy, hosp_answer)["route"] == "hosp"
    assert (screen.status_code, log_entry(proxy, screen)["route"]) == (200, "screen")
    assert (audit.status_code, log_entry(proxy, audit)["route"]) == (200, "audit")
    assert sorted(received.path for received in fresh_app.wait_for(2)) == ["/audit", "/note-intake"]


def test_the_logs_never_hold_a_secret_value(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    wrong = secrets.token_urlsafe(32)
    refused = get(proxy, secret=wrong)
    accepted = [get(proxy, secret=secret) for secret in (CURRENT, PREVIOUS)]

    assert_refused(refused)
    assert [answer.status_code for answer in accepted] == [200, 200]
    for answer in (refused, *accepted):
        log_entry(proxy, answer)  # written
    logs = proxy.access_log.read_bytes() + proxy.error_log.read_bytes()
    for value in (CURRENT, PREVIOUS, wrong):
        assert value.encode() not in logs


def test_the_health_answer_needs_no_header(proxy: NginxProxy) -> None:
    # The fleet's bootstrap and load balancer health checks cannot send it.
    answer = requests.get(proxy.url + "/_proxy/health", timeout=10)

    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_the_internal_listener_needs_no_header(proxy: NginxProxy, fresh_hosp: Hosp) -> None:
    answer = requests.get(proxy.internal_url + "/hospitals", headers=DEMO_AUTH, timeout=10)

    assert answer.status_code == 200, answer.text
    assert fresh_hosp.received() == 1
    entry = log_entry(proxy, answer)
    assert (entry["route"], entry["listener"]) == ("hosp", "internal")


# --- rotation -----------------------------------------------------------------------------------


def test_after_a_rotation_the_old_secret_is_refused(hosp: Hosp, app: RecordingServer, tmp_path: Path) -> None:
    with proxy_in_front(hosp.address, app, tmp_path, origin_secrets=(CURRENT, PREVIOUS)) as proxy:
        assert get(proxy, secret=PREVIOUS).status_code == 200
        assert proxy.config_path.stat().st_mode & 0o777 == 0o600  # the secrets are in it

        # The rotation's end: render with the new secret only, check, and reload gracefully.
        proxy.origin_secrets = (CURRENT,)
        proxy.render()
        proxy.check()
        assert proxy.process is not None
        os.kill(proxy.process.pid, signal.SIGHUP)

        deadline = time.monotonic() + RELOAD_TIMEOUT
        while (answer := get(proxy, secret=PREVIOUS)).status_code != 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_refused(answer)
        assert get(proxy, secret=CURRENT).status_code == 200
        assert PREVIOUS not in proxy.config_path.read_text()


# --- the header is not passed on ------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording_proxy(
    hosp_recorder: RecordingServer, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxProxy]:
    """A proxy whose HOSP records the headers it receives."""
    with proxy_in_front(
        hosp_recorder.address, app, tmp_path_factory.mktemp("nginx-recording"), origin_secrets=(CURRENT,)
    ) as running:
        yield running


def test_the_header_never_reaches_hosp_or_the_app(
    recording_proxy: NginxProxy, hosp_recorder: RecordingServer, fresh_app: RecordingServer
) -> None:
    hosp_recorder.reset()
    hosp_recorder.statuses = [502]  # the first GET fails once: its retry goes through @hosp_retry

    answers = [
        get(recording_proxy, secret=CURRENT),  # first attempt, then a retry
        get(recording_proxy, "/notes", secret=CURRENT, method="POST", data=b"{}"),  # @hosp_once
        get(recording_proxy, "/patients/1/screen", secret=CURRENT, method="POST", data=b"{}"),  # a screen, handed off
        get(recording_proxy, "/audit", secret=CURRENT),  # the audit trail's API
    ]
    internal = requests.get(
        recording_proxy.internal_url + "/hospitals", headers={**DEMO_AUTH, HEADER: CURRENT}, timeout=10
    )

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert internal.status_code == 200
    assert [(r.method, r.path) for r in hosp_recorder.received] == [
        ("GET", "/hospitals"),
        ("GET", "/hospitals"),
        ("POST", "/notes"),
        ("POST", "/patients/1/screen"),
        ("GET", "/hospitals"),
    ]
    assert sorted((r.method, r.path) for r in fresh_app.wait_for(2)) == [
        ("GET", "/audit"),
        ("POST", "/note-intake"),
    ]
    for received in hosp_recorder.received + fresh_app.received:
        assert HEADER.lower() not in {name.lower() for name in received.headers}, received
