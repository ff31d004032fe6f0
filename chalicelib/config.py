"""Settings read from the environment, at call time and never at import.

The Chalice test client sets a stage's environment variables only while a
request runs, and `chalice local` copies them in at start, so every reader
goes through `load()` instead of module-level constants.

Problems are described without the values that cause them: they are shown by
/health, which anyone can call, and must not reveal internal addresses.

Placeholder hosts
-----------------
HOSP_BASE_URL is a placeholder, not a real proxy, when its host

- has a label `example` anywhere: the names reserved for documentation by
  RFC 2606 (`example`, `example.com`, `example.net`, `example.org` and every name
  under them), and made-up names in the same style such as
  `hosp-proxy.example.internal`, which this project's stages hold until the real
  proxies exist; or
- ends in `.invalid` or `.test` (RFC 2606, RFC 6761), or is one of them.

`localhost` and loopback addresses are real (the local stage uses them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib import constants

PLACEHOLDER_LABEL = "example"
PLACEHOLDER_TLDS = frozenset({"invalid", "test"})


class ConfigError(ValueError):
    """Settings are missing or malformed; `problems` says which, without their values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    stage: str
    hosp_base_url: str


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings; raises ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    found = problems(env)
    if found:
        raise ConfigError(found)
    return Settings(stage=stage(env), hosp_base_url=env[constants.HOSP_BASE_URL].strip().rstrip("/"))


def problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the settings, in words safe to show anyone; [] when nothing is."""
    env = os.environ if environ is None else environ
    return _hosp_base_url_problems(env.get(constants.HOSP_BASE_URL, "").strip())


def is_placeholder_host(host: str) -> bool:
    """Whether `host` is a reserved or made-up example name (the rule is in the module docstring)."""
    labels = host.lower().rstrip(".").split(".")
    return PLACEHOLDER_LABEL in labels or labels[-1] in PLACEHOLDER_TLDS


def _hosp_base_url_problems(value: str) -> list[str]:
    if not value:
        return [f"{constants.HOSP_BASE_URL} is not set"]
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        return [f"{constants.HOSP_BASE_URL} must be an http(s) URL with a host"]
    if is_placeholder_host(host):
        return [f"{constants.HOSP_BASE_URL} is a placeholder host name, not a real HOSP proxy"]
    return []


def stage(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(constants.STAGE, constants.LOCAL_STAGE)


def note_queue_name(environ: Mapping[str, str] | None = None) -> str:
    """The FIFO note queue: constants.note_queue(stage) unless NOTE_QUEUE_NAME says otherwise.

    Read at import by app.py's `on_sqs_message`, the one exception to "never at
    import": `chalice deploy --stage S` imports app.py with stage S's environment
    variables set, so each stage's worker is bound to its own queue.
    """
    env = os.environ if environ is None else environ
    return env.get(constants.NOTE_QUEUE_NAME) or constants.note_queue(stage(env))


def note_dead_letter_queue_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(constants.NOTE_DEAD_LETTER_QUEUE_NAME) or constants.dead_letter_queue(stage(env))
