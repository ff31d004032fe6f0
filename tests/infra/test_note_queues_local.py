"""The local stack's note queues behave like the ones infra/notes/queues.yaml deploys."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from chalicelib import constants
from local import note_queue
from tests.infra.cfn import INFRA, decode, resources


def test_the_local_queues_take_the_templates_behaviour() -> None:
    template = decode(INFRA / "notes" / "queues.yaml")
    queues = [q["Properties"] for q in resources(template, "AWS::SQS::Queue").values()]
    main = next(q for q in queues if "RedrivePolicy" in q)
    dead = next(q for q in queues if "RedrivePolicy" not in q)

    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = note_queue.create(sqs, {constants.STAGE: "dev"})
        local = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dead_url = sqs.get_queue_url(QueueName=constants.dead_letter_queue("dev"))["QueueUrl"]
        local_dead = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["All"])["Attributes"]

    assert local["FifoQueue"] == "true"
    assert main["FifoQueue"] is True
    assert int(local["VisibilityTimeout"]) == main["VisibilityTimeout"]
    assert int(local["MessageRetentionPeriod"]) == main["MessageRetentionPeriod"]
    assert int(json.loads(local["RedrivePolicy"])["maxReceiveCount"]) == int(
        template["Parameters"]["MaxReceiveCount"]["Default"]
    )
    assert local["ContentBasedDeduplication"] == str(main.get("ContentBasedDeduplication", False)).lower()
    assert url.endswith("/" + constants.note_queue("dev"))
    assert local_dead["FifoQueue"] == "true"
    assert local_dead["ContentBasedDeduplication"] == str(dead.get("ContentBasedDeduplication", False)).lower()
    assert int(local_dead["MessageRetentionPeriod"]) == dead["MessageRetentionPeriod"]
