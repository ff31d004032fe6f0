"""Fault injection for the HOSP stand-in: the configuration, its validation, and the outcomes.

Which outcome a request gets
----------------------------
Every API request (any path outside /_sim/) takes the next index k in arrival order,
counting from 0 at start-up and after POST /_sim/reset. Its outcome is, in this order:

1. "outage" (answered 503 at once) while the config says `"outage": true`. The script
   is not consumed, but k still advances.
2. Otherwise the next entry of `script`, if any. Scripted outcomes consume an index k
   like any other request, so after a script of n entries the random faults resume at
   k = n (as if the scripted requests had been drawn too).
3. Otherwise `outcome_for(seed, k, config, route)`, a pure function of the seed, the
   index, the rates and the request's route: one uniform draw u in [0, 1) from the
   first 8 bytes of sha256(f"{seed}:{k}"), compared against the cumulative rates in
   the fixed order 500, 502, 503, 504, reset, slow, commit_then_fail; a slow answer's
   delay comes from the next 8 bytes, uniformly in [min_ms, max_ms]. The rates are
   those of the route's entry in `routes` if the config has one, else the top-level
   ones (see "Per-route rates" below).

No shared random generator is involved, so a benchmark that knows the seed, the
config and how many requests reached the stand-in (and, with per-route rates, the
route of each, which /_sim/requests logs) can recompute the exact faults, and from
them the "realized floor" (what a perfect N-try proxy would still fail).

commit_then_fail applies to writes only (POST, PUT, PATCH, DELETE): HOSP performs the
write and then the answer fails (502, or a connection reset). On a read, a
commit_then_fail draw (or script entry) resolves to "ok"; `Outcome.for_method` does that.

Rates
-----
The five fault rates, slow.rate and commit_then_fail.rate are all slices of the same
draw, so together they must not exceed 1.

Per-route rates
---------------
`routes` maps a route name, exactly as /_sim/stats names it ("POST /notes",
"POST /patients/{id}/screen": `Route.name` in api.py), to an entry of its own
`rates`, `slow` and `commit_then_fail`, shaped and checked like the top level's (its
rates too must sum to at most 1). A request of a route with an entry draws with the
entry's rates *instead of* the top-level ones; what the entry leaves out is zero
(or the default delay range and mode), not inherited, so `{}` means "never fails".
Every other request draws with the top-level rates: unknown paths ("unmatched"), a
method a path does not take (405), and HEAD, which stats name "HEAD /notes" and which
no route is named. The draw itself does not change: u is still the k-th draw of the
seed, so per-route rates keep results reproducible and only change which slice of
[0, 1) a given u falls in. Script and outage come first, as above.

This lets a benchmark say "20% of POST /notes fail, half of them after the commit;
5% of GET /notes fail; screens never fail" in one config. An update merges route
entries field by field like everything else; `"POST /notes": null` removes that
route's entry.
"""

from __future__ import annotations

import hashlib
import reprlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from local.hosp_standin.api import ROUTES
from local.hosp_standin.parsing import BadJson, decimal, json_value

RateKey = Literal["500", "502", "503", "504", "reset"]
# Keys of "rates", in the order their slices are laid out on [0, 1).
RATE_KEYS: tuple[RateKey, ...] = ("500", "502", "503", "504", "reset")
INJECTED_STATUSES: frozenset[str] = frozenset({"500", "502", "503", "504"})
COMMIT_FAIL_MODES: tuple[str, ...] = ("502", "reset")
WRITE_METHODS: frozenset[str] = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A bound on slow answers: long enough to model HOSP's 2-20 s, short enough that a
# typo cannot hang a test run for hours.
MAX_DELAY_MS = 120_000
# Scripts drive tests, a few entries each. The bound keeps a body of millions of
# entries from costing seconds to validate and consume.
MAX_SCRIPT_ENTRIES = 10_000
# Floating-point slack for "rates sum to at most 1" (0.1 + 0.2 + 0.7 is 1.0000000000000002).
_RATE_SUM_SLACK = 1e-9
# The keys "routes" takes: the names /_sim/stats gives the routes, in ROUTES order.
ROUTE_NAMES: tuple[str, ...] = tuple(route.name for route in ROUTES)


class FaultConfigError(ValueError):
    """A fault configuration (or an update to one) is invalid; the message says why."""


# --- the configuration: its JSON shape, defaults and rules ----------------------------


def _expecting(description: str) -> WrapValidator:
    """Any validation error of the wrapped value reads "must be <description>".

    One sentence per field, naming what it takes, reads better in a 400 than
    pydantic's "Input should be ..." per failed constraint.
    """

    def check(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("fault_field", "must be {expected}", {"expected": description}) from None

    return WrapValidator(check)


def _known_route(name: str) -> str:
    if name not in ROUTE_NAMES:
        # Reported as an unknown key of routes, with the valid names (see _explained).
        raise PydanticCustomError("unknown_route", "unknown route")
    return name


def _script_entries(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_SCRIPT_ENTRIES:
        raise PydanticCustomError("fault_field", f"must be a list of at most {MAX_SCRIPT_ENTRIES} outcomes")
    for entry in value:
        parse_script_entry(entry)  # raises FaultConfigError, a ValueError, on a bad entry
    return tuple(value)


Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), _expecting("a number between 0 and 1")]
DelayMs = Annotated[int, Field(ge=0, le=MAX_DELAY_MS), _expecting(f"an integer of milliseconds in 0..{MAX_DELAY_MS}")]
RouteName = Annotated[str, AfterValidator(_known_route)]


class _Strict(BaseModel):
    # strict: JSON true is not the rate 1.0 and "0.1" is not a number; extra keys are
    # typos (a misspelt "ratse" would otherwise silently configure nothing).
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SlowConfig(_Strict):
    rate: Rate = 0.0
    min_ms: DelayMs = 2000
    max_ms: DelayMs = 20000

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_ms > self.max_ms:
            raise ValueError(f"slow.min_ms ({self.min_ms}) must not exceed slow.max_ms ({self.max_ms})")
        return self


class CommitThenFailConfig(_Strict):
    rate: Rate = 0.0
    mode: Annotated[Literal["502", "reset"], _expecting(f"one of {', '.join(COMMIT_FAIL_MODES)}")] = "502"


def _zero_rates() -> dict[RateKey, float]:
    return dict.fromkeys(RATE_KEYS, 0.0)


class FaultRates(_Strict):
    """The slices of one draw: the top level of the config, or one entry of its routes.

    One class for both, so that a route's entry takes exactly the top level's shape
    and checks, and `outcome_for` reads either the same way.
    """

    rates: dict[RateKey, Rate] = Field(default_factory=_zero_rates)
    slow: SlowConfig = SlowConfig()
    commit_then_fail: CommitThenFailConfig = CommitThenFailConfig()

    @field_validator("rates", mode="after")
    @classmethod
    def _every_rate(cls, rates: dict[RateKey, float]) -> dict[RateKey, float]:
        # All five keys, in slice order, whatever subset was given.
        return {key: rates.get(key, 0.0) for key in RATE_KEYS}

    @model_validator(mode="after")
    def _one_draw(self) -> Self:
        total = sum(self.rates.values()) + self.slow.rate + self.commit_then_fail.rate
        if total > 1.0 + _RATE_SUM_SLACK:
            raise ValueError(
                f"fault rates sum to {total:g}, more than 1 (rates, slow.rate and "
                "commit_then_fail.rate share one draw per request)"
            )
        return self


class FaultConfig(FaultRates):
    """The effective fault configuration, in the JSON shape of /_sim/faults.

    Its own rates, slow and commit_then_fail (inherited) apply to every request
    whose route has no entry in `routes`. Build and change it with `apply_update`,
    which validates partial updates.
    """

    seed: Annotated[int, _expecting("an integer")] = 1
    outage: Annotated[bool, _expecting("true or false")] = False
    script: Annotated[tuple[str, ...], BeforeValidator(_script_entries)] = ()
    # null as an entry is how an update removes a route's entry; _without_removed
    # drops those, so the effective config never holds one.
    routes: dict[RouteName, FaultRates | None] = Field(default_factory=dict)

    @field_validator("routes", mode="after")
    @classmethod
    def _without_removed(cls, routes: dict[str, FaultRates | None]) -> dict[str, FaultRates | None]:
        # In ROUTES order, so that GET /_sim/faults lists them the same way every time.
        return {name: routes[name] for name in ROUTE_NAMES if routes.get(name) is not None}

    def rates_for(self, route: str | None) -> FaultRates:
        """The slices a request of `route` (named as /_sim/stats names it) draws with."""
        entry = self.routes.get(route) if route is not None else None
        return entry if entry is not None else self

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of GET /_sim/faults (and what PUT accepts)."""
        shape = self.model_dump(mode="json")
        shape["script"] = list(self.script)
        # The seed first, as the document shows it: it governs everything below it.
        return {"seed": shape.pop("seed"), **shape}


DEFAULT_CONFIG = FaultConfig()


@dataclass(frozen=True)
class Outcome:
    """What the stand-in does with one API request.

    kind is "ok", "500", "502", "503", "504", "reset", "slow", "commit_then_fail" or
    "outage". delay_ms is set for "slow"; mode ("502" or "reset") for "commit_then_fail".
    """

    kind: str
    delay_ms: int = 0
    mode: str = ""

    @property
    def label(self) -> str:
        """The name used in /_sim/stats and /_sim/requests, e.g. "503", "commit_then_fail:502"."""
        if self.kind == "commit_then_fail":
            return f"commit_then_fail:{self.mode}"
        return self.kind

    @property
    def is_failure(self) -> bool:
        """Whether the client is refused an answer (a slow answer still succeeds, late)."""
        return self.kind not in ("ok", "slow")

    def for_method(self, method: str) -> Outcome:
        """commit_then_fail only exists for writes; on a read it resolves to ok."""
        if self.kind == "commit_then_fail" and method.upper() not in WRITE_METHODS:
            return OK
        return self


OK = Outcome("ok")
OUTAGE = Outcome("outage")


def _unit_interval(chunk: bytes) -> float:
    """8 bytes of a hash as a float in [0, 1)."""
    return int.from_bytes(chunk, "big") / 2.0**64


def outcome_for(seed: int, k: int, config: FaultConfig, route: str | None = None) -> Outcome:
    """The random outcome of the k-th API request: a pure function of its arguments.

    route is the request's route as /_sim/stats and /_sim/requests name it ("POST
    /notes"); the rates of its entry in config.routes apply, if it has one, else the
    top-level ones. Only rates, slow, commit_then_fail and routes are read (not the
    config's seed, outage or script: see the module docstring for how those take
    precedence).
    """
    slices = config.rates_for(route)
    digest = hashlib.sha256(f"{seed}:{k}".encode()).digest()
    draw = _unit_interval(digest[:8])
    edge = 0.0
    for key in RATE_KEYS:
        edge += slices.rates[key]
        if draw < edge:
            return Outcome(key)
    edge += slices.slow.rate
    if draw < edge:
        span = slices.slow.max_ms - slices.slow.min_ms
        # A second, independent draw picks the delay; int(x * (span + 1)) <= span as x < 1.
        return Outcome("slow", delay_ms=slices.slow.min_ms + int(_unit_interval(digest[8:16]) * (span + 1)))
    edge += slices.commit_then_fail.rate
    if draw < edge:
        return Outcome("commit_then_fail", mode=slices.commit_then_fail.mode)
    return OK


# --- script entries -----------------------------------------------------------------


def parse_script_entry(entry: object) -> Outcome:
    """One script entry ("ok", "503", "reset", "slow:1500", "commit_then_fail:502", ...)."""
    if not isinstance(entry, str):
        raise FaultConfigError(f"script entries must be strings, got {_shown(entry)}")
    if entry == "ok":
        return OK
    if entry in INJECTED_STATUSES or entry == "reset":
        return Outcome(entry)
    kind, _, argument = entry.partition(":")
    delay_ms = decimal(argument)
    if kind == "slow" and delay_ms is not None and delay_ms <= MAX_DELAY_MS:
        return Outcome("slow", delay_ms=delay_ms)
    if kind == "commit_then_fail" and argument in COMMIT_FAIL_MODES:
        return Outcome("commit_then_fail", mode=argument)
    raise FaultConfigError(
        f"bad script entry {_shown(entry)}: expected ok, 500, 502, 503, 504, reset, "
        f"slow:MS (0..{MAX_DELAY_MS}), commit_then_fail:502 or commit_then_fail:reset"
    )


# --- updates and their errors ----------------------------------------------------------


def apply_update(config: FaultConfig, update: object) -> FaultConfig:
    """A new config: `config` with the fields given in `update` replaced, after validation.

    Fields are replaced one by one, also inside rates, slow and commit_then_fail:
    {"rates": {"503": 0.1}} changes the 503 rate and keeps the others. The same
    holds in routes: a route's entry is created or changed field by field, and null
    removes it. A given "script" replaces the whole remaining script. Raises
    FaultConfigError, whose message names every field in error.
    """
    if not isinstance(update, Mapping):
        raise FaultConfigError(f"the fault config must be a JSON object, got {_shown(update)}")
    try:
        return FaultConfig.model_validate(_merged(config.to_json(), update))
    except ValidationError as error:
        raise FaultConfigError("; ".join(_explained(error))) from None


def _merged(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """current with the fields of update replaced, field by field inside objects."""
    merged = dict(current)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# The keys each object of the config takes, for "unknown key" messages; inside a
# route's entry, those of the same objects, and the entry itself takes FaultRates'.
_ALLOWED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(DEFAULT_CONFIG.to_json()),
    ("rates",): RATE_KEYS,
    ("slow",): tuple(SlowConfig.model_fields),
    ("commit_then_fail",): tuple(CommitThenFailConfig.model_fields),
}


def _explained(error: ValidationError) -> list[str]:
    """One sentence per problem, naming the field as a dotted path (rates.503, or
    routes["POST /notes"].rates.503 inside a route's entry)."""
    details = [(tuple(str(part) for part in detail["loc"]), detail) for detail in error.errors()]
    unknown: dict[tuple[str, ...], list[str]] = {}
    for loc, detail in details:
        if detail["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
        elif loc[-1:] == ("[key]",):  # a key of rates outside RATE_KEYS, of routes outside ROUTE_NAMES
            unknown.setdefault(loc[:-2], []).append(loc[-2])
    problems = [_unknown_keys(where, keys) for where, keys in unknown.items()]
    for loc, detail in details:
        # The value of an unknown key is not worth a second message.
        if not any(loc[: len(where) + 1] == (*where, key) for where, keys in unknown.items() for key in keys):
            problems.append(_problem(detail, loc))
    return problems


def _in_route(loc: tuple[str, ...]) -> bool:
    """Whether loc lies inside (or is) one entry of routes."""
    return loc[:1] == ("routes",) and len(loc) > 1


def _name(loc: tuple[str, ...]) -> str:
    if _in_route(loc):
        # Route names hold spaces and slashes: quoted, they stay readable as one key.
        return ".".join((f'routes["{loc[1]}"]', *loc[2:]))
    return ".".join(loc) or "the fault config"


def _unknown_keys(where: tuple[str, ...], keys: list[str]) -> str:
    if where == ("routes",):
        return (
            f"unknown route(s) in routes: {', '.join(_shown(key) for key in keys)}; "
            f"routes are named as /_sim/stats names them: {', '.join(ROUTE_NAMES)}"
        )
    if _in_route(where):
        allowed = _ALLOWED_KEYS.get(where[2:], ()) if where[2:] else tuple(FaultRates.model_fields)
    else:
        allowed = _ALLOWED_KEYS.get(where, ())
    return f"unknown key(s) in {_name(where)}: {', '.join(keys)} (allowed: {', '.join(allowed)})"


def _problem(detail: ErrorDetails, loc: tuple[str, ...]) -> str:
    name = _name(loc)
    if detail["type"] == "value_error":  # raised by the checks above, as a whole sentence
        sentence = str(detail.get("ctx", {}).get("error", detail["msg"]))
        # The sentence names fields from the top of an entry ("slow.min_ms"); say which.
        return f"{_name(loc[:2])}: {sentence}" if _in_route(loc) else sentence
    if detail["type"] in ("model_type", "dict_type"):
        return f"{name} must be a JSON object, got {_shown(detail['input'])}"
    # "fault_field" errors say "must be ...", pydantic's own say "Input should be ...".
    return f"{name} {detail['msg']}, got {_shown(detail['input'])}"


def _shown(value: object) -> str:
    """repr(value), cut short: an error message must not echo a large body back (and
    reprlib looks at the first few items only, however long a list is)."""
    return _SHORT_REPR.repr(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def parse_fault_flag(flag: str) -> dict[str, Any]:
    """A CLI `--fault KEY=VALUE` as a partial config for `apply_update`.

    503=0.1, reset=0.05 (any of RATE_KEYS); slow=RATE or slow=RATE:MIN_MS:MAX_MS;
    commit_then_fail=RATE or commit_then_fail=RATE:MODE; outage=true|false.
    Values are checked by apply_update, except for their syntax here.
    """
    key, sep, value = flag.partition("=")
    key, value = key.strip(), value.strip()
    try:
        if not sep:
            raise ValueError
        if key in RATE_KEYS:
            return {"rates": {key: float(value)}}
        if key == "slow":
            parts = value.split(":")
            if len(parts) == 1:
                return {"slow": {"rate": float(parts[0])}}
            if len(parts) == 3:
                return {"slow": {"rate": float(parts[0]), "min_ms": int(parts[1]), "max_ms": int(parts[2])}}
            raise ValueError
        if key == "commit_then_fail":
            rate, _, mode = value.partition(":")
            return {"commit_then_fail": {"rate": float(rate), **({"mode": mode} if mode else {})}}
        if key == "outage" and value.lower() in ("true", "false", "1", "0"):
            return {"outage": value.lower() in ("true", "1")}
    except ValueError:
        pass
    raise FaultConfigError(
        f"bad --fault {flag!r}: expected 500|502|503|504|reset=RATE, slow=RATE[:MIN_MS:MAX_MS], "
        "commit_then_fail=RATE[:502|reset] or outage=true|false"
    )


def load_config_text(text: str) -> object:
    """The JSON of a --faults argument: inline JSON, or @path to a JSON file."""
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as handle:
            text = handle.read()
    try:
        return json_value(text)
    except BadJson as error:
        raise FaultConfigError(f"fault config is {error}") from None


# --- the running state ------------------------------------------------------------------


class FaultState:
    """The live fault config of a server, its request index k and its remaining script.

    Thread-safe: handler threads call `next_outcome` concurrently, and the order in
    which they get the lock is the "arrival order" of the contract above.
    """

    def __init__(self, startup: FaultConfig = DEFAULT_CONFIG) -> None:
        self._lock = threading.Lock()
        self._startup = startup
        self._config = startup
        self._next_index = 0

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def update(self, changes: object) -> FaultConfig:
        """Apply a partial update (PUT /_sim/faults); k is left as it is."""
        with self._lock:
            self._config = apply_update(self._config, changes)
            return self._config

    def clear(self) -> FaultConfig:
        """Every fault off (DELETE /_sim/faults): no rate, outage, script or route; the seed and k stay."""
        with self._lock:
            self._config = DEFAULT_CONFIG.model_copy(update={"seed": self._config.seed})
            return self._config

    def reset(self) -> None:
        """Back to the start-up config (and its script, normally empty), k back to 0."""
        with self._lock:
            self._config = self._startup
            self._next_index = 0

    def next_outcome(self, method: str, route: str | None = None) -> tuple[int, Outcome]:
        """Take the next index k and decide the outcome of that request.

        route is the request's route as /_sim/stats names it, which picks its entry
        of the config's routes (None, or a name without an entry: the top level).
        """
        with self._lock:
            k = self._next_index
            self._next_index += 1
            config = self._config
            if config.outage:
                return k, OUTAGE
            if config.script:
                self._config = config.model_copy(update={"script": config.script[1:]})
                return k, parse_script_entry(config.script[0]).for_method(method)
            return k, outcome_for(config.seed, k, config, route).for_method(method)
