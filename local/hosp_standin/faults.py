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

import dataclasses
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Keys of "rates", in the order their slices are laid out on [0, 1).
RATE_KEYS: tuple[str, ...] = ("500", "502", "503", "504", "reset")
INJECTED_STATUSES: frozenset[str] = frozenset({"500", "502", "503", "504"})
COMMIT_FAIL_MODES: tuple[str, ...] = ("502", "reset")
WRITE_METHODS: frozenset[str] = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A bound on slow answers: long enough to model HOSP's 2-20 s, short enough that a
# typo cannot hang a test run for hours.
MAX_DELAY_MS = 120_000
# Floating-point slack for "rates sum to at most 1" (0.1 + 0.2 + 0.7 is 1.0000000000000002).
_RATE_SUM_SLACK = 1e-9
_TOP_LEVEL_KEYS = ("seed", "rates", "slow", "commit_then_fail", "outage", "script")


class FaultConfigError(ValueError):
    """A fault configuration (or an update to one) is invalid; the message says why."""


@dataclass(frozen=True)
class SlowConfig:
    rate: float = 0.0
    min_ms: int = 2000
    max_ms: int = 20000


@dataclass(frozen=True)
class CommitThenFailConfig:
    rate: float = 0.0
    mode: str = "502"  # one of COMMIT_FAIL_MODES


def _zero_rates() -> dict[str, float]:
    return dict.fromkeys(RATE_KEYS, 0.0)


@dataclass(frozen=True)
class FaultConfig:
    """The effective fault configuration; build and change it with `apply_update`."""

    seed: int = 1
    rates: dict[str, float] = field(default_factory=_zero_rates)
    slow: SlowConfig = SlowConfig()
    commit_then_fail: CommitThenFailConfig = CommitThenFailConfig()
    outage: bool = False
    script: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of GET /_sim/faults (and what PUT accepts)."""
        return {
            "seed": self.seed,
            "rates": {key: self.rates[key] for key in RATE_KEYS},
            "slow": dataclasses.asdict(self.slow),
            "commit_then_fail": dataclasses.asdict(self.commit_then_fail),
            "outage": self.outage,
            "script": list(self.script),
        }


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
        raise FaultConfigError(f"script entries must be strings, got {entry!r}")
    if entry == "ok":
        return OK
    if entry in INJECTED_STATUSES or entry == "reset":
        return Outcome(entry)
    kind, _, argument = entry.partition(":")
    if kind == "slow" and argument.isdigit() and int(argument) <= MAX_DELAY_MS:
        return Outcome("slow", delay_ms=int(argument))
    if kind == "commit_then_fail" and argument in COMMIT_FAIL_MODES:
        return Outcome("commit_then_fail", mode=argument)
    raise FaultConfigError(
        f"bad script entry {entry!r}: expected ok, 500, 502, 503, 504, reset, "
        f"slow:MS (0..{MAX_DELAY_MS}), commit_then_fail:502 or commit_then_fail:reset"
    )


# --- validation and updates -----------------------------------------------------------


def _probability(value: object, name: str) -> float:
    # bool is an int in Python; "rate": true is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise FaultConfigError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def _delay(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELAY_MS:
        raise FaultConfigError(f"{name} must be an integer of milliseconds in 0..{MAX_DELAY_MS}, got {value!r}")
    return value


def _object(value: object, name: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise FaultConfigError(f"{name} must be a JSON object, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise FaultConfigError(f"unknown key(s) in {name}: {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    return value


def _update_rates(current: dict[str, float], given: object) -> dict[str, float]:
    rates = dict(current)
    for key, value in _object(given, "rates", RATE_KEYS).items():
        rates[key] = _probability(value, f"rates.{key}")
    return rates


def _update_slow(current: SlowConfig, given: object) -> SlowConfig:
    fields = _object(given, "slow", ("rate", "min_ms", "max_ms"))
    return SlowConfig(
        rate=_probability(fields["rate"], "slow.rate") if "rate" in fields else current.rate,
        min_ms=_delay(fields["min_ms"], "slow.min_ms") if "min_ms" in fields else current.min_ms,
        max_ms=_delay(fields["max_ms"], "slow.max_ms") if "max_ms" in fields else current.max_ms,
    )


def _update_commit_then_fail(current: CommitThenFailConfig, given: object) -> CommitThenFailConfig:
    fields = _object(given, "commit_then_fail", ("rate", "mode"))
    mode = fields.get("mode", current.mode)
    if mode not in COMMIT_FAIL_MODES:
        raise FaultConfigError(f"commit_then_fail.mode must be one of {', '.join(COMMIT_FAIL_MODES)}, got {mode!r}")
    rate = _probability(fields["rate"], "commit_then_fail.rate") if "rate" in fields else current.rate
    return CommitThenFailConfig(rate=rate, mode=str(mode))


def _script(given: object) -> tuple[str, ...]:
    if not isinstance(given, list):
        raise FaultConfigError(f"script must be a list of outcomes, got {given!r}")
    for entry in given:
        parse_script_entry(entry)  # raises on a bad entry
    return tuple(given)


def apply_update(config: FaultConfig, update: object) -> FaultConfig:
    """A new config: `config` with the fields given in `update` replaced, after validation.

    Fields are replaced one by one, also inside rates, slow and commit_then_fail:
    {"rates": {"503": 0.1}} changes the 503 rate and keeps the others. A given
    "script" replaces the whole remaining script. Raises FaultConfigError.
    """
    changes = _object(update, "the fault config", _TOP_LEVEL_KEYS)
    seed = changes.get("seed", config.seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FaultConfigError(f"seed must be an integer, got {seed!r}")
    outage = changes.get("outage", config.outage)
    if not isinstance(outage, bool):
        raise FaultConfigError(f"outage must be true or false, got {outage!r}")
    rates = _update_rates(config.rates, changes["rates"]) if "rates" in changes else config.rates
    slow = _update_slow(config.slow, changes["slow"]) if "slow" in changes else config.slow
    if slow.min_ms > slow.max_ms:
        raise FaultConfigError(f"slow.min_ms ({slow.min_ms}) must not exceed slow.max_ms ({slow.max_ms})")
    commit_fail = config.commit_then_fail
    if "commit_then_fail" in changes:
        commit_fail = _update_commit_then_fail(commit_fail, changes["commit_then_fail"])
    script = _script(changes["script"]) if "script" in changes else config.script

    total = sum(rates.values()) + slow.rate + commit_fail.rate
    if total > 1.0 + _RATE_SUM_SLACK:
        raise FaultConfigError(
            f"fault rates sum to {total:g}, more than 1 (rates, slow.rate and "
            "commit_then_fail.rate share one draw per request)"
        )
    return FaultConfig(seed, rates, slow, commit_fail, outage, script)


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
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FaultConfigError(f"fault config is not valid JSON: {error}") from None


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
                self._config = dataclasses.replace(config, script=config.script[1:])
                return k, parse_script_entry(config.script[0]).for_method(method)
            return k, outcome_for(config.seed, k, config).for_method(method)
