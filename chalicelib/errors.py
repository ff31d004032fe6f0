"""The one JSON shape of every error a client gets, from the proxy or from the app (docs/errors.md).

    {"error": "<message>", "status": <HTTP status>, "request_id": "<id>"}

`request_id` is the id the proxy sent in X-Request-Id, which the app logs every
line of the request with (logs.request_id_of: an id of the app's own for a call
made around the proxy). Some errors add fields that say more; each is named in
EXTRA_FIELDS and documented in docs/errors.md. NGINX writes the same shape for
its own errors (infra/nginx/templates/json-errors.conf).
"""

from __future__ import annotations

import json
from typing import Any

FIELDS = ("error", "status", "request_id")
# The fields an error may add, each documented in docs/errors.md.
EXTRA_FIELDS = frozenset({"field", "accepts", "problems", "reason", "hint", "job_id", "filters"})
CONTENT_TYPE = "application/json"


def body(status: int, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    """The error as a JSON object; ValueError for a field docs/errors.md does not document."""
    if not 400 <= status <= 599:
        raise ValueError(f"an error's status is 4xx or 5xx, not {status}")
    undocumented = sorted(set(extra) - EXTRA_FIELDS)
    if undocumented:
        raise ValueError(f"undocumented error fields: {', '.join(undocumented)}")
    return {"error": message, "status": status, "request_id": request_id, **extra}


def encoded(status: int, message: str, request_id: str, **extra: Any) -> bytes:
    """The error as the bytes of an answer's body: one line of JSON."""
    return (json.dumps(body(status, message, request_id, **extra)) + "\n").encode()
