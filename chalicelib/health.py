"""The /health answer: whether this stage is configured to reach HOSP, and which stage runs.

Anyone can call it, so it names problems but never an address; and it is cheap
(no network call), so that frequent checks cost nothing.
"""

from __future__ import annotations

from chalicelib import config


def report() -> tuple[int, dict[str, object]]:
    """(HTTP status, body): 200 with the stage when configured, 503 listing the problems."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        return 503, {"status": "misconfigured", "problems": exc.problems}
    return 200, {"status": "ok", "stage": settings.stage}
