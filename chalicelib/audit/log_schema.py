"""The proxy's JSON access log, as a machine-readable contract.

One list, FIELDS, says which fields NGINX writes on every line and of what type.
From it come:

- the Athena (Glue) table's columns (`athena_columns`, used by infra/athena/);
- DuckDB's column types for the same log, read locally (`duckdb_columns`);
- the checks that NGINX writes exactly these fields with these JSON types, and
  that docs/access-log.md documents exactly these (tests/integration/test_access_log.py,
  tests/unit/test_log_schema.py).

Fields are added, never renamed or removed: the audit query and every archived
day of the log depend on the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LogType:
    """A field's type in each place that reads it."""

    json: str  # what docs/access-log.md calls it: "string" or "number"
    athena: str  # Glue / Hive type of the Athena table column
    duckdb: str  # DuckDB type of the column read locally


STRING = LogType("string", "string", "VARCHAR")
INTEGER = LogType("number", "int", "INTEGER")
BIG_INTEGER = LogType("number", "bigint", "BIGINT")
SECONDS = LogType("number", "double", "DOUBLE")
# "YYYY-MM-DD HH:MM:SS.mmm", UTC: the text form both Athena's Hive JSON SerDe and
# DuckDB read as a TIMESTAMP without any format option.
TIMESTAMP = LogType("string", "timestamp", "TIMESTAMP")


@dataclass(frozen=True)
class Field:
    name: str
    type: LogType
    client_text: bool = False  # client-supplied text, escaped losslessly and bounded (docs/access-log.md)
    # Patient ids a client named: each ASCII digits or not-an-id, joined by "," (docs/access-log.md)
    patient_ids: bool = False


FIELDS: tuple[Field, ...] = (
    Field("time", STRING),
    Field("logged_at", TIMESTAMP),
    Field("request_id", STRING),
    Field("user", STRING, client_text=True),
    Field("on_behalf_of", STRING, client_text=True),
    Field("audit_user", STRING),
    Field("client_ip", STRING),
    Field("forwarded_for", STRING, client_text=True),
    Field("viewer_address", STRING, client_text=True),
    Field("method", STRING),
    Field("path", STRING, client_text=True),
    Field("normalized_path", STRING, client_text=True),
    Field("query", STRING, client_text=True),
    Field("patient_id", STRING, patient_ids=True),
    Field("body_patient_id", STRING, patient_ids=True),
    Field("query_patient_id", STRING, patient_ids=True),
    Field("status", INTEGER),
    Field("bytes_sent", BIG_INTEGER),
    Field("request_time", SECONDS),
    Field("upstream_addr", STRING),
    Field("upstream_status", STRING),
    Field("upstream_response_time", STRING),
    Field("retry_budget", STRING),
    Field("listener", STRING),
    Field("route", STRING),
    Field("user_agent", STRING, client_text=True),
    Field("note_handoff", STRING),
)

NAMES: tuple[str, ...] = tuple(field.name for field in FIELDS)

# The table is partitioned by the day a line reached the archive (UTC, YYYY-MM-DD),
# which is the day it was logged or a later one (docs/audit.md).
PARTITION = "day"


def athena_columns() -> list[dict[str, str]]:
    """The Glue table's columns, in log order (CloudFormation `Columns`)."""
    return [{"Name": field.name, "Type": field.type.athena} for field in FIELDS]


def duckdb_columns() -> dict[str, str]:
    """DuckDB's `columns` argument of read_json for the log, in log order."""
    return {field.name: field.type.duckdb for field in FIELDS}


def json_type_of(value: object) -> str:
    """The docs' name for a decoded JSON value's type."""
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


# What follows a backslash the log wrote: a client's backslash, a byte, or the cut marker's dots.
_CLIENT_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|\.\.\.\Z)")


def client_bytes(text: str) -> bytes | None:
    """The bytes a client-text field stands for: `\\\\` one backslash, `\\xHH` the byte HH,
    any other character its UTF-8 bytes (docs/access-log.md, "Client text").

    None for text the log cut at its bound (ending with the marker `\\...`; a client's
    own backslash and dots are `\\\\...`), whose bytes are not all there, and for text the
    log's rule never writes (a lone backslash, a lone surrogate)."""
    out = bytearray()
    at = 0
    try:
        for escape in _CLIENT_ESCAPE.finditer(text):
            plain = text[at : escape.start()]
            code = escape.group(1)
            if "\\" in plain or code == "...":
                return None
            out += plain.encode("utf-8")
            out += b"\\" if code == "\\" else bytes([int(code[1:], 16)])
            at = escape.end()
        rest = text[at:]
        if "\\" in rest:
            return None
        out += rest.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return bytes(out)
