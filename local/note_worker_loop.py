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
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app import app, write_note
from chalicelib import aws, config, logs

WAIT_SECONDS = 1  # how long a poll of an unreachable queue waits before the next
# Short polls, 0.1 s apart while the queue is empty: moto's long poll does not
# return when a message arrives, so it would delay every note by up to its wait.
IDLE_PAUSE = 0.1


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
    """The note queue as the event source sees it: its URL and ARN.

    Receives are made one at a time, by one receiver; the handling is not. moto's
    receive is not atomic: receivers woken together can all take the same
    message, which SQS never hands out twice at once. One receiver keeps the
    local queue as strict as SQS, so that what the tests count is the worker's doing.
    """

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.url = aws.queue_url(config.note_queue_name())
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive(self, wait_seconds: int = WAIT_SECONDS) -> dict[str, Any] | None:
        """One message with every attribute (batch size 1), or None."""
        received = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        return messages[0] if messages else None

    def handle(self, message: dict[str, Any]) -> str:
        """Run the handler on the message, as the event source would.

        "handled": the handler returned, and the message is deleted; "failed": it
        raised, and the message stays, to come back.
        """
        try:
            write_note(lambda_event(message, self.arn), None)
        except Exception:  # the handler logged why; the message comes back
            return "failed"
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return "handled"

    def handle_one(self, wait_seconds: int = WAIT_SECONDS) -> str | None:
        """Receive and handle one message; None when there was none."""
        message = self.receive(wait_seconds)
        return None if message is None else self.handle(message)


def drain(queue: Queue, concurrency: int, stop: threading.Event, counts: Counts) -> None:
    """Receive here, handle up to `concurrency` messages at once, as Lambda instances would."""
    free = threading.Semaphore(concurrency)

    def handle(message: dict[str, Any]) -> None:
        try:
            counts.add(queue.handle(message))
        finally:
            free.release()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while not stop.is_set():
            free.acquire()
            try:
                message = queue.receive(wait_seconds=0)
            except Exception as exc:  # the queue is unreachable for now: as Lambda's poller, wait and poll again
                free.release()
                logs.warning("note_queue_poll_failed", reason=type(exc).__name__)
                stop.wait(WAIT_SECONDS)
                continue
            counts.add("polls")
            if message is None:
                free.release()
                stop.wait(IDLE_PAUSE)
            else:
                pool.submit(handle, message)


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
    receiver = threading.Thread(target=drain, args=(Queue(aws.client("sqs")), args.concurrency, stop, counts))
    receiver.start()
    with contextlib.suppress(KeyboardInterrupt):
        while receiver.is_alive():
            receiver.join(timeout=0.5)
    stop.set()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
