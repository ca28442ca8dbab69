"""The role driver with a fake shared journal: standby API, takeover, fencing, step-down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.runtime import RuntimeFailure
from supervisor.api_views import Health, LeaderView
from supervisor.journal import LeaderInfo
from supervisor.standby import Fenced, FencedRuntime, LeaderGuard, RoleDriver, standby_app
from tests.unit.fake_runtime import FakeRuntime
from tests.waiting import until


class FakeLease:
    """A journal with a lease the test hands out and takes away."""

    lease_ttl = 5.0

    def __init__(self, name: str, clock: Callable[[], float], *, free: bool = False) -> None:
        self.holder = name
        self.clock = clock
        self.free = free
        self._epoch: int | None = None
        self.confirmed: float | None = None
        self.listeners: list[Callable[[bool], None]] = []
        self.closed = False

    @property
    def is_leader(self) -> bool:
        return self.confirmed is not None and self.clock() - self.confirmed < self.lease_ttl

    @property
    def epoch(self) -> int | None:
        return self._epoch

    @property
    def confirmed_at(self) -> float | None:
        return self.confirmed

    def try_lead(self, *, keep: bool = True) -> bool:
        if not self.free:
            return False
        self._epoch, self.confirmed = 4, self.clock()
        return True

    def leader(self) -> LeaderInfo | None:
        return LeaderInfo("other:1:aa", 3, 2.5)

    def add_role_listener(self, listener: Callable[[bool], None]) -> None:
        self.listeners.append(listener)

    def lose(self) -> None:
        self.confirmed = None
        for listener in self.listeners:
            listener(False)

    def close(self) -> None:
        self.closed = True


class Parts:
    def __init__(self) -> None:
        self.closed: list[bool] = []

    async def close(self, *, hand_over: bool = False) -> None:
        self.closed.append(hand_over)


@pytest.fixture
def now() -> list[float]:
    return [1000.0]


async def test_standby_takes_the_lease_leads_and_steps_down_when_it_is_lost(
    now: list[float],
) -> None:
    journals: list[FakeLease] = []

    def open_journal() -> FakeLease:
        journals.append(FakeLease(f"me:{len(journals)}", lambda: now[0]))
        return journals[-1]

    started: list[tuple[FakeLease, LeaderGuard, Parts]] = []

    async def start_leader(journal: Any, guard: LeaderGuard) -> Parts:
        parts = Parts()
        started.append((journal, guard, parts))
        return parts

    driver = RoleDriver(
        open_journal=open_journal,
        start_leader=start_leader,
        listen=("127.0.0.1", 0),
        tick_every=0.01,
        clock=lambda: now[0],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    try:
        await until(lambda: driver.health().role == "standby" and driver.health().leader)
        view = driver.health()
        assert view.leader == LeaderView(holder="other:1:aa", epoch=3, expires_in=2.5)
        assert not started

        journals[0].free = True
        await until(lambda: driver.health().role == "leader", what="leading")
        journal, guard, parts = started[0]
        assert journal is journals[0] and guard.open
        assert driver.health().leader == LeaderView(holder="me:0", epoch=4, expires_in=5.0)

        # Another holder appears: fenced at once, parts closed as a hand-over, standby again.
        journal.lose()
        await until(lambda: driver.health().role == "standby", what="standby again")
        assert not guard.open and parts.closed == [True]
        assert journal.closed and len(journals) == 2
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def test_a_lease_unrenewed_past_its_length_fences_the_leader(now: list[float]) -> None:
    lease = FakeLease("me", lambda: now[0], free=True)
    opened = [lease]
    parts = Parts()
    guards: list[LeaderGuard] = []

    async def start_leader(journal: Any, guard: LeaderGuard) -> Parts:
        guards.append(guard)
        return parts

    def reopen() -> FakeLease:
        opened.append(FakeLease("me-again", lambda: now[0]))
        return opened[-1]

    driver = RoleDriver(
        open_journal=lambda: opened[-1] if len(opened) == 1 and not lease.closed else reopen(),
        start_leader=start_leader,
        listen=("127.0.0.1", 0),
        tick_every=0.01,
        clock=lambda: now[0],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    try:
        await until(lambda: driver.health().role == "leader")
        now[0] += 5.0  # no renewal for a whole lease
        await until(lambda: driver.health().role == "standby", what="stepped down")
        assert not guards[0].open and parts.closed == [True]
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def test_a_normal_stop_of_the_leader_closes_its_parts_with_their_policies(
    now: list[float],
) -> None:
    parts = Parts()

    async def start_leader(journal: Any, guard: LeaderGuard) -> Parts:
        return parts

    lease = FakeLease("me", lambda: now[0], free=True)
    driver = RoleDriver(
        open_journal=lambda: lease,
        start_leader=start_leader,
        listen=("127.0.0.1", 0),
        tick_every=0.01,
        clock=lambda: now[0],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    await until(lambda: driver.health().role == "leader")
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert parts.closed == [False]


async def test_a_leader_that_cannot_start_ends_the_run_with_its_reason(now: list[float]) -> None:
    async def start_leader(journal: Any, guard: LeaderGuard) -> Parts:
        raise RuntimeError("no Docker engine answers")

    lease = FakeLease("me", lambda: now[0], free=True)
    driver = RoleDriver(
        open_journal=lambda: lease,
        start_leader=start_leader,
        listen=("127.0.0.1", 0),
        tick_every=0.01,
        clock=lambda: now[0],
    )
    with pytest.raises(RuntimeError, match="no Docker engine"):
        await asyncio.wait_for(driver.run(asyncio.Event()), 10)
    assert lease.closed


async def test_the_fenced_runtime_refuses_changes_but_reads() -> None:
    now = [0.0]
    lease = FakeLease("me", lambda: now[0], free=True)
    lease.try_lead()
    guard = LeaderGuard(lease)
    inner = FakeRuntime()
    runtime = FencedRuntime(inner, guard)
    assert await runtime.list(fleet="f") == []
    now[0] = 5.0  # the lease ran out unconfirmed
    with pytest.raises(RuntimeFailure, match="refused"):
        await runtime.start("c1")
    assert await runtime.list(fleet="f") == []
    now[0] = 0.0
    guard.fence("epoch 5 is held by host-b")
    with pytest.raises(RuntimeFailure, match="epoch 5"):
        await runtime.restart("c1", timeout=1)


async def test_the_guard_refuses_probe_connects_and_ibc_commands() -> None:
    now = [0.0]
    lease = FakeLease("me", lambda: now[0], free=True)
    guard = LeaderGuard(lease)  # never led
    sent: list[str] = []

    async def send(command: str, **kwargs: Any) -> Any:
        sent.append(command)

    with pytest.raises(Fenced):
        await guard.ibc(send)("RESTART", host="h", port=1)

    class Session:
        async def connect(self, **kwargs: Any) -> list[str]:
            return ["DU1"]

    make = guard.probes(lambda on_error, on_lost: Session())  # type: ignore[arg-type, return-value]
    with pytest.raises(Fenced):
        await make(lambda c, m: None, lambda: None).connect(
            host="h", port=1, client_id=1, timeout=1
        )
    lease.try_lead()
    await guard.ibc(send)("RESTART", host="h", port=1)
    assert sent == ["RESTART"]
    assert await make(lambda c, m: None, lambda: None).connect(
        host="h", port=1, client_id=1, timeout=1
    ) == ["DU1"]


async def test_the_standby_api_answers_alive_not_ready_and_names_the_leader() -> None:
    view = Health(
        role="standby", holder="b:2:bb", leader=LeaderView(holder="a:1:aa", epoch=3, expires_in=4)
    )
    app = standby_app(lambda: view)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["role"] == "standby"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["problems"] == ["standby", "a:1:aa leads (epoch 3)"]
        gateways = await client.get("/api/v1/gateways")
        assert gateways.status_code == 503 and "a:1:aa leads" in gateways.json()["detail"]
        rebound = await client.get("/healthz", headers={"Host": "evil.example"})
        assert rebound.status_code == 421
