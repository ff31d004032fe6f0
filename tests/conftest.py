"""Fixtures shared by the test kinds: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import HOSP_IDLE_TIMEOUT, Hosp


@pytest.fixture(scope="session")
def hosp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosp]:
    with Hosp(tmp_path_factory.mktemp("hosp"), seed=7, idle_timeout=HOSP_IDLE_TIMEOUT) as server:
        yield server


@pytest.fixture
def fresh_hosp(hosp: Hosp) -> Hosp:
    """The stand-in with seed data, no faults and zeroed counters."""
    hosp.reset()
    return hosp
