"""The HOSP stand-in's fault model: the pure outcome function, the script, validation."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from local.hosp_standin.faults import (
    DEFAULT_CONFIG,
    OK,
    ROUTE_NAMES,
    FaultConfig,
    FaultConfigError,
    FaultState,
    Outcome,
    apply_update,
    load_config_text,
    outcome_for,
    parse_fault_flag,
    parse_script_entry,
)

MIXED = apply_update(
    DEFAULT_CONFIG,
    {
        "rates": {"500": 0.05, "502": 0.05, "503": 0.10, "504": 0.05, "reset": 0.05},
        "slow": {"rate": 0.10, "min_ms": 100, "max_ms": 300},
        "commit_then_fail": {"rate": 0.10, "mode": "reset"},
    },
)
EXPECTED_SHARES = {
    "500": 0.05,
    "502": 0.05,
    "503": 0.10,
    "504": 0.05,
    "reset": 0.05,
    "slow": 0.10,
    "commit_then_fail:reset": 0.10,
    "ok": 0.50,
}


def test_outcome_for_is_a_pure_function_of_seed_index_and_rates() -> None:
    first = [outcome_for(3, k, MIXED) for k in range(2000)]
    # Drawing other indices and seeds in between must not change anything: no shared RNG.
    for seed in (1, 2):
        for k in range(500):
            outcome_for(seed, k, MIXED)
    again = [outcome_for(3, k, MIXED) for k in reversed(range(2000))][::-1]

    assert first == again
    # A different seed gives a different sequence of faults.
    assert [outcome_for(4, k, MIXED) for k in range(2000)] != first


def test_outcome_for_is_pinned_to_sha256_of_seed_and_index() -> None:
    # The documented recipe, recomputed here, is what a benchmark relies on.
    def recipe(seed: int, k: int) -> str:
        draw = int.from_bytes(hashlib.sha256(f"{seed}:{k}".encode()).digest()[:8], "big") / 2.0**64
        edge = 0.0
        for label, share in EXPECTED_SHARES.items():
            edge += share
            if draw < edge:
                return label
        return "ok"

    assert [outcome_for(9, k, MIXED).label for k in range(3000)] == [recipe(9, k) for k in range(3000)]


def test_outcome_rates_match_the_config_over_20000_draws() -> None:
    draws = 20_000
    counts = Counter(outcome_for(1, k, MIXED).label for k in range(draws))

    assert set(counts) == set(EXPECTED_SHARES)
    for label, share in EXPECTED_SHARES.items():
        expected = draws * share
        # Six standard deviations: a miss means a broken draw, not bad luck (and the
        # draws are fixed by the seed, so this cannot flake).
        bound = 6 * math.sqrt(draws * share * (1 - share))
        assert abs(counts[label] - expected) < bound, (label, counts[label], expected)


def test_slow_delays_are_uniform_within_the_configured_range() -> None:
    delays = [o.delay_ms for o in (outcome_for(1, k, MIXED) for k in range(20_000)) if o.kind == "slow"]

    assert min(delays) >= 100
    assert max(delays) <= 300
    # Both ends of the range are reached and the mean sits in the middle.
    assert min(delays) < 105
    assert max(delays) > 295
    assert 190 < sum(delays) / len(delays) < 210


def test_zero_rates_never_fault_and_a_full_rate_always_does() -> None:
    always_503 = apply_update(DEFAULT_CONFIG, {"rates": {"503": 1.0}})

    assert {outcome_for(1, k, DEFAULT_CONFIG) for k in range(5000)} == {OK}
    assert {outcome_for(1, k, always_503).label for k in range(5000)} == {"503"}


def test_commit_then_fail_applies_to_writes_only() -> None:
    outcome = Outcome("commit_then_fail", mode="502")

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert outcome.for_method(method) is outcome
    for method in ("GET", "HEAD"):
        assert outcome.for_method(method) == OK


def test_script_is_consumed_in_order_and_each_entry_takes_an_index() -> None:
    config = apply_update(MIXED, {"seed": 5, "script": ["503", "slow:1500", "commit_then_fail:502", "reset", "ok"]})
    state = FaultState(config)

    scripted = [state.next_outcome("POST") for _ in range(5)]
    after = [state.next_outcome("GET") for _ in range(50)]

    assert scripted == [
        (0, Outcome("503")),
        (1, Outcome("slow", delay_ms=1500)),
        (2, Outcome("commit_then_fail", mode="502")),
        (3, Outcome("reset")),
        (4, OK),
    ]
    assert state.config.script == ()
    # The random faults resume at k = 5, exactly as outcome_for computes them.
    assert after == [(k, outcome_for(5, k, config).for_method("GET")) for k in range(5, 55)]


def test_a_scripted_commit_then_fail_on_a_read_is_ok_and_still_consumed() -> None:
    state = FaultState(apply_update(DEFAULT_CONFIG, {"script": ["commit_then_fail:reset", "503"]}))

    assert state.next_outcome("GET") == (0, OK)
    assert state.next_outcome("POST") == (1, Outcome("503"))


def test_outage_answers_everything_and_keeps_the_script_for_later() -> None:
    state = FaultState(apply_update(DEFAULT_CONFIG, {"outage": True, "script": ["502"]}))

    assert [state.next_outcome("GET")[1].kind for _ in range(3)] == ["outage"] * 3
    state.update({"outage": False})
    assert state.next_outcome("GET") == (3, Outcome("502"))


def test_reset_restores_the_startup_config_and_index() -> None:
    startup = apply_update(DEFAULT_CONFIG, {"rates": {"502": 0.2}})
    state = FaultState(startup)
    state.update({"outage": True, "script": ["503"], "seed": 99})
    for _ in range(3):
        state.next_outcome("GET")

    state.reset()

    assert state.config == startup
    assert state.next_outcome("GET") == (0, outcome_for(1, 0, startup))


def test_updates_replace_only_the_fields_given() -> None:
    config = apply_update(DEFAULT_CONFIG, {"rates": {"reset": 0.1}, "slow": {"min_ms": 50, "max_ms": 60}})
    config = apply_update(config, {"rates": {"503": 0.2}, "slow": {"rate": 0.3}})

    assert config.rates == {"500": 0.0, "502": 0.0, "503": 0.2, "504": 0.0, "reset": 0.1}
    assert (config.slow.rate, config.slow.min_ms, config.slow.max_ms) == (0.3, 50, 60)
    assert config.commit_then_fail == DEFAULT_CONFIG.commit_then_fail


def test_the_json_shape_round_trips() -> None:
    config = apply_update(MIXED, {"seed": 42, "outage": True, "script": ["ok", "slow:5"]})
    shape = config.to_json()

    assert apply_update(DEFAULT_CONFIG, json.loads(json.dumps(shape))) == config
    assert shape["rates"] == {"500": 0.05, "502": 0.05, "503": 0.1, "504": 0.05, "reset": 0.05}
    assert shape["script"] == ["ok", "slow:5"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"rates": {"503": 0.6, "502": 0.5}}, "sum to 1.1"),
        ({"rates": {"503": 0.5}, "slow": {"rate": 0.3}, "commit_then_fail": {"rate": 0.3}}, "sum to 1.1"),
        ({"rates": {"404": 0.1}}, "unknown key(s) in rates: 404"),
        ({"rates": {"503": -0.1}}, "rates.503 must be a number between 0 and 1, got -0.1"),
        ({"rates": {"503": "0.1"}}, "rates.503 must be a number"),
        ({"rates": {"503": True}}, "rates.503 must be a number"),
        ({"slow": {"min_ms": 500, "max_ms": 100}}, "slow.min_ms (500) must not exceed slow.max_ms (100)"),
        ({"slow": {"max_ms": 1.5}}, "slow.max_ms must be an integer"),
        ({"commit_then_fail": {"mode": "503"}}, "commit_then_fail.mode must be one of 502, reset"),
        ({"outage": "yes"}, "outage must be true or false"),
        ({"seed": True}, "seed must be an integer"),
        ({"script": "503"}, "script must be a list"),
        ({"script": ["ok", "404"]}, "bad script entry '404'"),
        ({"script": ["slow:fast"]}, "bad script entry 'slow:fast'"),
        # Digits beyond ASCII pass str.isdigit() but are no delay.
        ({"script": ["slow:\u00b2"]}, "bad script entry 'slow:\u00b2'"),
        ({"script": ["slow:+5"]}, "bad script entry 'slow:+5'"),
        ({"script": ["commit_then_fail:503"]}, "bad script entry"),
        ({"latency": 1}, "unknown key(s) in the fault config: latency"),
        ({"rates": {"404": 0.1, "418": "x"}}, "unknown key(s) in rates: 404, 418 (allowed: 500, 502, 503, 504, reset)"),
        ([1, 2], "the fault config must be a JSON object"),
    ],
)
def test_invalid_updates_are_refused_with_a_clear_message(update: Any, message: str) -> None:
    with pytest.raises(FaultConfigError) as raised:
        apply_update(DEFAULT_CONFIG, update)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"routes": {"POST /note": {"rates": {"503": 0.1}}}},
            "unknown route(s) in routes: 'POST /note'; routes are named as /_sim/stats names them: "
            + ", ".join(ROUTE_NAMES),
        ),
        # Names /_sim/stats gives requests that no route answers are no keys either.
        ({"routes": {"HEAD /notes": {}}}, "unknown route(s) in routes: 'HEAD /notes'"),
        ({"routes": {"unmatched": {}}}, "unknown route(s) in routes: 'unmatched'"),
        ({"routes": {"post /notes": {}}}, "unknown route(s) in routes: 'post /notes'"),
        # Removing the entry of an unknown route is a typo too, not a no-op.
        ({"routes": {"POST /note": None}}, "unknown route(s) in routes: 'POST /note'"),
        (
            {"routes": {"POST /notes": {"rates": {"502": 0.6}, "commit_then_fail": {"rate": 0.5}}}},
            'routes["POST /notes"]: fault rates sum to 1.1, more than 1',
        ),
        (
            {"routes": {"GET /notes": {"slow": {"min_ms": 500, "max_ms": 100}}}},
            'routes["GET /notes"]: slow.min_ms (500) must not exceed slow.max_ms (100)',
        ),
        (
            {"routes": {"POST /notes": {"rates": {"503": 1.5}}}},
            'routes["POST /notes"].rates.503 must be a number between 0 and 1, got 1.5',
        ),
        ({"routes": {"POST /notes": {"rates": {"404": 0.1}}}}, 'unknown key(s) in routes["POST /notes"].rates: 404'),
        (
            {"routes": {"POST /notes": {"seed": 3}}},
            'unknown key(s) in routes["POST /notes"]: seed (allowed: rates, slow, commit_then_fail)',
        ),
        (
            {"routes": {"POST /notes": {"commit_then_fail": {"mode": "503"}}}},
            'routes["POST /notes"].commit_then_fail.mode must be one of 502, reset',
        ),
        ({"routes": {"POST /notes": 0.2}}, 'routes["POST /notes"] must be a JSON object, got 0.2'),
        ({"routes": ["POST /notes"]}, "routes must be a JSON object, got ['POST /notes']"),
    ],
)
def test_invalid_route_entries_are_refused_with_a_clear_message(update: Any, message: str) -> None:
    with pytest.raises(FaultConfigError) as raised:
        apply_update(DEFAULT_CONFIG, update)
    assert message in str(raised.value)


def test_rates_summing_to_exactly_one_are_accepted_despite_float_rounding() -> None:
    config = apply_update(DEFAULT_CONFIG, {"rates": {"500": 0.1, "502": 0.2}, "slow": {"rate": 0.7}})

    assert math.isclose(sum(config.rates.values()) + config.slow.rate, 1.0)


def test_a_refused_update_leaves_the_live_config_unchanged() -> None:
    state = FaultState(FaultConfig())
    with pytest.raises(FaultConfigError):
        state.update({"rates": {"503": 0.5}, "script": ["nope"]})
    assert state.config == FaultConfig()


@pytest.mark.parametrize(
    ("entry", "outcome"),
    [
        ("ok", OK),
        ("504", Outcome("504")),
        ("reset", Outcome("reset")),
        ("slow:0", Outcome("slow", delay_ms=0)),
        ("commit_then_fail:reset", Outcome("commit_then_fail", mode="reset")),
    ],
)
def test_script_entries_parse(entry: str, outcome: Outcome) -> None:
    assert parse_script_entry(entry) == outcome


@pytest.mark.parametrize(
    ("flag", "update"),
    [
        ("503=0.1", {"rates": {"503": 0.1}}),
        ("reset=0.05", {"rates": {"reset": 0.05}}),
        ("slow=0.2", {"slow": {"rate": 0.2}}),
        ("slow=0.2:100:900", {"slow": {"rate": 0.2, "min_ms": 100, "max_ms": 900}}),
        ("commit_then_fail=0.1", {"commit_then_fail": {"rate": 0.1}}),
        ("commit_then_fail=0.1:reset", {"commit_then_fail": {"rate": 0.1, "mode": "reset"}}),
        ("outage=true", {"outage": True}),
        ("outage=0", {"outage": False}),
    ],
)
def test_cli_fault_flags_become_partial_configs(flag: str, update: dict[str, Any]) -> None:
    assert parse_fault_flag(flag) == update
    apply_update(DEFAULT_CONFIG, update)  # and each is a valid update


@pytest.mark.parametrize("flag", ["503", "404=0.1", "503=lots", "slow=0.1:5", "outage=maybe"])
def test_bad_cli_fault_flags_are_refused(flag: str) -> None:
    with pytest.raises(FaultConfigError, match="bad --fault"):
        parse_fault_flag(flag)


def test_fault_config_text_is_inline_json_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text('{"rates": {"502": 0.25}}', encoding="utf-8")

    assert load_config_text('{"outage": true}') == {"outage": True}
    assert load_config_text(f"@{path}") == {"rates": {"502": 0.25}}
    with pytest.raises(FaultConfigError, match="not valid JSON"):
        load_config_text("{rates")


# --- per-route rates -------------------------------------------------------------------

# The benchmark's mix: 20% of POST /notes fail, half of them after the note is stored;
# 5% of GET /notes fail; screens never fail; everything else as the top level says.
PER_ROUTE = apply_update(
    DEFAULT_CONFIG,
    {
        "seed": 7,
        "rates": {"503": 0.3},
        "routes": {
            "POST /notes": {"rates": {"502": 0.05, "reset": 0.05}, "commit_then_fail": {"rate": 0.1}},
            "GET /notes": {"rates": {"503": 0.05}},
            "POST /patients/{id}/screen": {},
        },
    },
)


def test_a_route_entry_replaces_the_top_level_rates_for_its_route_only() -> None:
    draws = 20_000

    def shares(route: str | None) -> dict[str, float]:
        counts = Counter(outcome_for(7, k, PER_ROUTE, route).label for k in range(draws))
        return {label: count / draws for label, count in counts.items()}

    notes_post, notes_get = shares("POST /notes"), shares("GET /notes")

    # Seeded draws: these cannot flake, and 0.01 is over six standard deviations.
    assert set(notes_post) == {"ok", "502", "reset", "commit_then_fail:502"}
    assert notes_post["502"] == pytest.approx(0.05, abs=0.01)
    assert notes_post["reset"] == pytest.approx(0.05, abs=0.01)
    assert notes_post["commit_then_fail:502"] == pytest.approx(0.10, abs=0.01)
    assert set(notes_get) == {"ok", "503"}
    assert notes_get["503"] == pytest.approx(0.05, abs=0.01)
    assert shares("POST /patients/{id}/screen") == {"ok": 1.0}
    # A route without an entry, and requests no route answers, keep the top level's 30% 503.
    top_level = [outcome_for(7, k, PER_ROUTE) for k in range(draws)]
    for route in ("GET /hospitals", "unmatched", "HEAD /notes", "POST /hospitals/{id}"):
        assert [outcome_for(7, k, PER_ROUTE, route) for k in range(draws)] == top_level
    assert Counter(o.label for o in top_level)["503"] / draws == pytest.approx(0.3, abs=0.02)


def test_a_route_entry_reslices_the_same_draw() -> None:
    # The entry changes which slice of [0, 1) a draw falls in, never the draw itself:
    # the same 30% of indices fail whichever of these configs is live.
    as_503 = apply_update(DEFAULT_CONFIG, {"routes": {"GET /notes": {"rates": {"503": 0.3}}}})
    as_500 = apply_update(DEFAULT_CONFIG, {"rates": {"500": 0.3}})

    in_route = [outcome_for(1, k, as_503, "GET /notes").label for k in range(3000)]
    at_top = [outcome_for(1, k, as_500).label for k in range(3000)]

    assert [label == "503" for label in in_route] == [label == "500" for label in at_top]
    assert {"503", "ok"} == set(in_route)


def test_per_route_outcomes_are_a_pure_function_of_seed_index_and_route() -> None:
    # (method, route as /_sim/stats names it): every route in turn, then unknown paths.
    arrivals = [(name.split()[0], name) for name in ROUTE_NAMES] * 50 + [("GET", "unmatched")] * 50

    def run() -> list[tuple[int, Outcome]]:
        state = FaultState(PER_ROUTE)
        return [state.next_outcome(method, route) for method, route in arrivals]

    first = run()

    assert run() == first
    # What a benchmark recomputes from the seed, the config and the logged routes.
    assert first == [
        (k, outcome_for(7, k, PER_ROUTE, route).for_method(method)) for k, (method, route) in enumerate(arrivals)
    ]
    assert {outcome.label for _, outcome in first} >= {"ok", "502", "503", "reset", "commit_then_fail:502"}


def test_commit_then_fail_in_a_route_entry_applies_to_that_write() -> None:
    state = FaultState(apply_update(DEFAULT_CONFIG, {"routes": {"POST /notes": {"commit_then_fail": {"rate": 1.0}}}}))

    assert state.next_outcome("POST", "POST /notes") == (0, Outcome("commit_then_fail", mode="502"))
    assert state.next_outcome("POST", "POST /hospitals") == (1, OK)
    assert state.next_outcome("POST", None) == (2, OK)


def test_script_and_outage_come_before_route_entries() -> None:
    state = FaultState(
        apply_update(DEFAULT_CONFIG, {"script": ["ok"], "routes": {"GET /notes": {"rates": {"504": 1.0}}}})
    )

    assert state.next_outcome("GET", "GET /notes") == (0, OK)
    assert state.next_outcome("GET", "GET /notes") == (1, Outcome("504"))
    state.update({"outage": True})
    assert state.next_outcome("GET", "GET /notes") == (2, Outcome("outage"))


def test_route_entries_are_updated_field_by_field_and_removed_with_null() -> None:
    config = apply_update(DEFAULT_CONFIG, {"routes": {"POST /notes": {"rates": {"502": 0.1}}}})
    config = apply_update(
        config,
        {"routes": {"POST /notes": {"rates": {"503": 0.2}, "slow": {"rate": 0.1}}, "GET /notes": {}}},
    )

    notes = config.routes["POST /notes"]
    assert notes is not None
    assert notes.rates == {"500": 0.0, "502": 0.1, "503": 0.2, "504": 0.0, "reset": 0.0}
    assert (notes.slow.rate, notes.slow.min_ms, notes.slow.max_ms) == (0.1, 2000, 20000)
    # Left out is zero, not the top level's: an empty entry never fails.
    assert config.rates_for("GET /notes").rates == dict.fromkeys(["500", "502", "503", "504", "reset"], 0.0)

    removed = apply_update(config, {"routes": {"POST /notes": None}})

    assert list(removed.routes) == ["GET /notes"]
    assert "POST /notes" not in removed.to_json()["routes"]
    assert removed.rates_for("POST /notes") is removed


def test_a_per_route_config_round_trips_through_its_json_shape() -> None:
    shape = PER_ROUTE.to_json()

    assert apply_update(DEFAULT_CONFIG, json.loads(json.dumps(shape))) == PER_ROUTE
    # Listed in ROUTES order, whatever order they were given in.
    assert list(shape["routes"]) == ["POST /patients/{id}/screen", "GET /notes", "POST /notes"]
    assert shape["routes"]["GET /notes"] == {
        "rates": {"500": 0.0, "502": 0.0, "503": 0.05, "504": 0.0, "reset": 0.0},
        "slow": {"rate": 0.0, "min_ms": 2000, "max_ms": 20000},
        "commit_then_fail": {"rate": 0.0, "mode": "502"},
    }


def test_reset_restores_the_startup_route_entries() -> None:
    state = FaultState(PER_ROUTE)
    state.update({"routes": {"POST /notes": None, "GET /hospitals": {"rates": {"500": 1.0}}}})

    state.reset()

    assert state.config == PER_ROUTE
