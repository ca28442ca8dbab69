"""Shared helpers for the simulator's golden tests: both real clients, real TCP on 127.0.0.1."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import pytest

from ibsim.broker import BrokerConfig
from ibsim.fleet import SimFleet

CLIENT_LIBS = ("ib_async", "ib_insync")


@pytest.fixture(params=CLIENT_LIBS)
def lib(request: pytest.FixtureRequest) -> ModuleType:
    """The client library under test: every golden test runs with both."""
    return importlib.import_module(request.param)


@pytest.fixture
async def sim() -> AsyncIterator[SimFleet]:
    """One broker, two gateways (two users on their own paper accounts), fast ticks."""
    async with SimFleet.start(
        gateways=2,
        tick_rate=200.0,
        step_interval=0.02,
        broker_config=BrokerConfig(lot_size=100, volatility=0.0),
    ) as fleet:
        yield fleet


class Clients:
    """Connects real clients and disconnects them all at teardown."""

    def __init__(self, lib: ModuleType) -> None:
        self.lib = lib
        self.open: list[Any] = []

    async def connect(self, port: int, client_id: int = 1, **kwargs: Any) -> Any:
        ib = self.lib.IB()
        self.open.append(ib)
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5, **kwargs)
        return ib

    def close(self) -> None:
        for ib in self.open:
            ib.disconnect()


@pytest.fixture
async def clients(lib: ModuleType) -> AsyncIterator[Clients]:
    pool = Clients(lib)
    yield pool
    pool.close()
