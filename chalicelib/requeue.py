"""Queue again the note jobs that only reached a log: python -m chalicelib.requeue < lines.

Two logs hold such jobs, and the lines of both may be given together, in any order:

- the app's: a job the note intake made but SQS did not take, an ERROR line
  {"event": "note_job_not_queued", "job": {...}} in the API handler's log group
  /aws/lambda/hosp-reliability-<stage>;
- the proxy's: a hand-off the note intake did not take (down, slow, failing or
  refusing), one JSON line per hand-off
  {"time", "event": "note_handoff_failed", "request_id", "status",
   "handoff": "<the hand-off's JSON body, as a string>"}
  in the proxy fleet's log group /hosp-reliability/<stage>/note-handoff-failed
  (on an instance /var/log/hosp-proxy/note-handoff-failed.json; locally
  .local/nginx/note-handoff-failed.json). The job is made from the hand-off as
  the intake makes it (chalicelib/note_intake.py), with the same marker.

    aws logs filter-log-events --log-group-name /aws/lambda/hosp-reliability-<stage> \
        --filter-pattern '{ $.event = "note_job_not_queued" }' \
        --query 'events[].message' --output json | jq -r '.[]' > lost.jsonl
    aws logs filter-log-events --log-group-name /hosp-reliability/<stage>/note-handoff-failed \
        --filter-pattern '{ $.event = "note_handoff_failed" }' \
        --query 'events[].message' --output json | jq -r '.[]' >> lost.jsonl
    python -m chalicelib.requeue < lost.jsonl

(add --start-time <ms since the epoch> to each to start from the incident, and
follow nextToken when the answer has one). Locally:

    python -m chalicelib.requeue < .local/nginx/note-handoff-failed.json

The same job often comes twice (the intake logs a job SQS did not take and
answers 503, and the proxy then logs its hand-off too): it is sent once per
run. Safe to run twice: the queue drops a marker it has seen in the last five
minutes, and the worker writes no note whose marker is already in HOSP.
Exit status 1 when a job could not be queued or a line naming either event
could not be read (it is counted, and the line is left for a person to read).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from chalicelib import note_intake, note_jobs


def main() -> int:
    jobs, unreadable = jobs_in_log(_lines())
    distinct: dict[str, note_jobs.NoteJob] = {}
    for job in jobs:
        distinct.setdefault(job.marker, job)
    queued = sum(note_jobs.queue(job) for job in distinct.values())
    repeated = len(jobs) - len(distinct)
    again = f" ({repeated} line(s) repeated a job already read)" if repeated else ""
    print(f"requeued {queued} of {len(distinct)} note job(s){again}", file=sys.stderr)
    if unreadable:
        print(f"{unreadable} logged job(s) could not be read: see those lines in the log", file=sys.stderr)
    return 0 if queued == len(distinct) and not unreadable else 1


def _lines() -> list[str]:
    """Standard input's lines. Read as bytes: a line that is not UTF-8 (a proxy's line quotes
    a client's user name) costs that name's bad bytes, not the whole run. Split on newlines
    only: a proxy's line may hold U+2028, which str.splitlines would take for a line break."""
    buffer = getattr(sys.stdin, "buffer", None)
    text = buffer.read().decode("utf-8", "replace") if buffer is not None else sys.stdin.read()
    return [line.removesuffix("\r") for line in text.split("\n")]


def jobs_in_log(lines: list[str]) -> tuple[list[note_jobs.NoteJob], int]:
    """The jobs the log lines among `lines` hold, and how many such lines could not be read.

    Two kinds of line hold a job: the app's "note_job_not_queued" (the job in
    full, under "job") and the proxy's "note_handoff_failed" (the hand-off it
    posted to the note intake, as a JSON string under "handoff"; the job is
    made from it as the intake makes it, with the same marker). Other lines are
    skipped. A line that names either event but holds no readable job (cut
    short on its way, say, or a hand-off the intake would refuse) is counted,
    never silently dropped. The same job may come from both kinds of line, or
    twice: the marker tells them apart (main sends each once).
    """
    jobs, unreadable = [], 0
    for line in lines:
        if f'"{note_jobs.NOT_QUEUED_EVENT}"' not in line and f'"{note_jobs.HANDOFF_FAILED_EVENT}"' not in line:
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            unreadable += 1
            continue
        event = record.get("event") if isinstance(record, dict) else None
        try:
            if event == note_jobs.NOT_QUEUED_EVENT:
                jobs.append(note_jobs.NoteJob.from_json(json.dumps(record["job"])))
            elif event == note_jobs.HANDOFF_FAILED_EVENT:
                jobs.append(_job_of_failed_handoff(record))
            elif not isinstance(record, dict):
                unreadable += 1  # the event's name, but not in a log line's shape
        except (ValueError, KeyError, TypeError, RecursionError):  # MalformedJob and RefusedHandoff are ValueErrors
            unreadable += 1
    return jobs, unreadable


def _job_of_failed_handoff(record: dict[str, Any]) -> note_jobs.NoteJob:
    """The job of a proxy's "note_handoff_failed" line, asked at the line's time; raises ValueError."""
    handoff = record["handoff"]
    if not isinstance(handoff, str):
        raise TypeError("the hand-off is not a JSON string")
    return note_intake.job_of(note_intake.parse_handoff(handoff), _time_of(record.get("time")))


def _time_of(value: Any) -> datetime | None:
    """The time of a log line, if it is an ISO 8601 time with its offset; None otherwise."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


if __name__ == "__main__":
    sys.exit(main())
