"""Counters and the recent-request log behind GET /_sim/stats and GET /_sim/requests.

Only API requests are counted (never /_sim). The log keeps the user name of Basic
auth but never the password nor the Authorization header, like the proxy's own logs.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

from local.hosp_standin.faults import Outcome
from local.hosp_standin.store import timestamp

# How many recent API requests GET /_sim/requests can return.
REQUEST_LOG_SIZE = 1000


class Stats:
    """Thread-safe counters of API requests and a bounded log of the latest ones."""

    def __init__(self, log_size: int = REQUEST_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._log_size = log_size
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_method: Counter[str] = Counter()
            self._by_route: Counter[str] = Counter()
            self._by_outcome: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._log: deque[dict[str, Any]] = deque(maxlen=self._log_size)

    def record_arrival(
        self,
        *,
        index: int,
        method: str,
        path: str,
        route: str,
        user: str | None,
        request_id: str | None,
        patient_id: str | None,
        outcome: Outcome,
        client_port: int | None = None,
    ) -> dict[str, Any]:
        """Count a request when it arrives; returns its log entry for `record_status`."""
        entry: dict[str, Any] = {
            "index": index,
            "received_at": timestamp(),
            "method": method,
            "path": path,
            "route": route,
            "user": user,
            "x_request_id": request_id,
            "x_patient_id": patient_id,
            "client_port": client_port,  # the same port twice: one kept-alive connection
            "outcome": outcome.label,
            "delay_ms": outcome.delay_ms,
            "status": None,  # filled in once answered; stays null for a reset
        }
        with self._lock:
            self._total += 1
            self._by_method[method] += 1
            self._by_route[route] += 1
            self._by_outcome[outcome.label] += 1
            self._log.append(entry)
        return entry

    def record_status(self, entry: dict[str, Any], status: int | None) -> None:
        """The HTTP status the request was answered with (None: the connection was reset)."""
        with self._lock:
            entry["status"] = status
            self._by_status["reset" if status is None else str(status)] += 1

    def snapshot(self, notes_by_patient: dict[int, int]) -> dict[str, Any]:
        """The JSON of GET /_sim/stats."""
        with self._lock:
            return {
                "total": self._total,
                "by_method": dict(self._by_method),
                "by_route": dict(self._by_route),
                "by_outcome": dict(self._by_outcome),
                "by_status": dict(self._by_status),
                "notes_by_patient": {str(k): v for k, v in sorted(notes_by_patient.items())},
            }

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` API requests, oldest first."""
        with self._lock:
            entries = list(self._log)[-limit:] if limit > 0 else []
            return [dict(e) for e in entries]
