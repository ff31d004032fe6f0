"""Strict parsing of what clients send: numbers in headers and queries, JSON bodies, base64.

Python's own parsers are lenient where HTTP is not: str.isdigit() is true for "²" and
"٣", int() accepts "0_2", "+5" and " 5", and json.loads recurses once per nesting
level until it raises RecursionError. Everything here refuses such input by
returning None or raising BadJson, so that the caller can answer 400 instead of
crashing its connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pydantic_core

# HTTP's 1*DIGIT and 1*HEXDIG (RFC 9110 section 8.6, RFC 9112 section 7.1): ASCII only.
_DIGITS = re.compile(r"[0-9]+")
_HEXDIGITS = re.compile(rb"[0-9A-Fa-f]+")
# Larger than any size, id or limit the stand-in takes. Capping numbers here keeps
# int() clear of its 4300-digit conversion limit (a ValueError on a valid number).
NUMBER_CAP = 10**18
# Non-empty standard base64 with its padding, as HOSP's screening takes images. The
# OpenAPI document gives the same pattern (a test holds them equal).
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
_BASE64 = re.compile(BASE64_PATTERN)
# A character outside Ruby's [[:space:]], which Rails' blank? strips: Python's
# str.isspace() differs (it counts the separators \x1c-\x1f, Rails does not). The
# OpenAPI document gives the same pattern (a test holds them equal).
NOT_BLANK_PATTERN = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NOT_BLANK = re.compile(NOT_BLANK_PATTERN)


class BadJson(ValueError):
    """Text is not JSON, or is nested too deeply to parse; the message says which."""


def decimal(text: str) -> int | None:
    """The value of 1*DIGIT (ASCII digits only), at most NUMBER_CAP; None for anything
    else: signs, spaces, "²", "0_2", the empty string."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return NUMBER_CAP if len(digits) > len(str(NUMBER_CAP)) else min(int(digits), NUMBER_CAP)


def chunk_size(text: bytes) -> int | None:
    """The value of 1*HEXDIG (ASCII only), at most NUMBER_CAP; None for anything else."""
    if not _HEXDIGITS.fullmatch(text):
        return None
    digits = text.lstrip(b"0") or b"0"
    return NUMBER_CAP if len(digits) > 16 else min(int(digits, 16), NUMBER_CAP)


def json_value(body: bytes | str) -> Any:
    """The JSON value of body; raises BadJson, whose message completes "the body is ...".

    The parser is pydantic-core's (jiter): it parses without recursing in Python and
    refuses nesting beyond its fixed depth limit (about 200 levels) with an error,
    where json.loads would raise RecursionError after 1000 levels and leave the
    deeply nested value for every later repr() or walk to trip over. Valid HOSP
    bodies are three levels deep at most.
    """
    try:
        return pydantic_core.from_json(body)
    except ValueError as error:
        if "recursion limit" in str(error):
            raise BadJson("nested too deeply") from None
        raise BadJson(f"not valid JSON: {error}") from None


def is_blank(text: str) -> bool:
    """Whether Rails would call text blank: empty, or white space only."""
    return _NOT_BLANK.search(text) is None


def is_base64(text: str) -> bool:
    """Whether text is non-empty, padded standard base64 (what an image must be)."""
    return _BASE64.fullmatch(text) is not None


def rack_base_url(headers: Mapping[str, str], connection_host: str) -> str:
    """The base URL Rack's Request#base_url builds from these headers, reached over plain HTTP:
    what a Rails HOSP writes its links from ("url" fields).

    Rack's order (rack/request.rb, Rack 3's defaults): the scheme from
    X-Forwarded-Ssl "on", else Forwarded's proto=, else X-Forwarded-Proto's
    first entry, else X-Forwarded-Scheme, else the connection's (http); the
    host from Forwarded's host=, else X-Forwarded-Host's last entry, else
    Host, else the address the connection reached (`connection_host`); the
    port from that host, else X-Forwarded-Port, else the scheme's.
    """
    h = {name.lower(): value.strip() for name, value in headers.items()}
    forwarded: dict[str, str] = {}
    for element in h.get("forwarded", "").split(","):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if value:
                forwarded[key.lower()] = value.strip('"')
    if h.get("x-forwarded-ssl") == "on":
        scheme = "https"
    else:
        proto = h.get("x-forwarded-proto", "").split(",")[0].strip()
        scheme = forwarded.get("proto") or proto or h.get("x-forwarded-scheme") or "http"
    scheme = scheme if scheme in ("http", "https") else "http"
    authority = (
        forwarded.get("host")
        or h.get("x-forwarded-host", "").split(",")[-1].strip()
        or h.get("host")
        or connection_host
    )
    host, _, port = authority.partition(":")
    default = {"http": "80", "https": "443"}[scheme]
    port = port or h.get("x-forwarded-port", "") or default
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"
