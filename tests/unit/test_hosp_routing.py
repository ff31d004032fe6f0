"""How the stand-in routes API and /_sim paths (Werkzeug's router, Rails' path variants)."""

from __future__ import annotations

import pytest

from local.hosp_standin import sim
from local.hosp_standin.api import ROUTES, Route, match, route_name
from local.hosp_standin.faults import DEFAULT_CONFIG


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.name)
def test_every_route_matches_its_template_with_and_without_rails_suffixes(route: Route) -> None:
    for suffix in ("", ".json", "/", ".json/"):
        found = match(route.method, route.template.replace("{id}", "12") + suffix)
        assert found.route is route
        assert found.record_id == (12 if "{id}" in route.template else 0)


@pytest.mark.parametrize(
    ("path", "record_id"),
    [("/patients/%35", 5), ("/patients/%35%36", 56), ("//patients///5", 5), ("/patients/5%2F", 5)],
)
def test_paths_are_decoded_and_slashes_squeezed_before_matching(path: str, record_id: int) -> None:
    found = match("GET", path)

    assert found.route is not None
    assert found.route.template == "/patients/{id}"
    assert found.record_id == record_id


@pytest.mark.parametrize(
    "path", ["/patients/0", "/patients/05", "/patients/-5", "/patients/\u0665", "/patients/" + "9" * 19, "/patient/5"]
)
def test_ids_other_than_positive_ascii_integers_match_nothing(path: str) -> None:
    found = match("GET", path)

    assert (found.route, found.allowed) == (None, ())
    assert route_name("GET", path) == "unmatched"


def test_a_known_path_with_a_wrong_method_reports_the_allowed_methods() -> None:
    found = match("POST", "/hospitals/3")

    assert found.route is None
    assert found.allowed == ("DELETE", "GET", "HEAD", "PATCH", "PUT")
    assert route_name("POST", "/hospitals/3") == "POST /hospitals/{id}"


def test_head_routes_like_get() -> None:
    found = match("HEAD", "/notes")

    assert found.route is not None
    assert found.route.method == "GET"
    assert route_name("HEAD", "/notes") == "HEAD /notes"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/_sim/stats", 200, None),
        ("GET", "/_sim/stats/", 200, None),
        ("HEAD", "/_sim/faults", 200, None),
        ("POST", "/_sim/stats", 405, "GET, HEAD"),
        ("GET", "/_sim/reset", 405, "POST"),
        ("DELETE", "/_sim/faults", 200, None),
        ("POST", "/_sim/faults", 405, "DELETE, GET, HEAD, PUT"),
        ("GET", "/_sim/nothing", 404, None),
        ("GET", "/_sim", 404, None),
    ],
)
def test_sim_routes(method: str, path: str, status: int, allow: str | None) -> None:
    answer = sim.handle(sim.StandIn(DEFAULT_CONFIG), method, path, {}, b"")

    assert answer.status == status
    assert dict(answer.headers).get("Allow") == allow
