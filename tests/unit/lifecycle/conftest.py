"""Fixtures of the lifecycle tests: a fresh machine, and one already API_READY."""

from __future__ import annotations

import pytest

from tests.unit.lifecycle.driver import Driver


@pytest.fixture
def d() -> Driver:
    return Driver()


@pytest.fixture
def ready() -> Driver:
    driver = Driver()
    driver.to_ready()
    return driver
