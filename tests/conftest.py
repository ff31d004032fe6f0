"""Fixtures shared by the test kinds: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Hosp


@pytest.fixture(scope="session")
def hosp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosp]:
    server = Hosp(tmp_path_factory.mktemp("hosp"))
    yield server
    server.stop()


@pytest.fixture
def fresh_hosp(hosp: Hosp) -> Hosp:
    """The stand-in with seed data, no faults and zeroed counters."""
    hosp.reset()
    return hosp
