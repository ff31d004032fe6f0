"""The note worker, locally: drains the note queue through the very handler the Lambda runs.

    python -m local.note_worker_loop --port 8001 [--concurrency 4]

Each message is received as Lambda's SQS event source would (batch size 1,
every attribute), wrapped in the event Lambda builds, and given to
`app.write_note`, the function `@app.on_sqs_message` registers. Like the
event source, the loop deletes a message when the handler returns and
leaves it in the queue when the handler raises. The environment is the
Lambda's: AWS_ENDPOINT_URL (the local AWS), HOSP_BASE_URL, STAGE and the
HOSP_SERVICE_* variables (local/stack.py sets them).

GET /health on --port answers {"status": "ok", "handled": N, "failed": N,
"polls": N}: the stack's health check, and a count to watch a queue drain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app import app, write_note
from chalicelib import aws, config, logs

WAIT_SECONDS = 1  # long polling: a drained queue costs one call a second per thread


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = {"polls": 0, "handled": 0, "failed": 0}

    def add(self, name: str) -> None:
        with self.lock:
            self.values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


def lambda_event(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source gives the function for one message."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "",
            }
        ]
    }


class Queue:
    """The note queue as the event source sees it: its URL and ARN."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.url = aws.queue_url(config.note_queue_name())
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def handle_one(self, wait_seconds: int = WAIT_SECONDS) -> str | None:
        """Receive one message and run the handler on it, as the event source would.

        Returns "handled" (the handler returned; the message is deleted), "failed"
        (it raised; the message stays and comes back), or None (nothing to receive).
        """
        received = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return None
        message = messages[0]
        try:
            write_note(lambda_event(message, self.arn), None)
        except Exception:  # the handler logged why; the message comes back
            return "failed"
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return "handled"


def drain(stop: threading.Event, counts: Counts) -> None:
    queue = Queue(aws.client("sqs"))
    while not stop.is_set():
        try:
            outcome = queue.handle_one()
        except Exception as exc:  # the queue is unreachable for now: as Lambda's poller, wait and poll again
            logs.warning("note_queue_poll_failed", reason=type(exc).__name__)
            stop.wait(WAIT_SECONDS)
            continue
        counts.add("polls")
        if outcome is not None:
            counts.add(outcome)


def health_server(port: int, counts: Counts) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", **counts.snapshot()}).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # health checks would fill the log

    return ThreadingHTTPServer(("127.0.0.1", port), Health)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drain the note queue through the Lambda's handler.")
    parser.add_argument("--port", type=int, required=True, help="port of GET /health")
    parser.add_argument("--concurrency", type=int, default=4, help="messages handled at once, as Lambda instances")
    args = parser.parse_args(argv)
    app.log.disabled = True  # the handler's own JSON lines are the log

    stop = threading.Event()
    counts = Counts()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = health_server(args.port, counts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    workers = [threading.Thread(target=drain, args=(stop, counts)) for _ in range(args.concurrency)]
    for worker in workers:
        worker.start()
    with contextlib.suppress(KeyboardInterrupt):
        while any(w.is_alive() for w in workers):
            for worker in workers:
                worker.join(timeout=0.5)
    stop.set()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
