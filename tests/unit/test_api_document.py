"""docs/hosp-api.yaml documents exactly the routes the stand-in serves."""

from __future__ import annotations

import yaml

from local.hosp_standin.api import ROUTES
from local.processes import ROOT


def test_every_stand_in_route_and_method_is_documented_and_nothing_else() -> None:
    document = yaml.safe_load((ROOT / "docs" / "hosp-api.yaml").read_text())
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if not path.startswith("/_sim/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }

    assert document["openapi"].startswith("3.")
    assert documented == {(route.method, route.template) for route in ROUTES}
