"""The stand-in's state and its control endpoints under /_sim (no auth, no faults).

GET/PUT /_sim/faults   the fault config (PUT replaces the fields given; 400 if invalid)
DELETE /_sim/faults    every fault off (also the start-up ones); records and counters kept
GET /_sim/stats        counters of API requests and notes per patient
GET /_sim/requests     the last N API requests (?limit=N, default 100, at most
                       stats.REQUEST_LOG_SIZE: the size of the log)
POST /_sim/reset       seed data, zero counters, request index k = 0, start-up faults
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from local.hosp_standin.api import ApiResponse
from local.hosp_standin.faults import FaultConfig, FaultConfigError, FaultState
from local.hosp_standin.parsing import BadJson, decimal, json_value
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


def handle(state: StandIn, method: str, path: str, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    """Answer a /_sim request. HEAD is answered as GET by the HTTP layer."""
    router = _ROUTER.bind("standin")
    try:
        endpoint = router.match(path, method)[0]
    except NotFound:
        return _error(404, f"no such control endpoint: {path}")
    except MethodNotAllowed as wrong_method:
        allowed = ", ".join(sorted(wrong_method.valid_methods or ()))
        return _error(405, f"{method} is not allowed on {path}", (("Allow", allowed),))
    return _ENDPOINTS[endpoint](state, query, body)


def _get_faults(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    return ApiResponse(200, state.faults.config.to_json())


def _put_faults(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    try:
        changes = json_value(body) if body.strip() else {}
    except BadJson as error:
        return _error(400, f"request body is {error}")
    try:
        return ApiResponse(200, state.faults.update(changes).to_json())
    except FaultConfigError as error:
        return _error(400, str(error))


def _clear_faults(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    return ApiResponse(200, state.faults.clear().to_json())


def _stats(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    return ApiResponse(200, state.stats.snapshot(state.store.notes_by_patient()))


def _requests(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    limit = decimal(query.get("limit", [str(DEFAULT_REQUESTS_LIMIT)])[0])
    if limit is None or not 1 <= limit <= REQUEST_LOG_SIZE:
        return _error(400, f"limit must be an integer in 1..{REQUEST_LOG_SIZE}")
    return ApiResponse(200, state.stats.recent(limit))


def _reset(state: StandIn, query: Mapping[str, list[str]], body: bytes) -> ApiResponse:
    state.reset()
    return ApiResponse(200, {"status": "reset"})


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    return ApiResponse(status, {"error": message}, headers)


Endpoint = Callable[[StandIn, Mapping[str, list[str]], bytes], ApiResponse]

_ENDPOINTS: dict[str, Endpoint] = {
    "get_faults": _get_faults,
    "put_faults": _put_faults,
    "clear_faults": _clear_faults,
    "stats": _stats,
    "requests": _requests,
    "reset": _reset,
}

# strict_slashes off: /_sim/stats/ is /_sim/stats. Werkzeug adds HEAD to GET rules.
_ROUTER = Map(
    [
        Rule("/_sim/faults", methods=["GET"], endpoint="get_faults"),
        Rule("/_sim/faults", methods=["PUT"], endpoint="put_faults"),
        Rule("/_sim/faults", methods=["DELETE"], endpoint="clear_faults"),
        Rule("/_sim/stats", methods=["GET"], endpoint="stats"),
        Rule("/_sim/requests", methods=["GET"], endpoint="requests"),
        Rule("/_sim/reset", methods=["POST"], endpoint="reset"),
    ],
    strict_slashes=False,
    merge_slashes=False,
)
