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
3. Otherwise `outcome_for(seed, k, config)`, a pure function of the seed, the index and
   the rates: one uniform draw u in [0, 1) from the first 8 bytes of
   sha256(f"{seed}:{k}"), compared against the cumulative rates in the fixed order
   500, 502, 503, 504, reset, slow, commit_then_fail; a slow answer's delay comes from
   the next 8 bytes, uniformly in [min_ms, max_ms].

No shared random generator is involved, so a benchmark that knows the seed, the
config and how many requests reached the stand-in can recompute the exact faults, and
from them the "realized floor" (what a perfect N-try proxy would still fail).

commit_then_fail applies to writes only (POST, PUT, PATCH, DELETE): HOSP performs the
write and then the answer fails (502, or a connection reset). On a read, a
commit_then_fail draw (or script entry) resolves to "ok"; `Outcome.for_method` does that.

Rates
-----
The five fault rates, slow.rate and commit_then_fail.rate are all slices of the same
draw, so together they must not exceed 1.
"""

from __future__ import annotations

import hashlib
import reprlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
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


def _script_entries(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_SCRIPT_ENTRIES:
        raise PydanticCustomError("fault_field", f"must be a list of at most {MAX_SCRIPT_ENTRIES} outcomes")
    for entry in value:
        parse_script_entry(entry)  # raises FaultConfigError, a ValueError, on a bad entry
    return tuple(value)


Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), _expecting("a number between 0 and 1")]
DelayMs = Annotated[int, Field(ge=0, le=MAX_DELAY_MS), _expecting(f"an integer of milliseconds in 0..{MAX_DELAY_MS}")]


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


class FaultConfig(_Strict):
    """The effective fault configuration, in the JSON shape of /_sim/faults.

    Build and change it with `apply_update`, which validates partial updates.
    """

    seed: Annotated[int, _expecting("an integer")] = 1
    rates: dict[RateKey, Rate] = Field(default_factory=_zero_rates)
    slow: SlowConfig = SlowConfig()
    commit_then_fail: CommitThenFailConfig = CommitThenFailConfig()
    outage: Annotated[bool, _expecting("true or false")] = False
    script: Annotated[tuple[str, ...], BeforeValidator(_script_entries)] = ()

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

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of GET /_sim/faults (and what PUT accepts)."""
        shape = self.model_dump(mode="json")
        shape["script"] = list(self.script)
        return dict(shape)


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


def outcome_for(seed: int, k: int, config: FaultConfig) -> Outcome:
    """The random outcome of the k-th API request: a pure function of its arguments.

    Only config's rates, slow and commit_then_fail settings are read (not its seed,
    outage or script: see the module docstring for how those take precedence).
    """
    digest = hashlib.sha256(f"{seed}:{k}".encode()).digest()
    draw = _unit_interval(digest[:8])
    edge = 0.0
    for key in RATE_KEYS:
        edge += config.rates[key]
        if draw < edge:
            return Outcome(key)
    edge += config.slow.rate
    if draw < edge:
        span = config.slow.max_ms - config.slow.min_ms
        # A second, independent draw picks the delay; int(x * (span + 1)) <= span as x < 1.
        return Outcome("slow", delay_ms=config.slow.min_ms + int(_unit_interval(digest[8:16]) * (span + 1)))
    edge += config.commit_then_fail.rate
    if draw < edge:
        return Outcome("commit_then_fail", mode=config.commit_then_fail.mode)
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
    {"rates": {"503": 0.1}} changes the 503 rate and keeps the others. A given
    "script" replaces the whole remaining script. Raises FaultConfigError, whose
    message names every field in error.
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


# The keys each object of the config takes, for "unknown key" messages.
_ALLOWED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(FaultConfig.model_fields),
    ("rates",): RATE_KEYS,
    ("slow",): tuple(SlowConfig.model_fields),
    ("commit_then_fail",): tuple(CommitThenFailConfig.model_fields),
}


def _explained(error: ValidationError) -> list[str]:
    """One sentence per problem, naming the field as a dotted path (rates.503)."""
    details = [(tuple(str(part) for part in detail["loc"]), detail) for detail in error.errors()]
    unknown: dict[tuple[str, ...], list[str]] = {}
    for loc, detail in details:
        if detail["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
        elif loc[-1:] == ("[key]",):  # a key of rates outside RATE_KEYS
            unknown.setdefault(loc[:-2], []).append(loc[-2])
    problems = []
    for where, keys in unknown.items():
        name, allowed = ".".join(where) or "the fault config", ", ".join(_ALLOWED_KEYS.get(where, ()))
        problems.append(f"unknown key(s) in {name}: {', '.join(keys)} (allowed: {allowed})")
    for loc, detail in details:
        # The value of an unknown key is not worth a second message.
        if not any(loc[: len(where) + 1] == (*where, key) for where, keys in unknown.items() for key in keys):
            problems.append(_problem(detail, ".".join(loc) or "the fault config"))
    return problems


def _problem(detail: ErrorDetails, name: str) -> str:
    if detail["type"] == "value_error":  # raised by the checks above, as a whole sentence
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    if detail["type"] == "model_type":
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

    def reset(self) -> None:
        """Back to the start-up config (and its script, normally empty), k back to 0."""
        with self._lock:
            self._config = self._startup
            self._next_index = 0

    def next_outcome(self, method: str) -> tuple[int, Outcome]:
        """Take the next index k and decide the outcome of that request."""
        with self._lock:
            k = self._next_index
            self._next_index += 1
            config = self._config
            if config.outage:
                return k, OUTAGE
            if config.script:
                self._config = config.model_copy(update={"script": config.script[1:]})
                return k, parse_script_entry(config.script[0]).for_method(method)
            return k, outcome_for(config.seed, k, config).for_method(method)
