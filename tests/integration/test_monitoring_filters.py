"""The monitoring stack's metric filters, on lines the real NGINX writes.

infra/monitoring/monitoring.yaml counts the proxy's access-log lines with CloudWatch JSON
filter patterns. Here the real NGINX with the project's rendered config runs in front of
the real HOSP stand-in (with scripted faults) and of a recording server in the Chalice
app's place, and each kind of request is made for real: one that succeeds; GETs whose
first attempt fails (a 503, a reset connection) and are retried to success; a GET that
fails every try; a POST that fails and is never retried; retries the budget refuses; a
HOSP 404; the proxy's own 405; a screen retried; an audit request; a request on the internal
listener. Each line is then run through every filter's pattern (the template's own text,
evaluated by tests/infra/filter_pattern.py), and the metrics it lands in must be exactly
those the request's kind says (docs/runbooks/monitoring.md).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.nginx_proxy import NginxProxy
from tests.infra.cfn import Deployed, decode, resources
from tests.infra.filter_pattern import FilterPattern, metric_value
from tests.infra.test_monitoring_template import GROUP, MONITORING_TEMPLATE
from tests.support import (
    DEMO_AUTH,
    PROXY_TEST_TUNING,
    Hosp,
    RecordingServer,
    access_log_entry,
    access_log_raw_lines,
    proxy_in_front,
)

# What every line of each kind counts in. AccessLogLines is every line; a client request
# is one on the public listener; RequestTime takes each client request's request_time.
EVERY_LINE = {"AccessLogLines"}
CLIENT = EVERY_LINE | {"ClientRequests", "RequestTime"}
TO_HOSP = {"HospRequests"}
SUCCESS = CLIENT | TO_HOSP
RETRIED_TO_SUCCESS = CLIENT | TO_HOSP | {"HospFirstAttemptFailures", "RetriedRequests"}
RETRIED_TO_FAILURE = RETRIED_TO_SUCCESS | {"ClientErrors"}
FAILED_NOT_RETRIED = CLIENT | TO_HOSP | {"HospFirstAttemptFailures", "ClientErrors"}
REFUSED_BY_THE_BUDGET = FAILED_NOT_RETRIED | {"RetryBudgetRefusals"}
INTERNAL_SUCCESS = EVERY_LINE | TO_HOSP


def _patterns() -> dict[str, tuple[FilterPattern, str]]:
    """{metric name: (its filter's pattern, the transformation's MetricValue)} from the template."""
    deployed = Deployed(decode(MONITORING_TEMPLATE), Stage="dev", AutoScalingGroupName=GROUP)
    found = {}
    for logical in resources(deployed.template, "AWS::Logs::MetricFilter"):
        properties = deployed.properties(logical)
        (transformation,) = properties["MetricTransformations"]
        found[transformation["MetricName"]] = (
            FilterPattern(properties["FilterPattern"]),
            transformation["MetricValue"],
        )
    return found


PATTERNS = _patterns()


def counted_in(line: str) -> set[str]:
    """The metrics CloudWatch would count the line in."""
    return {name for name, (pattern, _) in PATTERNS.items() if pattern.matches(line)}


def raw_line(proxy: NginxProxy, request_id: str) -> str:
    """The line of the request as NGINX wrote it (the text CloudWatch receives)."""
    access_log_entry(proxy, request_id)  # waits for it
    (line,) = [text for text in access_log_raw_lines(proxy) if json.loads(text)["request_id"] == request_id]
    return line


@pytest.fixture(scope="module")
def proxy(hosp: Hosp, app: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with proxy_in_front(hosp.address, app, tmp_path_factory.mktemp("nginx")) as running:
        yield running


def _get(url: str, path: str = "/hospitals") -> requests.Response:
    return requests.get(url + path, headers=DEMO_AUTH, timeout=10)


NOTE = {"title": "t", "body": "b", "patient_id": 1, "staff_id": 1}


def _post_note(url: str) -> requests.Response:
    return requests.post(url + "/notes", json=NOTE, headers=DEMO_AUTH, timeout=10)


def _propfind(url: str) -> requests.Response:
    return requests.request("PROPFIND", url + "/hospitals", headers=DEMO_AUTH, timeout=10)


def _screen(url: str) -> requests.Response:
    return requests.post(url + "/patients/1/screen", json={"images": ["aGVsbG8="]}, headers=DEMO_AUTH, timeout=10)


@dataclasses.dataclass
class Case:
    name: str
    expected: set[str]
    status: int  # what the client got
    upstream_status: str  # what the line says of the attempts
    request: Callable[[str], requests.Response] = _get
    hosp_script: tuple[str, ...] = ()  # HOSP's next outcomes
    app_statuses: tuple[int, ...] = ()  # the Chalice app's next answers
    internal: bool = False  # on the internal listener (the Lambdas')


CASES = [
    Case("a GET that succeeds", SUCCESS, 200, "200"),
    Case(
        "a GET whose first attempt gets a 503, retried", RETRIED_TO_SUCCESS, 200, "503 : 200", hosp_script=("503", "ok")
    ),
    Case(
        "a GET whose first connection is reset, retried",
        RETRIED_TO_SUCCESS,
        200,
        "502 : 200",
        hosp_script=("reset", "ok"),
    ),
    Case("a GET failing every try", RETRIED_TO_FAILURE, 500, "502 : 503, 500", hosp_script=("502", "503", "500")),
    Case("a POST that fails, never retried", FAILED_NOT_RETRIED, 502, "502", _post_note, hosp_script=("502",)),
    Case("a GET HOSP answers 404", SUCCESS, 404, "404", lambda url: _get(url, "/patients/987654321")),
    Case("a method the proxy answers 405 itself", CLIENT | TO_HOSP, 405, "", _propfind),
    Case(
        "a screen whose first attempt gets a 503, retried",
        RETRIED_TO_SUCCESS,
        200,
        "503 : 200",
        _screen,
        hosp_script=("503", "ok"),
    ),
    Case("an audit request, the app's to answer", CLIENT, 200, "200", lambda url: _get(url, "/audit")),
    Case("a GET on the internal listener", INTERNAL_SUCCESS, 200, "200", internal=True),
]


def _make(case: Case, proxy: NginxProxy, hosp: Hosp, app: RecordingServer) -> requests.Response:
    hosp.reset()
    app.reset()
    if case.hosp_script:
        hosp.script(*case.hosp_script)
    app.statuses = list(case.app_statuses)
    return case.request(proxy.internal_url if case.internal else proxy.url)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_kind_of_request_lands_in_exactly_its_metrics(
    case: Case, proxy: NginxProxy, hosp: Hosp, app: RecordingServer
) -> None:
    answer = _make(case, proxy, hosp, app)
    line = raw_line(proxy, answer.headers["X-Request-Id"])
    entry = json.loads(line)
    # The request is the kind the case says, as the log tells it.
    assert (answer.status_code, entry["status"], entry["upstream_status"]) == (
        case.status,
        case.status,
        case.upstream_status,
    ), entry
    assert counted_in(line) == case.expected, entry
    if "RequestTime" in case.expected:
        assert metric_value(PATTERNS["RequestTime"][1], line) == entry["request_time"]


def test_retries_the_budget_refuses_land_in_the_refusals(hosp: Hosp, app: RecordingServer, tmp_path: Path) -> None:
    """A budget of no ratio and a floor of 2 attempts per 10 s in a full outage: the first
    failure is retried (and fails again), the rest are refused with the proxy's 503."""
    tuning = dataclasses.replace(PROXY_TEST_TUNING, retry_budget_ratio=0, retry_budget_floor=0.2)
    hosp.reset()
    hosp.faults(outage=True)
    try:
        with NginxProxy(hosp.address, tmp_path, tuning=tuning, interceptor=app.address) as proxy:
            answers = [_get(proxy.url) for _ in range(6)]
            lines = [raw_line(proxy, a.headers["X-Request-Id"]) for a in answers]
    finally:
        hosp.faults(outage=False)

    kinds: dict[str, int] = {}
    for answer, line in zip(answers, lines, strict=True):
        entry: dict[str, Any] = json.loads(line)
        assert answer.status_code == entry["status"] == 503, entry
        if entry["retry_budget"] == "REJECTED":
            assert answer.headers.get("Retry-After") == "1"  # the proxy's own 503
            assert entry["upstream_status"] == "503", entry
            assert counted_in(line) == REFUSED_BY_THE_BUDGET, entry
            kinds["refused"] = kinds.get("refused", 0) + 1
        else:
            assert entry["retry_budget"] == "PASSED", entry
            assert entry["upstream_status"].startswith("503 : 503"), entry
            assert counted_in(line) == RETRIED_TO_FAILURE, entry
            kinds["retried"] = kinds.get("retried", 0) + 1
    assert kinds.get("refused"), kinds
    assert kinds.get("retried"), kinds


def test_every_filter_is_exercised() -> None:
    """Every filter of the template is checked above, matching some line and missing another."""
    expected = [c.expected for c in CASES] + [REFUSED_BY_THE_BUDGET]
    assert set().union(*expected) == set(PATTERNS)
    for name in PATTERNS:
        if name != "AccessLogLines":
            assert any(name not in kinds for kinds in expected), name
