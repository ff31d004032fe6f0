"""The stand-in's state and its control endpoints under /_sim (no auth, no faults).

GET/PUT /_sim/faults   the fault config (PUT replaces the fields given; 400 if invalid)
GET /_sim/stats        counters of API requests and notes per patient
GET /_sim/requests     the last N API requests (?limit=N, default 100, at most 1000)
POST /_sim/reset       seed data, zero counters, request index k = 0, start-up faults
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from local.hosp_standin.api import ApiResponse
from local.hosp_standin.faults import FaultConfig, FaultConfigError, FaultState
from local.hosp_standin.stats import REQUEST_LOG_SIZE, Stats
from local.hosp_standin.store import Store

DEFAULT_REQUESTS_LIMIT = 100


class StandIn:
    """Everything a running stand-in holds: records, faults and counters."""

    def __init__(self, faults: FaultConfig) -> None:
        self.store = Store()
        self.faults = FaultState(faults)
        self.stats = Stats()

    def reset(self) -> None:
        """What POST /_sim/reset does: back to the state of a fresh start."""
        self.faults.reset()
        self.store.reset()
        self.stats.reset()


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    return ApiResponse(status, {"error": message}, headers)


def _put_faults(state: StandIn, body: bytes) -> ApiResponse:
    try:
        changes: Any = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _error(400, f"request body is not valid JSON: {error}")
    try:
        return ApiResponse(200, state.faults.update(changes).to_json())
    except FaultConfigError as error:
        return _error(400, str(error))


def _requests(state: StandIn, query: Mapping[str, list[str]]) -> ApiResponse:
    text = query.get("limit", [str(DEFAULT_REQUESTS_LIMIT)])[0]
    if not text.isdigit() or not 1 <= int(text) <= REQUEST_LOG_SIZE:
        return _error(400, f"limit must be an integer in 1..{REQUEST_LOG_SIZE}")
    return ApiResponse(200, state.stats.recent(int(text)))


def handle(state: StandIn, method: str, path: str, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    """Answer a /_sim request. HEAD is answered as GET by the HTTP layer."""
    method = "GET" if method == "HEAD" else method
    path = path.rstrip("/")
    allowed = {
        "/_sim/faults": ("GET", "PUT"),
        "/_sim/stats": ("GET",),
        "/_sim/requests": ("GET",),
        "/_sim/reset": ("POST",),
    }.get(path)
    if allowed is None:
        return _error(404, f"no such control endpoint: {path}")
    if method not in allowed:
        return _error(405, f"{method} is not allowed on {path}", (("Allow", ", ".join(allowed)),))
    if path == "/_sim/faults":
        return ApiResponse(200, state.faults.config.to_json()) if method == "GET" else _put_faults(state, body)
    if path == "/_sim/stats":
        return ApiResponse(200, state.stats.snapshot(state.store.notes_by_patient()))
    if path == "/_sim/requests":
        return _requests(state, query)
    state.reset()
    return ApiResponse(200, {"status": "reset"})
