"""HTTP routes and event handlers of hosp-reliability: wiring only, logic in chalicelib."""

from __future__ import annotations

from chalice import Chalice, Response

from chalicelib import health

app = Chalice(app_name="hosp-reliability")


@app.route("/health", methods=["GET"])
def get_health() -> Response:
    status, body = health.report()
    return Response(body=body, status_code=status)
