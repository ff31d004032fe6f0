"""infra/monitoring/monitoring.yaml: the stage's alarm topic, the proxy's metrics, alarms, dashboard, queries.

Each test evaluates the template for a stage the way CloudFormation would (tests/infra/cfn.py)
and states a property of the result. The alarms on metric math are evaluated with their own
expression (the functions they use, FILL and IF, given here as CloudWatch defines them). The
metric filters' patterns are checked against lines the real NGINX writes in
tests/integration/test_monitoring_filters.py, with the evaluator of filter_pattern.py, whose
own semantics are checked at the end of this file. cfn-lint and checkov run on the template
with every other (test_cfn_templates.py, test_checkov.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib import constants
from tests.infra.cfn import INFRA, Deployed, breaches, cfn_templates, charted, dashboard, decode, resources
from tests.infra.filter_pattern import FilterPattern, PatternError, metric_value

MONITORING_TEMPLATE = INFRA / "monitoring" / "monitoring.yaml"
MERGE_TEMPLATE = INFRA / "app" / "merge.json"
PROXY_TEMPLATE = INFRA / "ec2" / "proxy.yaml"
GROUP = "hosp-reliability-dev-proxy-ProxyAutoScalingGroup-AbC123"
EMAIL = "on-call@example.org"

# The metric each kind of line is counted in (docs/runbooks/monitoring.md).
FILTER_METRICS = {
    "AccessLogLines",
    "ClientRequests",
    "ClientErrors",
    "HospRequests",
    "HospFirstAttemptFailures",
    "RetriedRequests",
    "RetryBudgetRefusals",
    "RequestTime",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(MONITORING_TEMPLATE)


@pytest.fixture
def deployed(template: dict[str, Any], stage: str) -> Deployed:
    return Deployed(template, Stage=stage, AutoScalingGroupName=GROUP)


def namespace(stage: str) -> str:
    return f"HospReliability/{stage}/proxy"


def access_log_group(stage: str) -> str:
    return f"/{constants.APP_NAME}/{stage}/proxy-access"


# ------------------------------------------------------------------ helpers


def filters(deployed: Deployed) -> dict[str, dict[str, Any]]:
    """The metric filters' evaluated properties, by the name of the metric each makes."""
    found: dict[str, dict[str, Any]] = {}
    for logical in resources(deployed.template, "AWS::Logs::MetricFilter"):
        properties = deployed.properties(logical)
        (transformation,) = properties["MetricTransformations"]
        found[transformation["MetricName"]] = properties
    return found


def alarms(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return {logical: deployed.properties(logical) for logical in resources(deployed.template, "AWS::CloudWatch::Alarm")}


def alarm_on(deployed: Deployed, metric: str) -> dict[str, Any]:
    """The one alarm that reads `metric` of the proxy's namespace, alone or in its metric math."""
    found = [alarm for alarm in alarms(deployed).values() if metric in _read_metrics(alarm)]
    assert len(found) == 1, f"{len(found)} alarms read {metric}"
    return found[0]


def _read_metrics(alarm: dict[str, Any]) -> dict[str, str]:
    """{metric name: the id the alarm's expression gives it} (the name itself for a plain alarm)."""
    if "MetricName" in alarm:
        return {alarm["MetricName"]: alarm["MetricName"]}
    return {q["MetricStat"]["Metric"]["MetricName"]: q["Id"] for q in alarm["Metrics"] if "MetricStat" in q}


def _fill(value: float | None, default: float) -> float:
    return default if value is None else value


def _if(condition: bool, then: float | None, otherwise: float | None) -> float | None:
    return then if condition else otherwise


def alarm_value(alarm: dict[str, Any], **by_metric: float | None) -> float | None:
    """The value the alarm compares for one period in which each metric's statistic is the
    given value (None: the metric has no data for the period); None when it has none."""
    if "MetricName" in alarm:
        return by_metric[alarm["MetricName"]]
    ids = {ident: by_metric[name] for name, ident in _read_metrics(alarm).items()}
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData", True) and "Expression" in q]
    # The expressions are written in the part of CloudWatch's metric math that reads the same
    # in Python: arithmetic, comparisons, FILL and IF. None in arithmetic is no data.
    assert re.fullmatch(r"[A-Za-z0-9_ ().,*/+<>=-]+", expression), expression
    try:
        result = eval(expression, {"__builtins__": {}, "FILL": _fill, "IF": _if}, ids)
    except TypeError:  # arithmetic or a comparison on a metric with no data: the expression has none
        return None
    return None if result is None else float(result)


def fires(alarm: dict[str, Any], **by_metric: float | None) -> bool:
    """Whether the alarm fires when every period of its window looks like this one."""
    value = alarm_value(alarm, **by_metric)
    if value is None:
        return bool(alarm["TreatMissingData"] == "breaching")
    return breaches(alarm, value)


def window_seconds(alarm: dict[str, Any]) -> int:
    """How long the condition must hold: every period of the evaluation window breaching."""
    assert alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]) == alarm["EvaluationPeriods"]
    periods = (
        {alarm["Period"]}
        if "Period" in alarm
        else {q["MetricStat"]["Period"] for q in alarm["Metrics"] if "MetricStat" in q}
    )
    (period,) = periods
    return int(period * alarm["EvaluationPeriods"])


# ------------------------------------------------------------------ the topic


def test_the_stack_makes_the_stages_topic_and_exports_it(deployed: Deployed, stage: str) -> None:
    (topic,) = resources(deployed.template, "AWS::SNS::Topic")
    arn = deployed.name(topic)
    assert arn == f"arn:aws:sns:eu-west-2:123456789012:{constants.prefix(stage)}-alarms"
    output = deployed.value(deployed.template["Outputs"]["AlarmTopicArn"])
    assert output == {
        "Description": output["Description"],
        "Value": arn,
        "Export": {"Name": constants.stack(stage, "AlarmTopicArn")},
    }


def test_an_email_is_subscribed_only_when_one_is_given(template: dict[str, Any], stage: str) -> None:
    (logical,) = resources(template, "AWS::SNS::Subscription")
    quiet = Deployed(template, Stage=stage, AutoScalingGroupName=GROUP)
    subscribed = Deployed(template, Stage=stage, AutoScalingGroupName=GROUP, AlarmEmail=EMAIL)
    condition = template["Resources"][logical]["Condition"]
    assert not quiet.condition(condition)
    assert subscribed.condition(condition)
    (topic,) = resources(template, "AWS::SNS::Topic")
    assert subscribed.properties(logical) == {
        "TopicArn": subscribed.name(topic),
        "Protocol": "email",
        "Endpoint": EMAIL,
    }


def test_the_email_parameter_takes_one_address_or_nothing(template: dict[str, Any]) -> None:
    allowed = re.compile(template["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert allowed.fullmatch("")
    assert allowed.fullmatch(EMAIL)
    for wrong in ("on-call", "a@b", "a@b.org,c@d.org", "a b@c.org"):
        assert not allowed.fullmatch(wrong), wrong


def test_only_cloudwatch_alarms_of_the_account_may_publish(deployed: Deployed) -> None:
    (logical,) = resources(deployed.template, "AWS::SNS::TopicPolicy")
    (statement,) = deployed.properties(logical)["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


# ------------------------------------------------------------- metric filters


def test_every_filter_reads_the_proxys_access_log(template: dict[str, Any], stage: str) -> None:
    proxy = decode(INFRA / "ec2" / "proxy.yaml")
    from_proxy = Deployed(proxy, Stage=stage).name(proxy["Outputs"]["AccessLogGroupName"]["Value"]["Ref"])
    assert from_proxy == access_log_group(stage)
    default = Deployed(template, Stage=stage, AutoScalingGroupName=GROUP)
    given = Deployed(template, Stage=stage, AutoScalingGroupName=GROUP, AccessLogGroupName="/elsewhere/access")
    assert {f["LogGroupName"] for f in filters(default).values()} == {from_proxy}
    assert {f["LogGroupName"] for f in filters(given).values()} == {"/elsewhere/access"}


def test_the_filters_make_the_documented_metrics_in_the_stages_namespace(deployed: Deployed, stage: str) -> None:
    made = filters(deployed)
    assert set(made) == FILTER_METRICS
    for name, properties in made.items():
        (transformation,) = properties["MetricTransformations"]
        assert transformation["MetricNamespace"] == namespace(stage), name
        assert "DefaultValue" not in transformation, name  # no line, no data: the alarms fill gaps
        if name == "RequestTime":
            assert (transformation["MetricValue"], transformation["Unit"]) == ("$.request_time", "Seconds")
        else:
            assert (transformation["MetricValue"], transformation["Unit"]) == ("1", "Count"), name


def test_every_pattern_is_in_the_evaluators_subset(deployed: Deployed) -> None:
    """So that the real-line test (tests/integration/test_monitoring_filters.py) can check each."""
    for name, properties in filters(deployed).items():
        FilterPattern(properties["FilterPattern"])  # raises PatternError otherwise
        assert properties["FilterPattern"].startswith("{"), name


def test_the_patterns_name_only_fields_of_the_access_log() -> None:
    from chalicelib.audit.log_schema import NAMES  # noqa: PLC0415

    template = decode(MONITORING_TEMPLATE)
    for logical in resources(template, "AWS::Logs::MetricFilter"):
        pattern = template["Resources"][logical]["Properties"]["FilterPattern"]
        assert set(re.findall(r"\$\.([a-z_]+)", pattern)) <= set(NAMES), (logical, pattern)


# ------------------------------------------------------------------ alarms


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(deployed: Deployed) -> None:
    (topic,) = resources(deployed.template, "AWS::SNS::Topic")
    found = alarms(deployed)
    assert len(found) == 5
    for logical, alarm in found.items():
        assert alarm["AlarmActions"] == [deployed.name(topic)], logical
        assert alarm["OKActions"] == [deployed.name(topic)], logical


def proxy_stack_filters(stage: str) -> dict[str, dict[str, Any]]:
    """The metric filters of the proxy stack (infra/ec2/proxy.yaml), by metric name."""
    return filters(Deployed(decode(PROXY_TEMPLATE), Stage=stage))


def test_the_alarms_read_metrics_the_filters_make(deployed: Deployed, stage: str) -> None:
    made = {(namespace(stage), name) for name in (*filters(deployed), *proxy_stack_filters(stage))}
    for logical, alarm in alarms(deployed).items():
        if "MetricName" in alarm:
            read = {(alarm["Namespace"], alarm["MetricName"])}
        else:
            read = {
                (q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"])
                for q in alarm["Metrics"]
                if "MetricStat" in q
            }
        assert read - {("AWS/AutoScaling", "GroupInServiceInstances")} <= made, logical


def test_a_client_failure_rate_over_one_percent_for_five_minutes_fires(deployed: Deployed) -> None:
    alarm = alarm_on(deployed, "ClientErrors")
    assert window_seconds(alarm) == 300
    assert fires(alarm, ClientErrors=2, ClientRequests=100)
    assert fires(alarm, ClientErrors=1.01, ClientRequests=100)
    assert not fires(alarm, ClientErrors=1, ClientRequests=100)
    assert not fires(alarm, ClientErrors=None, ClientRequests=100)  # no 5xx at all: no data, 0%
    assert not fires(alarm, ClientErrors=None, ClientRequests=None)  # no traffic
    assert fires(alarm, ClientErrors=1, ClientRequests=1)


def test_a_hosp_first_attempt_failure_rate_over_ten_percent_fires(deployed: Deployed) -> None:
    alarm = alarm_on(deployed, "HospFirstAttemptFailures")
    assert window_seconds(alarm) == 300
    assert set(_read_metrics(alarm)) == {"HospFirstAttemptFailures", "HospRequests"}
    assert fires(alarm, HospFirstAttemptFailures=11, HospRequests=100)
    assert not fires(alarm, HospFirstAttemptFailures=10, HospRequests=100)
    assert not fires(alarm, HospFirstAttemptFailures=None, HospRequests=100)
    assert not fires(alarm, HospFirstAttemptFailures=None, HospRequests=None)


def test_one_failed_note_handoff_in_five_minutes_fires(deployed: Deployed, stage: str) -> None:
    """The proxy stack counts the failed hand-offs' log lines; the alarm is here, with the topic."""
    alarm = alarm_on(deployed, "NoteHandoffsFailed")
    assert alarm["Statistic"] == "Sum"
    assert window_seconds(alarm) == 300
    assert fires(alarm, NoteHandoffsFailed=1)
    assert not fires(alarm, NoteHandoffsFailed=None)
    handoffs = proxy_stack_filters(stage)["NoteHandoffsFailed"]
    assert handoffs["MetricTransformations"][0]["MetricNamespace"] == alarm["Namespace"] == namespace(stage)
    assert handoffs["LogGroupName"] == f"/{constants.APP_NAME}/{stage}/note-handoff-failed"
    line = '{"time":"2026-12-07T10:00:00+00:00","event":"note_handoff_failed","request_id":"0","status":"502"}'
    assert FilterPattern(handoffs["FilterPattern"]).matches(line)


def test_retry_budget_refusals_in_every_minute_of_five_fire(deployed: Deployed) -> None:
    alarm = alarm_on(deployed, "RetryBudgetRefusals")
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] == 60
    assert window_seconds(alarm) == 300
    assert fires(alarm, RetryBudgetRefusals=1)
    assert not fires(alarm, RetryBudgetRefusals=0)
    assert not fires(alarm, RetryBudgetRefusals=None)  # no refusal: no data


def test_a_silent_access_log_while_instances_are_in_service_fires_after_ten_minutes(
    deployed: Deployed,
) -> None:
    alarm = alarm_on(deployed, "AccessLogLines")
    assert window_seconds(alarm) == 600
    assert alarm["TreatMissingData"] == "breaching"
    (in_service,) = [
        q for q in alarm["Metrics"] if q.get("MetricStat", {}).get("Metric", {}).get("Namespace") == "AWS/AutoScaling"
    ]
    assert in_service["MetricStat"]["Metric"] == {
        "Namespace": "AWS/AutoScaling",
        "MetricName": "GroupInServiceInstances",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": GROUP}],
    }
    assert in_service["MetricStat"]["Stat"] == "Minimum"
    assert fires(alarm, AccessLogLines=None, GroupInServiceInstances=2)
    assert fires(alarm, AccessLogLines=0, GroupInServiceInstances=1)
    assert not fires(alarm, AccessLogLines=1, GroupInServiceInstances=2)
    assert not fires(alarm, AccessLogLines=None, GroupInServiceInstances=0)  # no fleet in service
    assert fires(alarm, AccessLogLines=None, GroupInServiceInstances=None)  # nothing to trust


def test_the_proxy_stack_collects_the_groups_in_service_metric() -> None:
    proxy = decode(INFRA / "ec2" / "proxy.yaml")
    (group,) = resources(proxy, "AWS::AutoScaling::AutoScalingGroup").values()
    collected = group["Properties"]["MetricsCollection"]
    assert any(c.get("Granularity") == "1Minute" and "Metrics" not in c for c in collected)
    assert "AutoScalingGroupName" in proxy["Outputs"]


def test_the_other_alarms_are_quiet_without_data(deployed: Deployed) -> None:
    for logical, alarm in alarms(deployed).items():
        if "AccessLogLines" not in _read_metrics(alarm):
            assert alarm["TreatMissingData"] == "notBreaching", logical


# --------------------------------------------------------------- dashboard


def test_the_dashboard_shows_every_alarm_and_the_stacks_region(deployed: Deployed) -> None:
    body = dashboard(deployed)
    shown = {arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]}
    assert shown == {deployed.name(f"{a}.Arn") for a in resources(deployed.template, "AWS::CloudWatch::Alarm")}
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == deployed.name("AWS::Region"), widget["properties"]["title"]


def test_the_dashboard_charts_every_filters_metric_and_the_fleet_in_service(deployed: Deployed, stage: str) -> None:
    drawn = charted(dashboard(deployed))
    for name in filters(deployed):
        assert (namespace(stage), name, ()) in drawn, name
    assert ("AWS/AutoScaling", "GroupInServiceInstances", (("AutoScalingGroupName", GROUP),)) in drawn


# ------------------------------------------------------------ saved queries


def _queries(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return {p["Name"]: p for p in map(deployed.properties, resources(deployed.template, "AWS::Logs::QueryDefinition"))}


def _lambda_log_groups(stage: str) -> set[str]:
    merge = json.loads(MERGE_TEMPLATE.read_text(encoding="utf-8"))
    return {
        r["Properties"]["LogGroupName"]["Fn::Sub"].replace("${Stage}", stage)
        for r in merge["Resources"].values()
        if "LogGroupName" in r.get("Properties", {})
    }


def test_the_saved_queries_are_the_stages_and_read_the_access_log(deployed: Deployed, stage: str) -> None:
    queries = _queries(deployed)
    assert len(queries) == 3
    for name, query in queries.items():
        assert name.startswith(f"{constants.APP_NAME}/{stage}/"), name
        assert access_log_group(stage) in query["LogGroupNames"], name


def test_failures_by_route_and_status(deployed: Deployed) -> None:
    (query,) = [q for name, q in _queries(deployed).items() if "failures by route and status" in name]
    text = query["QueryString"]
    assert "status >= 500" in text
    assert "upstream_status like /^5/" in text  # first attempts HOSP failed, as the metric filter counts them
    assert re.search(r"stats count\(\*\) as requests by route, listener, status", text)


def test_the_slowest_requests(deployed: Deployed) -> None:
    (query,) = [q for name, q in _queries(deployed).items() if "slowest" in name]
    assert "sort request_time desc" in query["QueryString"]
    assert "request_id" in query["QueryString"]


def test_one_request_across_the_proxy_and_every_lambda(deployed: Deployed, stage: str) -> None:
    (query,) = [q for name, q in _queries(deployed).items() if "one request" in name]
    assert set(query["LogGroupNames"]) == {access_log_group(stage), *_lambda_log_groups(stage)}
    assert len(_lambda_log_groups(stage)) == 2
    assert 'filter request_id = "00000000000000000000000000000000"' in query["QueryString"]


def test_the_lambdas_log_the_request_id_under_the_name_the_query_reads(capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib import logs  # noqa: PLC0415

    request_id = "0123456789abcdef0123456789abcdef"
    with logs.request_context(request_id):
        logs.info("something_happened")
    assert json.loads(capsys.readouterr().out)["request_id"] == request_id


# ----------------------------------------------------------------- the template


def test_the_template_is_linted_and_scanned_with_the_others() -> None:
    assert MONITORING_TEMPLATE in cfn_templates()


# ------------------------------------------------------- the pattern evaluator


@pytest.mark.parametrize(
    ("pattern", "line", "expected"),
    [
        ('{ $.route = "hosp" }', '{"route": "hosp"}', True),
        ('{ $.route = "hosp" }', '{"route": "hosp-more"}', False),  # whole value, no prefix
        ('{ $.route = "hosp*" }', '{"route": "hosp-more"}', True),
        ('{ $.upstream_status = "5*" }', '{"upstream_status": "502 : 200"}', True),
        ('{ $.upstream_status = "5*" }', '{"upstream_status": "200"}', False),
        ('{ $.upstream_status = "5*" }', '{"upstream_status": ""}', False),
        ('{ $.upstream_status = "5*" }', '{"upstream_status": 503}', False),  # a number is not text
        ("{ $.status >= 500 }", '{"status": 500}', True),
        ("{ $.status >= 500 }", '{"status": 499}', False),
        ("{ $.status >= 500 }", '{"status": "503"}', False),  # text is not a number
        ("{ $.status >= 500 }", "{}", False),  # a missing field compares false
        ('{ $.route != "hosp" }', "{}", False),
        ("{ $.request_time >= 0 }", '{"request_time": 0.000}', True),
        ('{ $.a = "x" || $.b = "y" && $.c = "z" }', '{"a": "x"}', True),  # && binds tighter
        ('{ ($.a = "x" || $.b = "y") && $.c = "z" }', '{"a": "x"}', False),
        ('{ $.a.b = "x" }', '{"a": {"b": "x"}}', True),
        ('{ $.route = "hosp" }', "not json", False),
        ('{ $.route = "hosp" }', '["hosp"]', False),
    ],
)
def test_the_pattern_evaluator(pattern: str, line: str, expected: bool) -> None:
    assert FilterPattern(pattern).matches(line) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "{ $.status IS NULL }",
        "{ $.route = hosp }",
        '{ $.route >= "a" }',
        '$.route = "hosp"',
        '{ $.route = "a" ',
        "ERROR",
    ],
)
def test_a_pattern_outside_the_subset_is_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        FilterPattern(pattern)


def test_a_metric_value_is_the_fields_number() -> None:
    assert metric_value("$.request_time", '{"request_time": 0.25}') == 0.25
    assert metric_value("$.request_time", '{"request_time": "0.25"}') is None
    assert metric_value("$.request_time", "{}") is None
