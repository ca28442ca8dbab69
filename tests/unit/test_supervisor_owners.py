"""One owner per decision, on the whole supervisor: a fake runtime, a real journal, fake time.

The lifecycle decides restarts and holds; the orchestrator only executes them. A killed
container is restarted once; an operator's stop and a spent login budget (FATAL, container
stopped) survive a supervisor restart, with the ledger read back from the journal.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.runtime import ContainerState
from supervisor import lifecycle as lc
from supervisor.api_views import Action
from supervisor.journal import SqliteJournal
from supervisor.settings import FleetSettings, load_text
from supervisor.wiring import Running, desired_specs, resolve_credentials, start_supervisor
from tests.unit.fake_runtime import FakeRuntime
from tests.waiting import until

T0 = dt.datetime(2026, 11, 18, 17, 0, tzinfo=dt.UTC)  # a Wednesday, outside every window
NAME = "ibfleet-owners-gw"
USER = "owner-user"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class NoApi:
    """A TWS session that never connects: these tests are about containers and logins."""

    dialled: list[tuple[str, int]] = []  # where each probe dialled, for the bind rule's test

    def __init__(self, *_: Any) -> None:
        pass

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        NoApi.dialled.append((host, port))
        raise ConnectionRefusedError("no API in this test")

    async def current_time(self) -> None:
        raise ConnectionError

    async def open_orders(self) -> None:
        raise ConnectionError

    async def market_data_kind(self, contract: Any, *, timeout: float) -> Any:
        raise ConnectionError

    def disconnect(self) -> None:
        pass

    def is_connected(self) -> bool:
        return False


def settings_for(
    tmp_path: Path, *, logins: int = 4, bind: str = "127.0.0.1"
) -> tuple[FleetSettings, dict[str, str]]:
    data = {
        "fleet": "owners",
        "gateways": [
            {
                "name": "gw",
                "mode": "paper",
                "account": "DU1000001",
                "username": {"env": "GW_USER"},
                "password": {"env": "GW_PASSWORD"},
                "api_port": 4999,
                "logins_per_hour": logins,
                "bind": bind,
                "allow_public_bind": bind in ("0.0.0.0", "::"),
            }
        ],
        "api": {"listen": "127.0.0.1:8710"},
        "storage": {"path": str(tmp_path / "journal.sqlite")},
    }
    environ = {"GW_USER": USER, "GW_PASSWORD": "pw-secret"}
    return load_text(yaml.safe_dump(data), environ={}).settings, environ


class Harness:
    def __init__(self, tmp_path: Path, *, logins: int = 4, bind: str = "127.0.0.1") -> None:
        self.settings, self.environ = settings_for(tmp_path, logins=logins, bind=bind)
        self.clock = Clock()
        self.runtime = FakeRuntime(clock=self.clock)
        self.running: Running | None = None

    async def start(self) -> Running:
        credentials = resolve_credentials(self.settings, self.environ)
        specs = desired_specs(self.settings, credentials, fingerprint_key=b"k" * 32)
        self.running = await start_supervisor(
            self.settings,
            environ=self.environ,
            runtime=self.runtime,
            specs=specs,
            clock=self.clock,
            api_port=0,
            supervisor_options={
                "probe_factory": NoApi,
                "reconcile_interval": 0.05,
                "tick_every": 0.02,
            },
        )
        return self.running

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.close()
            self.running = None

    @property
    def controller(self) -> Any:
        assert self.running is not None
        return self.running.supervisor.controllers["gw"]

    def state(self) -> lc.State:
        return self.controller.status.state

    async def post(self, *events: lc.Event) -> None:
        for event in events:
            self.controller.post(event)
        await self.controller.drain()

    def container(self) -> Any:
        return self.runtime.by_name(NAME)

    async def ledger(self) -> dict[str, Any]:
        """The login ledger as the journal holds it (through the running supervisor's journal:
        a journal is locked to one supervisor)."""
        if self.running is not None:
            return await self.running.journal.load_login_ledger() or {}
        journal = SqliteJournal(self.settings.storage.path)
        try:
            return journal.load_login_ledger() or {}
        finally:
            journal.close()

    async def paged(self) -> list[str]:
        """Alerts of warning or critical severity the journal recorded."""
        if self.running is not None:
            events = await self.running.journal.events(limit=1000)
        else:
            journal = SqliteJournal(self.settings.storage.path)
            try:
                events = journal.events(limit=1000)
            finally:
                journal.close()
        return [e.message for e in events if e.kind == "alert" and e.severity != "info"]


@pytest.fixture
async def harness(tmp_path: Path) -> Any:
    made = Harness(tmp_path)
    yield made
    await made.stop()


async def test_a_killed_container_is_restarted_exactly_once(harness: Harness) -> None:
    await harness.start()
    await until(lambda: harness.container().starts == 1, what="the first bring-up")
    await until(lambda: harness.state() is lc.State.STARTING, what="the container start seen")
    harness.runtime.kill(NAME)
    await until(lambda: harness.container().starts == 2, what="the lifecycle's restart")
    await until(lambda: harness.state() is lc.State.STARTING, what="the restarted container seen")
    assert harness.running is not None
    passes = harness.running.supervisor.orchestrator.passes
    await until(
        lambda: (
            harness.running is not None
            and harness.running.supervisor.orchestrator.passes >= passes + 3
        ),
        what="three more reconcile passes",
    )
    # Nobody else started it again, and it did not end in FATAL.
    assert harness.container().starts == 2
    assert harness.state() is lc.State.STARTING
    assert harness.controller.status.restarts and len(harness.controller.status.restarts) == 1


async def test_an_operator_stop_survives_a_supervisor_restart(harness: Harness) -> None:
    running = await harness.start()
    await until(lambda: harness.state() is lc.State.STARTING, what="the container start seen")
    await running.supervisor.command("gw", Action.STOP)
    await until(lambda: harness.container().state is ContainerState.EXITED, what="the stop")
    await harness.stop()
    await harness.start()
    assert harness.running is not None
    passes = harness.running.supervisor.orchestrator.passes
    await until(
        lambda: (
            harness.running is not None
            and harness.running.supervisor.orchestrator.passes >= passes + 2
        ),
        what="two reconcile passes after the restart",
    )
    assert harness.container().state is ContainerState.EXITED
    assert harness.container().starts == 1
    assert harness.state() is lc.State.STOPPED
    await harness.running.supervisor.command("gw", Action.START)
    await until(lambda: harness.container().starts == 2, what="the operator's start")


async def test_a_spent_login_budget_stops_the_gateway_and_it_stays_stopped(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path, logins=2)
    try:
        await harness.start()
        await until(lambda: harness.state() is lc.State.STARTING, what="the container start")
        # A wrong password: the login fails, the lifecycle stops the container and backs off.
        await harness.post(lc.LoginAttempt(1), lc.LoginFailed("invalid username or password"))
        assert harness.state() is lc.State.BACKOFF
        await until(lambda: harness.container().state is ContainerState.EXITED, what="stopped")
        harness.clock.advance(minutes=1)  # past the backoff: the lifecycle starts it again
        await until(lambda: harness.container().starts == 2, what="the retry")
        await until(lambda: harness.state() is lc.State.STARTING, what="the retry's start")
        await harness.post(lc.LoginAttempt(1), lc.LoginFailed("invalid username or password"))
        assert harness.state() is lc.State.FATAL
        await until(lambda: harness.container().state is ContainerState.EXITED, what="stopped")
        assert len((await harness.ledger())[USER]) == 2
        # One page: the end of the budget (the failed login before it is recorded only).
        paged = await harness.paged()
        assert len(paged) == 1 and "human must act" in paged[0]

        await harness.stop()
        harness.clock.advance(minutes=5)
        await harness.start()
        assert harness.state() is lc.State.FATAL
        assert harness.running is not None
        passes = harness.running.supervisor.orchestrator.passes
        await until(
            lambda: (
                harness.running is not None
                and harness.running.supervisor.orchestrator.passes >= passes + 2
            ),
            what="two reconcile passes after the restart",
        )
        assert harness.container().state is ContainerState.EXITED
        assert harness.container().starts == 2
        assert len((await harness.ledger())[USER]) == 2
        assert len(await harness.paged()) == 1  # the restart paged nobody again
    finally:
        await harness.stop()


async def test_the_ledger_is_shared_and_read_back_so_a_restart_does_not_refill_it(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path, logins=2)
    try:
        await harness.start()
        await until(lambda: harness.state() is lc.State.STARTING, what="the container start")
        await harness.post(lc.LoginAttempt(1))
        assert len((await harness.ledger())[USER]) == 1
        await harness.stop()
        # A fresh status (no record) still consults the journalled ledger for the username.
        journal = SqliteJournal(harness.settings.storage.path)
        fresh = lc.GatewayStatus.initial(gateway="gw", username=USER, now=harness.clock.now)
        journal.save_record("gateway:gw", fresh.to_record(), now=harness.clock.now)
        journal.close()
        await harness.start()
        # The record knew no attempt; the first event already took the username's from the ledger.
        await harness.post(lc.ContainerStarted())
        await harness.post(lc.LoginAttempt(1), lc.LoginFailed("invalid username or password"))
        assert harness.state() is lc.State.FATAL
        assert len((await harness.ledger())[USER]) == 2
    finally:
        await harness.stop()


@pytest.mark.parametrize(("bind", "dialled"), [("0.0.0.0", "127.0.0.1"), ("::", "::1")])
async def test_the_probe_dials_an_every_interface_bind_on_the_loopback_of_its_family(
    tmp_path: Path, bind: str, dialled: str
) -> None:
    made = Harness(tmp_path, bind=bind)
    NoApi.dialled.clear()
    try:
        await made.start()
        await until(lambda: bool(NoApi.dialled), what="the probe's first connect")
    finally:
        await made.stop()
    assert NoApi.dialled[0] == (dialled, 4999)
