"""HTTP routes and event handlers of hosp-reliability: wiring only, logic in chalicelib."""

from __future__ import annotations

from chalice import Chalice

from chalicelib import health

app = Chalice(app_name="hosp-reliability")


@app.route("/health", methods=["GET"])
def get_health() -> dict[str, object]:
    return health.report()
