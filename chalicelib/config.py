"""Settings read from the environment, at call time and never at import.

The Chalice test client sets a stage's environment variables only while a
request runs, and `chalice local` copies them in at start, so every reader
goes through `load()` instead of module-level constants.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Environment variable names, in one place.
STAGE = "STAGE"
HOSP_BASE_URL = "HOSP_BASE_URL"


class ConfigError(ValueError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    stage: str
    hosp_base_url: str


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    base_url = env.get(HOSP_BASE_URL, "").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{HOSP_BASE_URL} must be an http(s) URL, got {base_url!r}")
    return Settings(stage=env.get(STAGE, "local"), hosp_base_url=base_url)
