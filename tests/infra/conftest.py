"""Fixtures of the infra tests."""

from __future__ import annotations

from types import ModuleType

import pytest

from infra.iam.policies import STAGES
from tests.infra.cfn import import_cfnlint


@pytest.fixture(scope="session")
def cfnlint_api() -> ModuleType:
    return import_cfnlint("cfnlint.api")


@pytest.fixture(params=STAGES)
def stage(request: pytest.FixtureRequest) -> str:
    """Each deployable stage in turn."""
    return str(request.param)
