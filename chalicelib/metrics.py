"""Metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

CloudWatch turns each such log line into a metric point, so the Lambdas need
no network call and no cloudwatch:PutMetricData permission to emit one, and
a metric is never lost because a network was down. Locally the lines are
printed like every other log line. Namespace HospReliability, dimension
Stage; the names are the constants below (infra/notes/queues.yaml alarms on
some of them).
"""

from __future__ import annotations

import time
from typing import Any

from chalicelib import config, logs

NAMESPACE = "HospReliability"

NOTE_HANDOFFS_RECEIVED = "NoteHandoffsReceived"  # the proxy's hand-offs of HOSP's answers (note_intake.py)
NOTE_HANDOFFS_REFUSED = "NoteHandoffsRefused"  # hand-offs the intake could not read: no note: alarm
NOTE_JOBS_QUEUED = "NoteJobsQueued"
NOTE_JOBS_NOT_QUEUED = "NoteJobsNotQueued"  # a note may be lost: alarm
NOTES_WRITTEN = "NotesWritten"
NOTES_ALREADY_PRESENT = "NotesAlreadyPresent"
NOTE_JOBS_DEAD_LETTERED = "NoteJobsDeadLettered"
NOTE_WRITE_TRANSIENT_FAILURES = "NoteWriteTransientFailures"
NOTE_WORKER_MISCONFIGURED = "NoteWorkerMisconfigured"  # jobs wait until an operator acts: alarm
AUDIT_EXPORTS_STARTED = "AuditExportsStarted"
AUDIT_EXPORTS_DELIVERED = "AuditExportsDelivered"
AUDIT_REFUSALS = "AuditRefusals"  # 401 and 403 answers of /audit


def emit(name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
    """One metric point; `properties` are searchable in the log line, not dimensions."""
    stage = config.stage()
    logs.write_line(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {"Namespace": NAMESPACE, "Dimensions": [["Stage"]], "Metrics": [{"Name": name, "Unit": unit}]}
                ],
            },
            "Stage": stage,
            name: value,
            **properties,
        }
    )
