"""The note queue and its dead-letter queue on the local AWS (moto), as infra/notes/queues.yaml makes them.

The attributes that decide behaviour (FIFO, visibility timeout, how many
receives before the dead-letter queue) are passed in here with the values
the template holds; tests/infra checks that they agree.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib import config

# The same as infra/notes/queues.yaml: tests/infra/test_note_queues_local.py compares them.
VISIBILITY_TIMEOUT = 180
MAX_RECEIVE_COUNT = 8
RETENTION_SECONDS = 1_209_600


def create(sqs: Any, environ: dict[str, str] | None = None, max_receive_count: int = MAX_RECEIVE_COUNT) -> str:
    """Create both queues (again: creating an existing queue is a no-op); returns the note queue's URL."""
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false", "MessageRetentionPeriod": str(RETENTION_SECONDS)}
    # The dead-letter queue also takes messages sent without a deduplication id.
    dead_attributes = {**fifo, "ContentBasedDeduplication": "true"}
    dead_name = config.note_dead_letter_queue_name(environ)
    dead = sqs.create_queue(QueueName=dead_name, Attributes=dead_attributes)["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_receive_count)}
    attributes = {**fifo, "VisibilityTimeout": str(VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(redrive)}
    return str(sqs.create_queue(QueueName=config.note_queue_name(environ), Attributes=attributes)["QueueUrl"])


def client(endpoint: str) -> Any:
    """An SQS client of the local AWS at `endpoint`."""
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name="eu-west-2", aws_access_key_id="local", aws_secret_access_key="local"
    )
