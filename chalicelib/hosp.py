"""The HOSP HTTP client of the Lambdas (the note worker's): one `requests` session, timeouts on every call.

Every call goes to HOSP_BASE_URL, the proxy's internal listener, so that it
gets the proxy's retries of idempotent requests and lands in the same access
log as the nurses' own requests (docs/screen.md). Each call carries the
request id of the nurse's request that caused it (X-Request-Id).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """HOSP's answer as it came: status, headers, body bytes (still encoded)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class HospUnreachable(Exception):
    """No answer from HOSP: the connection failed, was reset, or timed out."""


@functools.cache
def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # HOSP_BASE_URL is reached directly, never through an HTTP_PROXY
    # None of requests' default headers: HOSP gets what the caller gives, and is
    # asked for an unencoded answer, which the worker must be able to read.
    s.headers = CaseInsensitiveDict({"Accept-Encoding": "identity"})
    return s


def call(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
    *,
    params: Mapping[str, str] | None = None,
    timeout: float = READ_TIMEOUT,
) -> Answer:
    """One HTTP call; the body is read as bytes, undecoded (gzip stays gzip)."""
    try:
        with session().request(
            method,
            url,
            headers=dict(headers),
            data=body,
            params=params,
            timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            stream=True,
            allow_redirects=False,
        ) as response:
            raw = response.raw.read(decode_content=False)
            return Answer(response.status_code, tuple(response.raw.headers.items()), raw)
    # urllib3's own errors: the answer broke off, or stalled, part-way through its body.
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise HospUnreachable(f"{method} {_path(url)}: {type(exc).__name__}") from exc


def json_of(answer: Answer) -> Any:
    """The answer's JSON, or None if it is not JSON."""
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


def _path(url: str) -> str:
    # For messages: the path only, never a query string or credentials in a URL.
    return urlsplit(url).path
