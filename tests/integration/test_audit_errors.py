"""What an admin hears from the proxy when the audit app is down: the app, not HOSP, is named."""

from __future__ import annotations

from pathlib import Path

import requests

from local.nginx_proxy import NginxProxy
from local.processes import closed_port
from tests.support import DEMO_AUTH, Hosp


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
