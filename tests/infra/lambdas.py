"""The Lambda functions `chalice deploy --stage S` would create: names, timeouts, SQS handlers.

Read from the app's own registrations (app.py) and from .chalice/config.json through
Chalice's own Config, so that the infra tests check what would be deployed rather than a
copy of it.
"""

from __future__ import annotations

import json
from typing import Any

from chalice.app import SQSEventConfig
from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_TIMEOUT as DEFAULT_TIMEOUT

from app import app
from tests.infra.cfn import REPO

__all__ = ["DEFAULT_TIMEOUT", "chalice_config", "configured_timeout", "function_names", "sqs_handlers"]

CHALICE_CONFIG = REPO / ".chalice" / "config.json"
# Chalice's name for the function that serves every route.
API_HANDLER = "api_handler"


def chalice_config(stage: str, function: str = API_HANDLER) -> Any:
    """Chalice's view of one function of one stage (lookups in Chalice's own order)."""
    on_disk = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    return Config(chalice_stage=stage, function_name=function, config_from_disk=on_disk)


def sqs_handlers() -> list[Any]:
    """The app's @app.on_sqs_message registrations (SQSEventConfig: name, batch size, window)."""
    return [source for source in app.event_sources if isinstance(source, SQSEventConfig)]


def function_names(stage: str) -> list[str]:
    """Deployed function names: the API handler is <app>-<stage>, every other <app>-<stage>-<name>."""
    prefix = f"{app.app_name}-{stage}"
    others = [source.name for source in app.event_sources] + [f.name for f in app.pure_lambda_functions]
    return [prefix, *(f"{prefix}-{name}" for name in others)]


def configured_timeout(stage: str, function: str) -> int | None:
    """The function's `lambda_timeout` as .chalice/config.json sets it; None: Chalice
    deploys it with its default, DEFAULT_TIMEOUT."""
    configured = chalice_config(stage, function).lambda_timeout
    return None if configured is None else int(configured)
