"""Queue again the note jobs that only reached a log: python -m chalicelib.requeue < lines.

Two logs hold such jobs, and the lines of both may be given together, in any order:

- the app's: a job the note intake made but SQS did not take, an ERROR line
  {"event": "note_job_not_queued", "job": {...}} in the API handler's log group
  /aws/lambda/hosp-reliability-<stage>;
- the proxy's: a hand-off the note intake did not take (down, slow, failing or
  refusing), one JSON line per hand-off
  {"time", "event": "note_handoff_failed", "request_id", "status", "upstream_status",
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

import sys

from chalicelib import note_jobs


def main() -> int:
    jobs, unreadable = note_jobs.jobs_in_log(_lines())
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


if __name__ == "__main__":
    sys.exit(main())
