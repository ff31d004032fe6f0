"""Fixtures of the integration tests that stand in for HOSP and the Chalice app behind a real NGINX."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RecordingServer


@pytest.fixture(scope="module")
def app() -> Iterator[RecordingServer]:
    """A RecordingServer in the Chalice app's place (screens and /audit), for a module's proxies."""
    with RecordingServer() as server:
        yield server


@pytest.fixture
def fresh_app(app: RecordingServer) -> RecordingServer:
    """`app` with nothing received and no statuses or drop left by an earlier test."""
    app.reset()
    return app


@pytest.fixture(scope="module")
def hosp_recorder() -> Iterator[RecordingServer]:
    """A RecordingServer in HOSP's place: the requests HOSP would get, headers and all, as they arrive."""
    with RecordingServer() as server:
        yield server
