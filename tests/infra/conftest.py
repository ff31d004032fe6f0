"""Fixtures of the infra tests."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.infra.cfn import import_cfnlint


@pytest.fixture(scope="session")
def cfnlint_api() -> ModuleType:
    return import_cfnlint("cfnlint.api")
