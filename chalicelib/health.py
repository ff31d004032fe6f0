"""The /health answer: which stage runs and where it sends HOSP traffic."""

from __future__ import annotations

from chalicelib import config


def report() -> dict[str, object]:
    settings = config.load()
    return {"status": "ok", "stage": settings.stage, "hosp_base_url": settings.hosp_base_url}
