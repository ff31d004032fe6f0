"""GET /audit's query parameters: validated, then turned into the query's parameters.

Every parameter is checked against a narrow shape before it goes anywhere, and a
bad one is refused with a BadFilter naming the field and what it accepts. The
values then reach the SQL only as execution parameters (chalicelib/audit/query.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import screen_path

DEFAULT_SPAN = timedelta(hours=24)
# The years a range may touch: the trail cannot be older than the project, and a
# date near year 1 or 9999 would overflow the arithmetic on the range.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2999
MAX_SPAN = timedelta(days=31)
MAX_TEXT = 256  # characters, for user and path_prefix

# ISO 8601 in UTC: a date, a time to the minute or finer, and Z or +00:00.
_UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|\+00:00)")
_PATIENT = re.compile(r"[1-9][0-9]{0,17}")
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_STATUS_CODE = re.compile(r"[1-5][0-9][0-9]")
_STATUS_CLASS = re.compile(r"[1-5]xx")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

PARAMETERS = ("from", "to", "user", "patient_id", "method", "path_prefix", "status")


class BadFilter(ValueError):
    """A query parameter GET /audit refuses; `field` names it, `accepts` says what would do."""

    def __init__(self, field: str, accepts: str) -> None:
        super().__init__(f"{field}: {accepts}")
        self.field = field
        self.accepts = accepts


@dataclass(frozen=True)
class Filters:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    user: str = ""
    patient_id: str = ""
    method: str = ""
    path_prefix: str = ""
    status: str = ""  # "", a code like "503" or a class like "5xx"

    def applied(self) -> dict[str, str]:
        """The filters as the query applies them, for the answer and the export record."""
        shown = {"from": iso(self.start), "to": iso(self.end)}
        for name in ("user", "patient_id", "method", "path_prefix", "status"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        return shown

    def status_range(self) -> tuple[int, int]:
        if not self.status:
            return 0, 999
        if self.status.endswith("xx"):
            low = int(self.status[0]) * 100
            return low, low + 99
        return int(self.status), int(self.status)

    def query_parameters(self) -> dict[str, Any]:
        """The values of trail.sql's :names."""
        low, high = self.status_range()
        return {
            # A line is in the partition of the day it reached the archive: the day it
            # was logged or a later one (docs/audit.md).
            "first_day": self.start.date().isoformat(),
            "last_day": (self.end + timedelta(days=1)).date().isoformat(),
            "from_time": sql_time(self.start),
            "to_time": sql_time(self.end),
            "user": log_text(self.user),
            "patient_id": self.patient_id,
            "method": self.method,
            "path_prefix": log_text(self.path_prefix),
            "status_low": low,
            "status_high": high,
            # The trail names the patient of a screen's path as the proxy routes it.
            "screen_path": screen_path.pattern(),
        }

    @classmethod
    def from_query_parameters(cls, parameters: Mapping[str, Any]) -> Filters:
        """The filters a job was started with, from the query parameters it ran with."""
        low, high = int(parameters.get("status_low", 0)), int(parameters.get("status_high", 999))
        if (low, high) == (0, 999):
            status = ""
        elif low == high:
            status = str(low)
        else:
            status = f"{low // 100}xx"
        return cls(
            start=_sql_time_value(str(parameters["from_time"])),
            end=_sql_time_value(str(parameters["to_time"])),
            user=str(parameters.get("user", "")).replace("\\\\", "\\"),
            patient_id=str(parameters.get("patient_id", "")),
            method=str(parameters.get("method", "")),
            path_prefix=str(parameters.get("path_prefix", "")).replace("\\\\", "\\"),
            status=status,
        )

    def file_name(self) -> str:
        """The download's name, saying the range: audit_20261127T000000Z_20261128T000000Z.csv."""
        return f"audit_{self.start:%Y%m%dT%H%M%SZ}_{self.end:%Y%m%dT%H%M%SZ}.csv"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sql_time(moment: datetime) -> str:
    """The text Athena and DuckDB both cast to a TIMESTAMP: UTC, to the millisecond."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _sql_time_value(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


def log_text(value: str) -> str:
    """`value` as the access log writes client text: backslashes doubled (docs/access-log.md)."""
    return value.replace("\\", "\\\\")


def parse(params: Mapping[str, Sequence[str]], now: datetime) -> Filters:
    """Filters from the query string (each name mapped to all its values), or BadFilter."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise BadFilter(unknown[0][:64], f"a filter's name, one of: {', '.join(PARAMETERS)}")
    one: dict[str, str] = {}
    for name, values in params.items():
        if len(values) != 1:
            raise BadFilter(name, "give it once")
        one[name] = values[0]

    end = _time(one, "to") if "to" in one else now.astimezone(UTC)
    start = _time(one, "from") if "from" in one else end - DEFAULT_SPAN
    if start.year < EARLIEST_YEAR:  # `to` alone, early in EARLIEST_YEAR: the default range starts before it
        raise BadFilter("to" if "from" not in one else "from", UTC_TIME_ACCEPTS)
    if start >= end:
        raise BadFilter("from", "must be before to (to is now when it is left out)")
    if end - start > MAX_SPAN:
        # Name the one the caller gave: with only `from`, `to` is now.
        field, other = ("to", "from") if "to" in one else ("from", "to (now when left out)")
        raise BadFilter(field, f"the range from from to to may be at most {MAX_SPAN.days} days; check {other}")
    return Filters(
        start=start,
        end=end,
        user=_text(one, "user"),
        patient_id=_matching(one, "patient_id", _PATIENT, "a patient id: a positive integer, like 5"),
        method=_matching(one, "method", _METHOD, "an HTTP method, like GET or POST").upper(),
        path_prefix=_path_prefix(one),
        status=_status(one),
    )


UTC_TIME_ACCEPTS = (
    f"an ISO 8601 time in UTC between the years {EARLIEST_YEAR} and {LATEST_YEAR}, like 2026-11-27T08:00:00Z "
    "(in a URL, write +00:00 as %2B00:00: a bare + reads as a space)"
)


def _time(params: Mapping[str, str], name: str) -> datetime:
    value = params[name]
    if not _UTC_TIME.fullmatch(value):
        raise BadFilter(name, UTC_TIME_ACCEPTS)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:  # the shape is right but the date is not (2026-02-30)
        raise BadFilter(name, UTC_TIME_ACCEPTS) from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise BadFilter(name, UTC_TIME_ACCEPTS)
    return moment


def _text(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if name in params and not value:
        raise BadFilter(name, "must not be empty; leave it out to match everyone")
    if len(value) > MAX_TEXT or _CONTROL.search(value):
        raise BadFilter(name, f"at most {MAX_TEXT} characters, none of them control characters")
    return value


def _matching(params: Mapping[str, str], name: str, shape: re.Pattern[str], accepts: str) -> str:
    value = params.get(name, "")
    if name in params and not shape.fullmatch(value):
        raise BadFilter(name, accepts)
    return value


def _path_prefix(params: Mapping[str, str]) -> str:
    value = _text(params, "path_prefix")
    if value and not value.startswith("/"):
        raise BadFilter("path_prefix", "a path starting with /, like /patients/5 (matched on the decoded path)")
    return value


def _status(params: Mapping[str, str]) -> str:
    value = params.get("status", "")
    if "status" in params and not (_STATUS_CODE.fullmatch(value) or _STATUS_CLASS.fullmatch(value.lower())):
        raise BadFilter("status", "a status code like 503, or a class like 5xx")
    return value.lower()
