"""The /health answer: which stage runs and where it sends HOSP traffic."""

from __future__ import annotations

from chalicelib import config


def report() -> tuple[int, dict[str, object]]:
    """(HTTP status, body): 200 when configured, 503 naming what is missing."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        return 503, {"status": "misconfigured", "error": str(exc)}
    return 200, {"status": "ok", "stage": settings.stage, "hosp_base_url": settings.hosp_base_url}
