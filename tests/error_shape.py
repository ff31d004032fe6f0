"""The one shape of every error (docs/errors.md), as the tests check it, whoever answered."""

from __future__ import annotations

import json
from typing import Any

from chalicelib import errors


def assert_error(body: bytes | str | dict[str, Any], status: int, request_id: str | None = None) -> dict[str, Any]:
    """`body` is an error of `status` in the one shape: a message, the status, a request id, documented extras.

    With `request_id`, the body names that id. Returns the parsed body.
    """
    parsed = body if isinstance(body, dict) else json.loads(body)
    assert isinstance(parsed, dict), parsed
    assert list(parsed)[: len(errors.FIELDS)] == list(errors.FIELDS), parsed
    assert isinstance(parsed["error"], str), parsed
    assert parsed["error"], parsed
    assert type(parsed["status"]) is int, parsed
    assert parsed["status"] == status, parsed
    assert isinstance(parsed["request_id"], str), parsed
    assert parsed["request_id"], parsed
    if request_id is not None:
        assert parsed["request_id"] == request_id, parsed
    assert set(parsed) - set(errors.FIELDS) <= errors.EXTRA_FIELDS, parsed
    return parsed
