"""The health probe's logic against a hand-written fake TWS session."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

import pytest

from gateway import probe as p
from gateway.config import ProbeContract, TradingMode
from tests.waiting import until


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
        if self.world.link_down:
            self.on_code(1100, "Connectivity between IB and Trader Workstation has been lost.")
        return list(self.world.accounts)

    async def current_time(self) -> None:
        if self.world.stalled:
            await asyncio.Event().wait()

    async def open_orders(self) -> None:
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
        self.link_down = False  # the gateway's IB link: a new client hears 1100 at connect
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

    async def wait_for(
        self, pred: Callable[[p.ProbeEvent], bool], timeout: float = 5.0
    ) -> p.ProbeEvent:
        """The first event the probe emitted that matches ``pred``."""
        try:
            event: p.ProbeEvent = await until(
                lambda: next((e for e in self.events if pred(e)), None),
                timeout,
                what=f"a probe event matching {pred.__qualname__}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last emitted: {self.events[-5:]}") from None
        return event

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


async def test_a_new_session_that_hears_no_link_loss_reports_the_link_up() -> None:
    # Finding of the 1,000-event chaos run: the link came back while the probe was between
    # sessions, the 1102 went to nobody, and the gateway stayed "ib link lost" for good.
    world = World()
    world.link_down = True
    h = Harness(world)
    await h.wait_for(lambda e: isinstance(e, p.ProbeHeartbeat))
    assert not any(isinstance(e, p.ProbeLinkUp) for e in h.events)  # it heard 1100 at connect
    world.link_down = False
    world.sessions[-1].drop()
    await h.wait_for(lambda e: isinstance(e, p.ProbeLinkUp))
    after = h.events[h.events.index(next(e for e in h.events if isinstance(e, p.ProbeLinkUp))) :]
    assert isinstance(after[1], p.ProbeHeartbeat)  # reported with the session's first answer
    assert sum(isinstance(e, p.ProbeLinkUp) for e in h.events) == 1  # once per session
    await h.stop()


# ------------------------------------------------------------------ heartbeat spacing, fake clock


class FakeClock:
    """The probe's clock and sleep: time moves only in :meth:`advance`, timer by timer."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._timers, (self.now + max(0.0, delay), self._seq, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Let the loop run, firing every timer due within ``seconds`` at its own time."""
        target = self.now + seconds
        while True:
            await _settle()
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)  # cancelled: the probe stopped waiting
            if not self._timers or self._timers[0][0] > target:
                break
            at, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            future.set_result(None)
        self.now = target
        await _settle()


async def _settle() -> None:
    # Loop turns, not time: every callback made ready by the last timer runs before the next.
    for _ in range(30):
        await asyncio.sleep(0)


class Gateway:
    """Fake sessions on a fake clock that record every liveness request."""

    def __init__(self, clock: FakeClock, *, rtt: float = 0.002) -> None:
        self.clock = clock
        self.rtt = rtt
        self.stalled = False
        # Gateway 10.16+ as reported: a reqCurrentTime < 1 s after the last one goes unanswered.
        self.ignores_close_current_time = False
        self.sent: list[tuple[int, str, float]] = []  # (connection, request, sent at)
        self.sessions: list[ClockedSession] = []

    def current_time_sends(self, connection: int | None = None) -> list[float]:
        return [
            at
            for conn, kind, at in self.sent
            if kind == "ct" and (connection is None or conn == connection)
        ]


class ClockedSession:
    def __init__(
        self, gw: Gateway, on_code: Callable[[int, str], None], on_dc: Callable[[], None]
    ) -> None:
        self.gw, self.on_dc = gw, on_dc
        self.index = len(gw.sessions)
        self.connected = False
        self.last_current_time: float | None = None
        gw.sessions.append(self)

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        self.connected = True
        return ["DU1000001"]

    async def _answer(self, ignored: bool = False) -> None:
        if self.gw.stalled or ignored:
            await asyncio.Event().wait()
        await self.gw.clock.sleep(self.gw.rtt)

    async def current_time(self) -> None:
        now = self.gw.clock.now
        self.gw.sent.append((self.index, "ct", now))
        last, self.last_current_time = self.last_current_time, now
        close = last is not None and now - last < 1.0
        await self._answer(ignored=close and self.gw.ignores_close_current_time)

    async def open_orders(self) -> None:
        self.gw.sent.append((self.index, "oo", self.gw.clock.now))
        await self._answer()

    async def market_data_kind(self, contract: ProbeContract, *, timeout: float) -> p.DataKind:
        return p.DataKind.REALTIME

    def disconnect(self) -> None:
        self.connected = False

    def is_connected(self) -> bool:
        return self.connected

    def drop(self) -> None:
        self.connected = False
        self.on_dc()


class ClockedProbe:
    def __init__(self, gw: Gateway, settings: p.ProbeSettings | None = None) -> None:
        self.events: list[tuple[float, p.ProbeEvent]] = []
        self.probe = p.HealthProbe(
            host="127.0.0.1",
            port=4002,
            account="DU1000001",
            mode=TradingMode.PAPER,
            contracts=[],
            client_id=lambda: 49,
            rotate_client_id=lambda: 48,
            session_factory=lambda code, dc: ClockedSession(gw, code, dc),
            emit=lambda e: self.events.append((gw.clock.now, e)),
            settings=settings or p.ProbeSettings(),
            sleep=gw.clock.sleep,
            monotonic=gw.clock.monotonic,
        )
        self.task = asyncio.create_task(self.probe.run())

    def of(self, kind: type[p.ProbeEvent]) -> list[tuple[float, p.ProbeEvent]]:
        return [(at, e) for at, e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_current_time_is_never_sent_less_than_its_spacing_apart() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw)
    await clock.advance(60.0)
    await probe.stop()
    cts = gw.current_time_sends()
    assert len(cts) >= 35  # still the main heartbeat: one every 1.5 s
    assert min(_gaps(cts)) >= p.ProbeSettings().current_time_spacing >= 1.0
    # Between them the Gateway is asked every heartbeat_every all the same.
    every = [at for _, _, at in gw.sent]
    assert min(_gaps(every)) >= 0.5 - 1e-9
    assert max(_gaps(every)) <= 0.5 + 2 * gw.rtt
    assert probe.of(p.ProbeHeartbeatMissed) == []


async def test_a_gateway_that_ignores_close_current_time_requests_never_looks_stalled() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    gw.ignores_close_current_time = True
    probe = ClockedProbe(gw)
    await clock.advance(120.0)
    await probe.stop()
    assert probe.of(p.ProbeHeartbeatMissed) == []
    assert len(probe.of(p.ProbeHeartbeat)) >= 115  # reported once a second


async def test_current_time_spacing_holds_across_a_reconnect() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw, p.ProbeSettings(reconnect_delay=0.05))
    await clock.advance(3.05)  # just after a reqCurrentTime (t=3.0)
    gw.sessions[-1].drop()
    await clock.advance(10.0)
    await probe.stop()
    assert len(gw.sessions) == 2
    assert min(_gaps(gw.current_time_sends())) >= 1.2
    assert gw.current_time_sends(1)[0] >= gw.current_time_sends(0)[-1] + 1.2


@pytest.mark.parametrize("phase", [i * 0.0625 for i in range(24)])  # across a 1.5 s cycle
async def test_a_stall_is_reported_within_every_plus_deadline_of_the_fault(phase: float) -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw)
    await clock.advance(5.0 + phase)
    fault_at = clock.now
    gw.stalled = True
    await clock.advance(3.0)
    await probe.stop()
    missed = probe.of(p.ProbeHeartbeatMissed)
    assert missed, "the stall was not seen"
    latency = missed[0][0] - fault_at
    settings = p.ProbeSettings()
    assert settings.heartbeat_deadline <= latency
    assert latency <= settings.heartbeat_every + settings.heartbeat_deadline + gw.rtt
    assert latency <= 1.5


async def test_a_slow_answer_within_the_deadline_is_a_heartbeat_and_delays_the_next() -> None:
    clock = FakeClock()
    gw = Gateway(clock, rtt=0.7)
    probe = ClockedProbe(gw)
    await clock.advance(20.0)
    await probe.stop()
    assert probe.of(p.ProbeHeartbeatMissed) == []
    rtts = [e.rtt for _, e in probe.of(p.ProbeHeartbeat) if isinstance(e, p.ProbeHeartbeat)]
    assert rtts and all(abs(rtt - 0.7) < 1e-9 for rtt in rtts)
    assert min(_gaps([at for _, _, at in gw.sent])) >= 0.7 - 1e-9  # one outstanding at a time
    assert min(_gaps(gw.current_time_sends())) >= 1.2


async def test_answers_are_reported_once_a_second() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw)
    await clock.advance(10.0)
    await probe.stop()
    beats = probe.of(p.ProbeHeartbeat)
    assert 9 <= len(beats) <= 11  # of ~20 answers
    assert min(_gaps([at for at, _ in beats])) >= 1.0 - 1e-9


async def test_the_first_answer_after_a_miss_is_reported_at_once() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw, p.ProbeSettings(report_every=30.0))
    await clock.advance(5.0)
    assert len(probe.of(p.ProbeHeartbeat)) == 1  # the first answer, then none for 30 s
    gw.stalled = True
    await clock.advance(2.0)
    gw.stalled = False
    await clock.advance(2.0)
    await probe.stop()
    missed_at = probe.of(p.ProbeHeartbeatMissed)[-1][0]
    after = [at for at, _ in probe.of(p.ProbeHeartbeat) if at > missed_at]
    assert len(after) == 1 and after[0] - missed_at <= 2 * gw.rtt


async def test_the_slowest_answer_since_the_last_report_is_the_rtt_reported() -> None:
    clock = FakeClock()
    gw = Gateway(clock)
    probe = ClockedProbe(gw)
    await clock.advance(3.1)
    gw.rtt = 0.3  # one slow answer between two reports
    await clock.advance(0.4)
    gw.rtt = 0.002
    await clock.advance(3.0)
    await probe.stop()
    rtts = [e.rtt for _, e in probe.of(p.ProbeHeartbeat) if isinstance(e, p.ProbeHeartbeat)]
    assert max(rtts) == pytest.approx(0.3)


def test_pacer_alternates_requests_and_keeps_current_time_apart() -> None:
    pacer = p.HeartbeatPacer(every=0.5, current_time_spacing=1.2)
    kinds = []
    now = 0.0
    for _ in range(7):
        now = pacer.due(now)
        kind = pacer.choose(now)
        pacer.sent(kind, now)
        kinds.append(kind)
    ct, oo = p.Liveness.CURRENT_TIME, p.Liveness.OPEN_ORDERS
    assert kinds == [ct, oo, oo, ct, oo, oo, ct]
    assert pacer.due(now + 5.0) == now + 5.0  # late: at once


def test_current_time_spacing_below_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.0s"):
        p.ProbeSettings(current_time_spacing=0.9)
    with pytest.raises(ValueError, match="current_time_spacing"):
        p.HeartbeatPacer(every=0.5, current_time_spacing=0.5)
