"""Structured logs: one JSON object per line on stdout, each with the request id.

Lambda sends stdout to CloudWatch Logs, and `chalice local` to the terminal. A
line is {"time", "level", "event", "request_id", ...fields}. Secrets never
reach a line: fields whose names say they hold credentials or image data are
replaced by "[withheld]" whatever calls `log`, so that a careless field cannot
leak them.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

WITHHELD = "[withheld]"
# Field names (compared in lower case) whose values are never written.
SECRET_FIELDS = frozenset({"authorization", "password", "secret", "images", "image", "body_bytes"})

_request_id: ContextVar[str] = ContextVar("request_id", default="")


# The proxy's request ids: 32 hex digits (NGINX's $request_id).
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def request_id_of(headers: Mapping[str, str]) -> str:
    """The X-Request-Id the proxy sent, or an id of our own for a call made around it."""
    given = headers.get("x-request-id", "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def current_request_id() -> str:
    """The request id of the request being handled (request_context), "" outside one."""
    return _request_id.get()


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Every line logged inside carries `request_id`."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def log(level: str, event: str, **fields: Any) -> None:
    line = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "event": event,
        "request_id": _request_id.get(),
        **{name: WITHHELD if name.lower() in SECRET_FIELDS else value for name, value in fields.items()},
    }
    write_line(line)


def info(event: str, **fields: Any) -> None:
    log("INFO", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("WARNING", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("ERROR", event, **fields)


def write_line(record: dict[str, Any]) -> None:
    """One JSON line to stdout, flushed: a Lambda may freeze right after."""
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()
