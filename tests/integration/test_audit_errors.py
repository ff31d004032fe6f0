"""What an admin hears from the proxy itself: the app, not HOSP, is named when it is down; what it does not serve."""

from __future__ import annotations

from pathlib import Path

import requests

from local.nginx_proxy import NginxProxy
from local.processes import closed_port
from tests.error_shape import assert_error
from tests.support import DEMO_AUTH, Hosp

JOB = "0b9a4b5e-7d3c-4c47-9b8e-2f7d0e6c1a11"


def test_an_unreachable_audit_app_is_named_in_the_proxys_502(tmp_path: Path) -> None:
    with (
        Hosp(tmp_path / "hosp") as hosp,
        NginxProxy(hosp.address, tmp_path / "nginx", interceptor=f"127.0.0.1:{closed_port()}") as proxy,
    ):
        audit = requests.get(proxy.url + "/audit", timeout=10)
        hosp_path = requests.get(proxy.url + "/hospitals", headers=DEMO_AUTH, timeout=10)

    assert audit.status_code == 502
    assert audit.json()["error"] == "the audit service could not be reached"
    assert hosp_path.status_code == 200  # HOSP's own route is unaffected


def test_what_the_audit_api_does_not_serve_is_the_proxys_own_error_and_never_reaches_the_app(tmp_path: Path) -> None:
    """Not the app's nor API Gateway's error bodies (another shape): the proxy's, in the one shape (docs/errors.md)."""
    with (
        Hosp(tmp_path / "hosp") as hosp,
        NginxProxy(hosp.address, tmp_path / "nginx", interceptor=f"127.0.0.1:{closed_port()}") as proxy,
    ):
        refused = {
            ("POST", "/audit"): requests.post(proxy.url + "/audit", timeout=10),
            ("HEAD", "/audit"): requests.head(proxy.url + "/audit", timeout=10),
            ("DELETE", f"/audit/{JOB}"): requests.delete(f"{proxy.url}/audit/{JOB}", timeout=10),
            ("GET", "/audit/"): requests.get(proxy.url + "/audit/", timeout=10),
            ("GET", f"/audit/{JOB}/x"): requests.get(f"{proxy.url}/audit/{JOB}/x", timeout=10),
            ("GET", "/audit/a/b/c"): requests.get(proxy.url + "/audit/a/b/c", timeout=10),
        }
        job = requests.get(f"{proxy.url}/audit/{JOB}", timeout=10)
        received = hosp.received()

    for (method, path), answer in refused.items():
        status = 405 if method != "GET" else 404
        assert answer.status_code == status, (method, path)
        assert answer.headers["Content-Type"] == "application/json", (method, path)
        if method != "HEAD":
            assert_error(answer.content, status, request_id=answer.headers["X-Request-Id"])
        if status == 405:
            assert answer.headers["Allow"] == "GET"
    assert job.status_code == 502  # a job id goes to the app, here unreachable: only what it serves reaches it
    assert received == 0
