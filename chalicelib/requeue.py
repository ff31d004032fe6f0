"""Queue again the note jobs that the interceptor could only log.

    aws logs filter-log-events --log-group-name /aws/lambda/<interceptor> \
        --filter-pattern '{ $.event = "note_job_not_queued" }' \
        --query 'events[].message' --output json | jq -r '.[]' | python -m chalicelib.requeue

Safe to run twice: the queue drops a marker it has seen in the last five
minutes, and the worker writes no note whose marker is already in HOSP.
"""

from __future__ import annotations

import sys

from chalicelib import note_jobs


def main() -> int:
    jobs, unreadable = note_jobs.jobs_in_log(sys.stdin.read().splitlines())
    queued = sum(note_jobs.queue(job) for job in jobs)
    print(f"requeued {queued} of {len(jobs)} note job(s)", file=sys.stderr)
    if unreadable:
        print(f"{unreadable} logged job(s) could not be read: see those lines in the log", file=sys.stderr)
    return 0 if queued == len(jobs) and not unreadable else 1


if __name__ == "__main__":
    sys.exit(main())
