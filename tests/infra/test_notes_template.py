"""infra/notes/queues.yaml: the note queues, the service account secret, alarms and dashboard.

Each test evaluates the template for a stage the way CloudFormation would (tests/infra/cfn.py)
and states a property of the result, not the template's text. cfn-lint runs on it with
every other template (test_cfn_templates.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import metrics
from infra.iam.policies import StageResources
from tests.infra import lambdas
from tests.infra.cfn import INFRA, Deployed, breaches, charted, dashboard, decode, resources

NOTES_TEMPLATE = INFRA / "notes" / "queues.yaml"
FOURTEEN_DAYS = 14 * 24 * 3600

# The note worker's timeout as designed; checked against what Chalice would deploy
# once app.py registers the worker (test_the_visibility_timeout_...).
WORKER_TIMEOUT_SECONDS = 30
# AWS's guidance for a queue that is a Lambda event source: a visibility timeout of at
# least six times the function's timeout, plus the event source's batching window.
VISIBILITY_PER_TIMEOUT = 6

NAMESPACE = "HospReliability"
# The metrics the Lambdas emit (EMF, dimension Stage).
APPLICATION_METRICS = (
    "NoteHandoffsReceived",
    "NoteHandoffsRefused",
    "NoteJobsQueued",
    "NoteJobsNotQueued",
    "NotesWritten",
    "NotesAlreadyPresent",
    "NoteJobsDeadLettered",
    "NoteWriteTransientFailures",
    "NoteWorkerMisconfigured",
)
TOPIC = "arn:aws:sns:eu-west-2:123456789012:hosp-reliability-pager"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decode(NOTES_TEMPLATE)


@pytest.fixture
def deployed(template: dict[str, Any], stage: str) -> Deployed:
    return Deployed(template, Stage=stage)


# ------------------------------------------------------------------ helpers


def _queue(deployed: Deployed, name: str) -> dict[str, Any]:
    """Evaluated properties of the queue the template names `name`."""
    found = [
        deployed.properties(logical)
        for logical in resources(deployed.template, "AWS::SQS::Queue")
        if deployed.name(f"{logical}.QueueName") == name
    ]
    assert len(found) == 1, f"the template creates {len(found)} queues named {name}"
    return found[0]


def _queue_arn(deployed: Deployed, name: str) -> str:
    logical = next(
        logical
        for logical in resources(deployed.template, "AWS::SQS::Queue")
        if deployed.name(f"{logical}.QueueName") == name
    )
    return str(deployed.name(f"{logical}.Arn"))


def _alarm(deployed: Deployed, namespace: str, metric: str, dimensions: dict[str, str]) -> dict[str, Any]:
    """Evaluated properties of the one alarm on that metric."""
    found = []
    for logical in resources(deployed.template, "AWS::CloudWatch::Alarm"):
        alarm = deployed.properties(logical)
        given = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if (alarm.get("Namespace"), alarm.get("MetricName"), given) == (namespace, metric, dimensions):
            found.append(alarm)
    assert len(found) == 1, f"{len(found)} alarms on {namespace} {metric} {dimensions}"
    return found[0]


# ------------------------------------------------------------------ queues


def test_the_template_creates_the_stages_queues_and_secret(deployed: Deployed, stage: str) -> None:
    """The names the Lambdas are given and infra/iam/policies.py grants on."""
    names = StageResources(stage)
    queues = {deployed.name(f"{q}.QueueName") for q in resources(deployed.template, "AWS::SQS::Queue")}
    assert queues == {names.note_queue, names.dead_letter_queue}
    (secret,) = resources(deployed.template, "AWS::SecretsManager::Secret")
    assert deployed.properties(secret)["Name"] == names.service_secret


def test_the_note_queue_is_fifo_and_redrives_to_the_dead_letter_queue(deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    queue = _queue(deployed, names.note_queue)
    dead = _queue(deployed, names.dead_letter_queue)
    assert queue["FifoQueue"] is True
    assert dead["FifoQueue"] is True  # SQS requires a FIFO queue's dead-letter queue to be FIFO
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == _queue_arn(deployed, names.dead_letter_queue)
    assert int(queue["RedrivePolicy"]["maxReceiveCount"]) == 8


def test_the_redrive_count_is_a_parameter(template: dict[str, Any], stage: str) -> None:
    changed = Deployed(template, Stage=stage, MaxReceiveCount="3")
    queue = _queue(changed, StageResources(stage).note_queue)
    assert int(queue["RedrivePolicy"]["maxReceiveCount"]) == 3


def test_the_intake_deduplicates_note_jobs_by_their_marker_not_their_content(deployed: Deployed, stage: str) -> None:
    """Two jobs of one result (a screen sent twice) differ in request id and time; the intake's
    MessageDeduplicationId, the marker of the patient and HOSP's answer, makes them count once."""
    queue = _queue(deployed, StageResources(stage).note_queue)
    assert queue["ContentBasedDeduplication"] is False


def test_only_the_note_queue_may_redrive_to_the_dead_letter_queue(deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    allow = _queue(deployed, names.dead_letter_queue)["RedriveAllowPolicy"]
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [_queue_arn(deployed, names.note_queue)]}


def test_the_visibility_timeout_is_at_least_six_times_the_workers_timeout(deployed: Deployed, stage: str) -> None:
    """AWS's rule for a Lambda event source, for the worker as Chalice would deploy it.

    Until app.py registers an SQS handler, the designed 30 s is checked. Once it does,
    the handler's `lambda_timeout` in .chalice/config.json is. A worker with no timeout
    configured is deployed with Chalice's default (60 s), which breaks the rule: that
    case is reported as an expected failure naming the fix, until the timeout is set.
    """
    visibility = _queue(deployed, StageResources(stage).note_queue)["VisibilityTimeout"]
    assert visibility >= VISIBILITY_PER_TIMEOUT * WORKER_TIMEOUT_SECONDS
    handlers = lambdas.sqs_handlers()
    assert len(handlers) <= 1, f"more than one SQS handler: {[h.name for h in handlers]}"
    if not handlers:
        return
    (worker,) = handlers
    timeout = lambdas.configured_timeout(stage, worker.name)
    window = int(worker.maximum_batching_window_in_seconds)
    fix = (
        f'set "lambda_functions": {{"{worker.name}": {{"lambda_timeout": {WORKER_TIMEOUT_SECONDS}}}}} '
        f"for {stage} in .chalice/config.json"
    )
    if timeout is None:
        pytest.xfail(
            f"the note worker {worker.name} has no lambda_timeout, so Chalice deploys it with "
            f"{lambdas.DEFAULT_TIMEOUT} s and the note queue's {visibility} s is less than "
            f"{VISIBILITY_PER_TIMEOUT} x {lambdas.DEFAULT_TIMEOUT} s: {fix}"
        )
    assert visibility >= VISIBILITY_PER_TIMEOUT * timeout + window, (
        f"the note worker runs up to {timeout} s (batching window {window} s) but the note queue's "
        f"visibility timeout is {visibility} s: {fix}, or raise VisibilityTimeout in infra/notes/queues.yaml"
    )


def test_the_worker_takes_one_job_at_a_time() -> None:
    """Batch size 1: a failed batch returns every job in it to the queue."""
    for handler in lambdas.sqs_handlers():
        assert handler.batch_size == 1, handler.name


def test_queues_keep_jobs_fourteen_days_encrypted_by_sqs(deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    for name in (names.note_queue, names.dead_letter_queue):
        queue = _queue(deployed, name)
        assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS, name
        assert queue["SqsManagedSseEnabled"] is True, name
        # SQS-managed keys: no KMS key whose policy the Lambdas would need.
        assert "KmsMasterKeyId" not in queue, name


def test_queues_and_the_secret_outlive_the_stack(template: dict[str, Any]) -> None:
    """Undelivered notes and the operators' secret survive a stack deletion or replacement."""
    kept = {**resources(template, "AWS::SQS::Queue"), **resources(template, "AWS::SecretsManager::Secret")}
    assert len(kept) == 3
    for name, resource in kept.items():
        assert resource.get("DeletionPolicy") == "RetainExceptOnCreate", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name


# ------------------------------------------------------------------ secret


def test_the_secret_holds_no_value_from_the_template(template: dict[str, Any]) -> None:
    """The vendor's password is put by operators: not generated, not in a parameter."""
    for name, secret in resources(template, "AWS::SecretsManager::Secret").items():
        properties = secret["Properties"]
        assert "SecretString" not in properties, name
        assert "GenerateSecretString" not in properties, name
    # Nothing secret passes through the stack's parameters either.
    assert not [p for p, spec in template["Parameters"].items() if spec.get("NoEcho")]


# ------------------------------------------------------------------ alarms


def test_a_dead_note_job_fires_the_dead_letter_alarm(deployed: Deployed, stage: str) -> None:
    dead = StageResources(stage).dead_letter_queue
    alarm = _alarm(deployed, "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dead})
    assert alarm["Statistic"] == "Maximum"
    assert breaches(alarm, 1)
    assert not breaches(alarm, 0)


def test_a_note_job_not_queued_fires_its_alarm_within_five_minutes(deployed: Deployed, stage: str) -> None:
    alarm = _alarm(deployed, NAMESPACE, "NoteJobsNotQueued", {"Stage": stage})
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] * alarm["EvaluationPeriods"] <= 300
    assert breaches(alarm, 1)
    assert not breaches(alarm, 0)


def test_a_refused_hand_off_fires_its_alarm_within_five_minutes(deployed: Deployed, stage: str) -> None:
    """A hand-off the intake cannot read is a screen with no note."""
    alarm = _alarm(deployed, NAMESPACE, "NoteHandoffsRefused", {"Stage": stage})
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] * alarm["EvaluationPeriods"] <= 300
    assert breaches(alarm, 1)
    assert not breaches(alarm, 0)


def test_a_misconfigured_note_worker_fires_its_alarm_within_five_minutes(deployed: Deployed, stage: str) -> None:
    """An empty service account secret makes every job wait: someone must put it."""
    alarm = _alarm(deployed, NAMESPACE, "NoteWorkerMisconfigured", {"Stage": stage})
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] * alarm["EvaluationPeriods"] <= 300
    assert breaches(alarm, 1)
    assert not breaches(alarm, 0)


def test_a_note_job_older_than_fifteen_minutes_fires_its_alarm(deployed: Deployed, stage: str) -> None:
    queue = StageResources(stage).note_queue
    alarm = _alarm(deployed, "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": queue})
    assert alarm["Statistic"] == "Maximum"
    assert breaches(alarm, 15 * 60 + 1)
    assert not breaches(alarm, 15 * 60)


def test_an_idle_queue_or_quiet_metric_is_not_an_alarm(deployed: Deployed) -> None:
    """SQS stops publishing the metrics of an idle, empty queue, and NoteJobsNotQueued
    exists only when a note was lost: missing data is not a breach."""
    for logical in resources(deployed.template, "AWS::CloudWatch::Alarm"):
        assert deployed.properties(logical)["TreatMissingData"] == "notBreaching", logical


def test_alarms_notify_the_topic_only_when_one_is_given(template: dict[str, Any], stage: str) -> None:
    quiet = Deployed(template, Stage=stage)
    paged = Deployed(template, Stage=stage, AlarmTopicArn=TOPIC)
    for logical in resources(template, "AWS::CloudWatch::Alarm"):
        for actions in ("AlarmActions", "OKActions"):
            assert quiet.properties(logical).get(actions, []) == [], (logical, actions)
            assert paged.properties(logical)[actions] == [TOPIC], (logical, actions)


# --------------------------------------------------------------- dashboard


def test_the_dashboard_charts_every_note_metric_of_the_stage(deployed: Deployed, stage: str) -> None:
    drawn = charted(dashboard(deployed))
    for metric in APPLICATION_METRICS:
        assert (NAMESPACE, metric, (("Stage", stage),)) in drawn, metric


def test_the_dashboard_charts_queue_depth_and_age(deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    drawn = charted(dashboard(deployed))
    for queue, metric in (
        (names.note_queue, "ApproximateNumberOfMessagesVisible"),
        (names.note_queue, "ApproximateNumberOfMessagesNotVisible"),
        (names.dead_letter_queue, "ApproximateNumberOfMessagesVisible"),
        (names.note_queue, "ApproximateAgeOfOldestMessage"),
    ):
        assert ("AWS/SQS", metric, (("QueueName", queue),)) in drawn, (queue, metric)


def test_the_dashboard_shows_every_alarm_and_the_stacks_region(deployed: Deployed) -> None:
    body = dashboard(deployed)
    shown = {arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]}
    alarms = {deployed.name(f"{a}.Arn") for a in resources(deployed.template, "AWS::CloudWatch::Alarm")}
    assert shown == alarms
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == deployed.name("AWS::Region"), widget["properties"]["title"]


def test_the_charted_metric_names_are_those_the_lambdas_emit() -> None:
    assert metrics.NAMESPACE == NAMESPACE
    emitted = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str)}
    assert set(APPLICATION_METRICS) <= emitted


# ----------------------------------------------------------------- outputs


def test_outputs_give_the_queues_urls_and_arns_and_the_secrets_arn(deployed: Deployed, stage: str) -> None:
    names = StageResources(stage)
    given = {deployed.value(output["Value"]) for output in deployed.template["Outputs"].values()}
    queues = {
        logical: deployed.name(f"{logical}.QueueName") for logical in resources(deployed.template, "AWS::SQS::Queue")
    }
    for logical, name in queues.items():
        assert deployed.name(logical) in given, f"URL of {name}"
        assert deployed.name(f"{logical}.Arn") in given, f"ARN of {name}"
    (secret,) = resources(deployed.template, "AWS::SecretsManager::Secret")
    assert deployed.name(secret) in given
    assert set(queues.values()) == {names.note_queue, names.dead_letter_queue}
