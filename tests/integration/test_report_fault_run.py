"""The report's headline on a real fault run, against what the run's two ends counted.

The real NGINX (a small retry budget, so that some retries are refused) in front of the
HOSP stand-in failing a third of its answers (503, 500 and reset connections): GETs and
POSTs are sent, and the test counts for itself, from the client's answers and from the
requests the stand-in received (by X-Request-Id, which every attempt carries):

- what clients saw: requests, and those answered 5xx;
- HOSP's side: requests it received, attempts, first attempts that failed;
- the proxy's work: requests retried (HOSP got more than one attempt), retries refused
  (the proxy's own 503 with Retry-After: 1, after one attempt), requests recovered.

The report, reading only the access log NGINX wrote, must give the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import requests

from infra.monitoring.report import cli
from local.nginx_proxy import NginxProxy
from tests.support import DEMO_AUTH, PROXY_TEST_TUNING, Hosp, RecordingServer, access_log_entry

FAULTS = {"rates": {"503": 0.2, "500": 0.05, "reset": 0.08}}
GETS = ("/hospitals", "/patients/1", "/notes?patient_id=1")
NOTE = {"title": "t", "body": "b", "patient_id": 1, "staff_id": 1}


def test_the_headline_matches_what_clients_and_hosp_counted(hosp: Hosp, app: RecordingServer, tmp_path: Path) -> None:
    tuning = dataclasses.replace(PROXY_TEST_TUNING, retry_budget_ratio=0.1, retry_budget_floor=1)
    hosp.reset(FAULTS)
    answers: list[requests.Response] = []
    try:
        with NginxProxy(hosp.address, tmp_path / "nginx", tuning=tuning, interceptor=app.address) as proxy:
            with requests.Session() as session:
                for n in range(180):
                    if n % 9 == 8:
                        answers.append(session.post(proxy.url + "/notes", json=NOTE, headers=DEMO_AUTH, timeout=10))
                    else:
                        answers.append(session.get(proxy.url + GETS[n % 3], headers=DEMO_AUTH, timeout=10))
            access_log_entry(proxy, answers[-1].headers["X-Request-Id"])  # every line written
            received = requests.get(f"{hosp.url}/_sim/requests", params={"limit": 1000}, timeout=5).json()
            log = proxy.access_log
            code = cli.main(["--log", str(log), "--out", str(tmp_path / "report.html")])
    finally:
        hosp.faults(outage=False, rates={"503": 0, "500": 0, "reset": 0})
    assert code == 0

    # HOSP's side: each request's attempts, in arrival order, by the request id they carried.
    entries = received["requests"] if isinstance(received, dict) else received
    assert len(entries) < 1000  # the stand-in's log kept them all
    attempts: dict[str, list[int | None]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e["index"]):
        attempts[entry["x_request_id"]].append(entry["status"])
    client = {answer.headers["X-Request-Id"]: answer for answer in answers}
    assert set(attempts) <= set(client)

    def failed(status: int | None) -> bool:
        return status is None or status >= 500  # None: the connection was reset

    first_failed = {rid for rid, tries in attempts.items() if failed(tries[0])}
    refused = {rid for rid, a in client.items() if a.status_code == 503 and a.headers.get("Retry-After") == "1"}
    counted = {
        "client_requests": len(answers),
        "client_failures": sum(a.status_code >= 500 for a in answers),
        "hosp_requests": len(attempts),
        "first_attempt_failures": len(first_failed),
        "recovered": sum(client[rid].status_code < 500 for rid in first_failed),
        "attempts": sum(len(tries) for tries in attempts.values()),
        "retried": sum(len(tries) > 1 for tries in attempts.values()),
        "refusals": len(refused),
    }
    # The run holds each kind the headline counts.
    assert counted["recovered"] > 5, counted
    assert counted["refusals"] > 0, counted
    assert counted["client_failures"] > counted["refusals"], counted  # failed POSTs, exhausted GETs
    assert all(len(attempts[rid]) == 1 for rid in refused)

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    (embedded,) = re.findall(r'<script type="application/json" id="headline">(.*?)</script>', page, re.S)
    whole = json.loads(embedded)["whole"]
    assert {name: whole[name] for name in counted} == counted
