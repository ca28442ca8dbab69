"""The health probe's logic against a hand-written fake TWS session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway import probe as p
from gateway.config import ProbeContract, TradingMode


class FakeSession:
    """A TWS session with fault switches; one instance per connection attempt."""

    def __init__(
        self, world: World, on_code: Callable[[int, str], None], on_dc: Callable[[], None]
    ):
        self.world, self.on_code, self.on_dc = world, on_code, on_dc
        self.connected = False
        world.sessions.append(self)

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        self.world.client_ids.append(client_id)
        if client_id in self.world.in_use:
            raise p.ClientIdInUse(f"client id {client_id} is in use")
        if self.world.refuse:
            raise ConnectionError("connection refused")
        self.connected = True
        return list(self.world.accounts)

    async def current_time(self) -> None:
        if self.world.stalled:
            await asyncio.Event().wait()

    async def market_data_kind(self, contract: ProbeContract, *, timeout: float) -> p.DataKind:
        return self.world.data.get(contract.symbol, p.DataKind.UNKNOWN)

    def disconnect(self) -> None:
        self.connected = False

    def is_connected(self) -> bool:
        return self.connected

    def drop(self) -> None:
        self.connected = False
        self.on_dc()


class World:
    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.client_ids: list[int] = []
        self.in_use: set[int] = set()
        self.refuse = False
        self.stalled = False
        self.accounts = ["DU1000001"]
        self.data = {"AAPL": p.DataKind.REALTIME}


class Harness:
    def __init__(
        self,
        world: World,
        *,
        contracts: list[ProbeContract] | None = None,
        mode: TradingMode = TradingMode.PAPER,
    ) -> None:
        self.events: list[p.ProbeEvent] = []
        self.changed = asyncio.Event()
        self.ids = [49, 48, 47]
        self.probe = p.HealthProbe(
            host="127.0.0.1",
            port=4002,
            account="DU1000001",
            mode=mode,
            contracts=contracts or [],
            client_id=lambda: self.ids[0],
            rotate_client_id=self._rotate,
            session_factory=lambda code, dc: FakeSession(world, code, dc),
            emit=self._emit,
            settings=p.ProbeSettings(
                heartbeat_every=0.01, heartbeat_deadline=0.05, reconnect_delay=0.01
            ),
        )
        self.task = asyncio.create_task(self.probe.run())

    def _rotate(self) -> int:
        self.ids.pop(0)
        return self.ids[0]

    def _emit(self, event: p.ProbeEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(
        self, pred: Callable[[p.ProbeEvent], bool], timeout: float = 5.0
    ) -> p.ProbeEvent:
        async def seek() -> p.ProbeEvent:
            while True:
                for event in self.events:
                    if pred(event):
                        return event
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(seek(), timeout)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_connects_checks_the_account_and_heartbeats() -> None:
    world = World()
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeConnected))
    checked = await h.wait_for(lambda e: isinstance(e, p.ProbeAccountChecked))
    assert isinstance(checked, p.ProbeAccountChecked) and checked.ok
    await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeat))
    await h.stop()


async def test_stalled_gateway_is_reported_within_the_deadline() -> None:
    world = World()
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeat))
    world.stalled = True
    missed = await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeatMissed))
    assert isinstance(missed, p.ProbeHeartbeatMissed)
    assert 0.04 <= missed.waited < 1.0
    await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeatMissed) and e.consecutive >= 2)
    await h.stop()


async def test_unmanaged_account_fails_the_account_check() -> None:
    world = World()
    world.accounts = ["DU9999999"]
    h = Harness(world)
    checked = await h.wait_for(lambda e: isinstance(e, p.ProbeAccountChecked))
    assert isinstance(checked, p.ProbeAccountChecked)
    assert not checked.ok and "DU9999999" in checked.detail
    await h.stop()


async def test_paper_account_on_a_live_gateway_fails_the_account_check() -> None:
    h = Harness(World(), mode=TradingMode.LIVE)
    checked = await h.wait_for(lambda e: isinstance(e, p.ProbeAccountChecked))
    assert isinstance(checked, p.ProbeAccountChecked) and "mode live" in checked.detail
    await h.stop()


async def test_permission_mismatch_is_reported() -> None:
    world = World()
    world.data = {"AAPL": p.DataKind.DELAYED, "MSFT": p.DataKind.REALTIME}
    h = Harness(world, contracts=[ProbeContract(symbol="AAPL"), ProbeContract(symbol="MSFT")])
    aapl = await h.wait_for(
        lambda e: isinstance(e, p.ProbePermissionChecked) and e.symbol == "AAPL"
    )
    msft = await h.wait_for(
        lambda e: isinstance(e, p.ProbePermissionChecked) and e.symbol == "MSFT"
    )
    assert isinstance(aapl, p.ProbePermissionChecked) and not aapl.ok and aapl.got == "delayed"
    assert isinstance(msft, p.ProbePermissionChecked) and msft.ok
    await h.stop()


async def test_client_id_in_use_rotates_within_the_range() -> None:
    world = World()
    world.in_use = {49}
    h = Harness(world)
    rotated = await h.wait_for(lambda e: isinstance(e, p.ProbeClientIdInUse))
    assert rotated == p.ProbeClientIdInUse(client_id=49, next_client_id=48)
    connected = await h.wait_for(lambda e: isinstance(e, p.ProbeConnected))
    assert isinstance(connected, p.ProbeConnected) and connected.client_id == 48
    await h.stop()


async def test_dropped_socket_is_reported_and_the_probe_reconnects() -> None:
    world = World()
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeat))
    world.sessions[-1].drop()
    await h.wait_for(lambda e: isinstance(e, p.ProbeDisconnected))
    await h.wait_for(lambda e: isinstance(e, p.ProbeConnected) and len(world.sessions) >= 2)
    await h.stop()


async def test_refused_connection_is_reported_and_retried() -> None:
    world = World()
    world.refuse = True
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeConnectFailed))
    world.refuse = False
    await h.wait_for(lambda e: isinstance(e, p.ProbeConnected))
    await h.stop()


async def test_link_codes_are_passed_on_and_other_codes_are_not() -> None:
    world = World()
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeConnected))
    session = world.sessions[-1]
    session.on_code(202, "Order cancelled")
    session.on_code(1100, "Connectivity between IB and Trader Workstation has been lost.")
    lost = await h.wait_for(lambda e: isinstance(e, p.ProbeApiCode))
    assert isinstance(lost, p.ProbeApiCode) and lost.code == 1100
    assert not any(isinstance(e, p.ProbeApiCode) and e.code == 202 for e in h.events)
    await h.stop()
