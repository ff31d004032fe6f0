"""Access logs with known rates: the proxy's JSON lines, made up, and what they hold.

`generate` writes lines in the format NGINX writes (docs/access-log.md) for
requests whose fate it draws from the given rates, and counts, as it draws,
what a reader of the log should find: requests, HOSP's first-attempt failures,
retries, refusals, client failures, per day. The reliability report's tests
and benchmark compare the report's headline with these counts, which come from
the drawing, never from reading the file back.

Made for the report, so it draws what the report reads: routes, listeners,
statuses, attempts, the retry budget's verdict, the request time. The other
fields are filled with plausible constant values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

# A routed-to-HOSP request's fate on each attempt: a status, or 502 for a reset
# connection and 504 for a timeout, as NGINX writes them.
FAILURES = ("503", "502", "504", "500")


@dataclass(frozen=True)
class Rates:
    """What the made-up traffic is like."""

    first_failure: float = 0.2  # share of HOSP's first attempts that fail
    retry_failure: float = 0.2  # share of retries that fail again
    tries: int = 3  # attempts at most for a retried request (the proxy's proxy_next_upstream_tries)
    refusal: float = 0.05  # share of failed, retryable first attempts the budget refuses
    write: float = 0.1  # share of client requests that are writes (never retried)
    internal: float = 0.1  # share of lines on the internal listener (the Lambdas' calls)
    screen: float = 0.02  # share of client requests that are screens
    audit: float = 0.01  # share of client requests to /audit
    not_found: float = 0.03  # share of HOSP answers that are a 404
    proxy_answered: float = 0.005  # share of requests the proxy answers itself (405), no attempt
    broken: float = 0.001  # share of lines that are not JSON (a line cut short, noise)


@dataclass
class Truth:
    """What a correct reader finds in the generated log (the report's headline)."""

    lines: int = 0  # every line written, the unreadable ones included
    unreadable: int = 0
    client_requests: int = 0  # public listener
    client_failures: int = 0  # public listener, status 5xx
    hosp_requests: int = 0  # routed to HOSP with at least one attempt, either listener
    first_attempt_failures: int = 0
    recovered: int = 0  # first attempt failed, the answer was not a 5xx
    attempts: int = 0  # attempts to HOSP of those requests
    retried: int = 0  # retry_budget PASSED
    refusals: int = 0  # retry_budget REJECTED
    screens: int = 0
    audit_requests: int = 0
    first: datetime | None = None
    last: datetime | None = None
    per_day: dict[str, Truth] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """The counters alone, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.type == "int"}


_LINE = (
    '{{"time":"{iso}","logged_at":"{logged_at}","request_id":"{request_id}","user":"{user}",'
    '"on_behalf_of":"{on_behalf_of}","audit_user":"","client_ip":"127.0.0.1","forwarded_for":"",'
    '"viewer_address":"","method":"{method}","path":"{path}","normalized_path":"{path}","query":"",'
    '"patient_id":"","body_patient_id":"{body_patient_id}","query_patient_id":"","status":{status},'
    '"bytes_sent":{bytes_sent},"request_time":{request_time},"upstream_addr":"{upstream_addr}",'
    '"upstream_status":"{upstream_status}","upstream_response_time":"{upstream_response_time}",'
    '"retry_budget":"{retry_budget}","listener":"{listener}","route":"{route}","user_agent":"made-up/1.0",'
    '"note_handoff":"{note_handoff}"}}'
)


def _join_attempts(entries: list[str]) -> str:
    """upstream_* as NGINX writes them: the first attempt, then " : " and the retries joined by ", "."""
    if len(entries) <= 1:
        return "".join(entries)
    return entries[0] + " : " + ", ".join(entries[1:])


def _request(draw: random.Random, rates: Rates, listener: str) -> dict[str, object]:
    """One request's fields that matter to the report, drawn from the rates."""
    route, method, path = "hosp", "GET", "/patients/5"
    if listener == "public":
        roll = draw.random()
        if roll < rates.screen:
            route, method, path = "screen", "POST", "/patients/5/screen"
        elif roll < rates.screen + rates.audit:
            route, method, path = "audit", "GET", "/audit"
        elif roll < rates.screen + rates.audit + rates.write:
            method, path = "POST", "/notes"
    elif draw.random() < 0.5:
        method, path = "POST", "/notes"
    fields: dict[str, object] = {"route": route, "method": method, "path": path, "retry_budget": ""}
    if route == "audit":  # the Chalice app's answer: one attempt, never a HOSP failure
        status = "200" if draw.random() > rates.first_failure / 4 else "502"
        fields.update(status=int(status), attempts=[status])
        return fields
    if draw.random() < rates.proxy_answered:
        fields.update(status=405, attempts=[])
        return fields
    first = draw.choice(FAILURES) if draw.random() < rates.first_failure else "200"
    if first == "200" and draw.random() < rates.not_found:
        first = "404"
    attempts = [first]
    # GETs and screens are retried (screening stores nothing); other writes never.
    if first in FAILURES and (method == "GET" or route == "screen"):
        if draw.random() < rates.refusal:
            fields.update(status=503, attempts=attempts, retry_budget="REJECTED")
            return fields
        fields["retry_budget"] = "PASSED"
        while attempts[-1] in FAILURES and len(attempts) < rates.tries:
            attempts.append(draw.choice(FAILURES) if draw.random() < rates.retry_failure else "200")
    fields.update(status=int(attempts[-1]), attempts=attempts)
    return fields


def generate(out: IO[str], lines: int, start: datetime, span: timedelta, rates: Rates, *, seed: int = 1) -> Truth:
    """Write `lines` lines to `out`, logged evenly from `start` over `span`; return what they hold."""
    draw = random.Random(seed)
    truth = Truth()
    step = span / max(lines - 1, 1)
    for n in range(lines):
        when = start + step * n
        day = truth.per_day.setdefault(when.strftime("%Y-%m-%d"), Truth())
        for counts in (truth, day):
            counts.lines += 1
        if draw.random() < rates.broken:
            out.write(_broken(draw) + "\n")
            for counts in (truth, day):
                counts.unreadable += 1
            continue
        listener = "internal" if draw.random() < rates.internal else "public"
        fields = _request(draw, rates, listener)
        attempts: list[str] = fields["attempts"]  # type: ignore[assignment]
        status = int(fields["status"])  # type: ignore[call-overload]
        request_time = round(0.001 + draw.expovariate(1 / 0.05) * len(attempts or [""]), 3)
        out.write(
            _LINE.format(
                iso=when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+00:00",
                logged_at=when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}",
                request_id=f"{draw.getrandbits(128):032x}",
                user="nurse-a" if listener == "public" else "notes-service",
                on_behalf_of="" if listener == "public" else "nurse-a",
                method=fields["method"],
                path=fields["path"],
                body_patient_id="5" if fields["method"] == "POST" and fields["route"] == "hosp" else "",
                status=status,
                bytes_sent=draw.randrange(100, 4000),
                request_time=request_time,
                upstream_addr=_join_attempts(["127.0.0.1:9000"] * len(attempts)),
                upstream_status=_join_attempts(attempts),
                upstream_response_time=_join_attempts(["0.002"] * len(attempts)),
                retry_budget=fields["retry_budget"],
                listener=listener,
                route=fields["route"],
                note_handoff=("sent" if status < 300 else "not-2xx") if fields["route"] == "screen" else "",
            )
            + "\n"
        )
        for counts in (truth, day):
            _count(counts, fields, listener=listener, status=status, attempts=attempts, when=when)
    return truth


def _count(
    counts: Truth, fields: dict[str, object], *, listener: str, status: int, attempts: list[str], when: datetime
) -> None:
    counts.first = counts.first or when
    counts.last = when
    if listener == "public":
        counts.client_requests += 1
        counts.client_failures += status >= 500
        counts.screens += fields["route"] == "screen"
        counts.audit_requests += fields["route"] == "audit"
    if fields["route"] in ("hosp", "screen") and attempts:
        counts.hosp_requests += 1
        counts.attempts += len(attempts)
        failed = attempts[0] in FAILURES
        counts.first_attempt_failures += failed
        counts.recovered += failed and status < 500
    counts.retried += fields["retry_budget"] == "PASSED"
    counts.refusals += fields["retry_budget"] == "REJECTED"


def _broken(draw: random.Random) -> str:
    """A line no JSON reader takes: cut short, noise, or JSON that is not a log line."""
    return draw.choice(
        [
            '{"time":"2026-12-01T00:00:00.000+00:00","logged_at":"2026-12-01 00:00:00.000","status":20',
            "nginx: [alert] could not write to the log",
            "[1, 2, 3]",
            '{"status": "two hundred"}',
        ]
    )


def write(path: Path, lines: int, start: datetime, span: timedelta, rates: Rates, *, seed: int = 1) -> Truth:
    """generate() into the file `path`."""
    with path.open("w", encoding="utf-8") as out:
        return generate(out, lines, start, span, rates, seed=seed)


def main() -> None:  # pragma: no cover - a convenience for trying the report by hand
    parser = argparse.ArgumentParser(description="Write a made-up proxy access log with known rates, and print them.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--start", default="2026-11-30T00:00:00")
    args = parser.parse_args()
    truth = write(args.path, args.lines, datetime.fromisoformat(args.start), timedelta(days=args.days), Rates())
    print(json.dumps(truth.counts(), indent=2))
    print(Counter({day: t.lines for day, t in truth.per_day.items()}))


if __name__ == "__main__":
    main()
