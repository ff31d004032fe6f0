"""AWS clients, created on first use and then reused for the life of the process.

A Lambda's process outlives one invocation, so reusing clients saves their
set-up on every warm call; creating them lazily keeps importing app.py free
of AWS (chalice deploy and the tests import it). `AWS_ENDPOINT_URL` (the
local stack's moto server) is honoured by boto3 itself. Timeouts are short
and retries bounded, so that a queue that cannot be reached costs a call (the
note intake's, the worker's) a few seconds at most.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

# At most about 6 s per call (2 attempts of 1 s to connect and 2 s to read, and
# a backoff): the note intake's lookup of the queue and its SendMessage fit well
# inside API Gateway's 29 s, and the audit route's 20 s wait plus one call does.
CLIENT_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 2},
)


@functools.cache
def client(service: str) -> Any:
    """The shared boto3 client of `service` ("sqs", "secretsmanager")."""
    return boto3.session.Session().client(service, config=CLIENT_CONFIG)


@functools.cache
def presigning_client(service: str, config: Config) -> Any:
    """A client of `service` for presigning links with `config` (e.g. S3 with SigV4)."""
    return boto3.session.Session().client(service, config=CLIENT_CONFIG.merge(config))


def reset() -> None:
    """Forget the clients (tests that start a new mocked AWS call this)."""
    client.cache_clear()
    presigning_client.cache_clear()
    queue_url.cache_clear()


@functools.cache
def queue_url(name: str) -> str:
    return str(client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
