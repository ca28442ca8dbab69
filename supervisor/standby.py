"""A supervisor on a shared journal: wait as a standby, lead while holding the lease, step down.

:class:`RoleDriver` executes what :class:`supervisor.leadership.RoleMachine` decides. While
standby it polls the journal's lease and serves a small API (/healthz 200 with role standby,
/readyz 503 "standby", everything under /api 503 naming the leader); nothing here touches IB or
Docker. Once the lease is won it starts the leader's parts (the caller's ``start_leader``: the
runtime, the fleet adopted, alerts restored, strategies hosted after reconciliation). Every IB
or Docker action of those parts goes through a :class:`LeaderGuard`: the runtime's changes
(:class:`FencedRuntime`), the probe's connects and IBC's commands are refused once the lease is
lost or unconfirmed for ``lease_ttl``, and order intents are refused by the journal itself
(their write checks the epoch). Losing the lease fences at once and then tears the parts down
without acting; the process then waits as a standby again.

The journal tells of a lost lease from its renewal thread, sometimes while it holds its own
lock: the listener only posts to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gateway import ibc
from gateway import probe as probe_mod
from gateway.runtime import ObservedContainer, Runtime, RuntimeEvent, RuntimeFailure
from gateway.spec import ContainerSpec
from supervisor import leadership as ld
from supervisor.api import ApiServer, host_allowed
from supervisor.api_views import Health, LeaderView, Readiness
from supervisor.journal import JournalError, LeaderInfo

log = logging.getLogger("ibfleet.standby")

NOT_LEADER = "this supervisor does not lead (standby, or its lease was lost)"


class SharedJournal(Protocol):
    """What the driver needs of a journal with a lease (``PostgresJournal``)."""

    holder: str
    lease_ttl: float

    @property
    def is_leader(self) -> bool: ...

    @property
    def epoch(self) -> int | None: ...

    @property
    def confirmed_at(self) -> float | None: ...

    def try_lead(self, *, keep: bool = True) -> bool: ...

    def leader(self) -> LeaderInfo | None: ...

    def add_role_listener(self, listener: Callable[[bool], None]) -> None: ...

    def close(self) -> None: ...


class LeaderParts(Protocol):
    """The started leader (``wiring.Running``)."""

    async def close(self, *, hand_over: bool = False) -> None: ...


class Fenced(ConnectionError):
    """An IB action refused because this supervisor no longer leads."""


# ------------------------------------------------------------------------------ the guard


class LeaderGuard:
    """Says whether the leader may act now: its journal holds a confirmed lease, not fenced."""

    def __init__(self, journal: SharedJournal) -> None:
        self._journal = journal
        self._fenced: str | None = None

    @property
    def open(self) -> bool:
        return self._fenced is None and self._journal.is_leader

    def fence(self, reason: str) -> None:
        if self._fenced is None:
            self._fenced = reason
            log.error("leader_fenced reason=%s", reason)

    def why(self) -> str:
        return self._fenced or NOT_LEADER

    def probes(self, factory: probe_mod.SessionFactory) -> probe_mod.SessionFactory:
        """``factory`` whose sessions refuse to connect (take a client id) unless leading."""

        def make(on_error: Callable[[int, str], None], on_lost: Callable[[], None]) -> Any:
            return _FencedSession(factory(on_error, on_lost), self)

        return make

    def ibc(self, send: Callable[..., Awaitable[ibc.IbcReply]]) -> Callable[..., Any]:
        """IBC's command sender, refusing unless leading."""

        async def guarded(command: str, **kwargs: Any) -> ibc.IbcReply:
            if not self.open:
                raise Fenced(f"IBC {command}: refused: {self.why()}")
            return await send(command, **kwargs)

        return guarded


class _FencedSession:
    """A probe session whose connect is refused once the guard is closed."""

    def __init__(self, inner: probe_mod.TwsSession, guard: LeaderGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        if not self._guard.open:
            raise Fenced(f"probe connect {host}:{port}: refused: {self._guard.why()}")
        return await self._inner.connect(host=host, port=port, client_id=client_id, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FencedRuntime:
    """A :class:`gateway.runtime.Runtime` whose changes are refused unless the guard is open.

    Reads (list, inspect, logs, events) pass: they change nothing at the engine.
    """

    def __init__(self, inner: Runtime, guard: LeaderGuard) -> None:
        self.inner = inner
        self._guard = guard

    def _check(self, op: str, container: str) -> None:
        if not self._guard.open:
            raise RuntimeFailure(
                f"{op} {container}: refused: {self._guard.why()}", operation=op, container=container
            )

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        return await self.inner.list(fleet=fleet)

    async def create(self, spec: ContainerSpec) -> str:
        self._check("create", spec.name)
        return await self.inner.create(spec)

    async def start(self, container_id: str) -> None:
        self._check("start", container_id)
        await self.inner.start(container_id)

    async def stop(self, container_id: str, *, timeout: float) -> None:
        self._check("stop", container_id)
        await self.inner.stop(container_id, timeout=timeout)

    async def remove(self, container_id: str) -> None:
        self._check("remove", container_id)
        await self.inner.remove(container_id)

    async def restart(self, container_id: str, *, timeout: float) -> None:
        self._check("restart", container_id)
        await self.inner.restart(container_id, timeout=timeout)

    async def rename(self, container_id: str, name: str) -> None:
        self._check("rename", container_id)
        await self.inner.rename(container_id, name)

    async def inspect(self, container_id: str) -> ObservedContainer:
        return await self.inner.inspect(container_id)

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        return await self.inner.command_address(container_id)

    def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        return self.inner.follow_logs(container_id)

    def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        return self.inner.events(fleet=fleet)


# ------------------------------------------------------------------------------ the standby API


def standby_app(health: Callable[[], Health], *, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """What a standby answers: /healthz (200, its role and the leader), /readyz (503), and 503
    naming the leader for everything else: a standby holds no fleet state of its own."""
    app = FastAPI(title="ibfleet supervisor API (standby)", docs_url=None, redoc_url=None)

    def leader_text(view: Health) -> str:
        led = view.leader
        if led is None:
            return "no supervisor leads yet"
        return f"{led.holder} leads (epoch {led.epoch})"

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        header = request.headers.get("host")
        if header is not None and not host_allowed(header, allowed_hosts):
            return JSONResponse({"detail": "this Host is not served here"}, status_code=421)
        return await call_next(request)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return health()

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        view = health()
        body = Readiness(ready=False, not_ready=[], problems=[view.role, leader_text(view)])
        return JSONResponse(body.model_dump(), status_code=503)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def elsewhere(path: str) -> JSONResponse:
        view = health()
        return JSONResponse(
            {"detail": f"standby: {leader_text(view)}; ask the leader's API"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return app


# ------------------------------------------------------------------------------ the driver


class RoleDriver:
    """Runs one process's roles on a shared journal until stopped (see the module doc)."""

    def __init__(
        self,
        *,
        open_journal: Callable[[], SharedJournal],
        start_leader: Callable[[SharedJournal, LeaderGuard], Awaitable[LeaderParts]],
        listen: tuple[str, int],
        allowed_hosts: tuple[str, ...] = (),
        tick_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_standby: Callable[[], None] = lambda: None,
    ) -> None:
        self._open_journal = open_journal
        self._start_leader = start_leader
        self._listen = listen
        self._allowed_hosts = allowed_hosts
        self._clock = clock
        self._on_standby = on_standby
        self._journal = open_journal()
        ttl = self._journal.lease_ttl
        self.machine = ld.RoleMachine(lease_ttl=ttl)
        # Ten looks per lease: a standby tries within a tenth of it after the lease ends.
        self.tick_every = tick_every if tick_every is not None else ttl / 10
        self._events: asyncio.Queue[ld.Event] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._guard: LeaderGuard | None = None
        self._starting: asyncio.Task[LeaderParts | None] | None = None
        self._parts: LeaderParts | None = None
        self._api: ApiServer | None = None
        self._trying: asyncio.Task[None] | None = None
        self._leader: LeaderInfo | None = None
        self.problem: str | None = None
        self.failure: Exception | None = None
        self._stopping = asyncio.Event()
        self._watch(self._journal)

    # -- views ---------------------------------------------------------------------------

    def health(self) -> Health:
        """What /healthz says, on the leader's API and on the standby's."""
        led = self._leader
        if self.machine.role in ld.ACTING and self._guard is not None:
            left = None
            confirmed = self._journal.confirmed_at
            if confirmed is not None:
                left = max(0.0, confirmed + self.machine.lease_ttl - self._clock())
            led = LeaderInfo(self._journal.holder, self.machine.epoch or 0, left)
        return Health(
            role=self.machine.role.value,
            holder=self._journal.holder,
            leader=None
            if led is None
            else LeaderView(holder=led.holder, epoch=led.epoch, expires_in=led.expires_in),
        )

    @property
    def journal(self) -> SharedJournal:
        return self._journal

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Until ``stop`` and the shutdown it asks for; returns the exit code."""
        self._stopping = stop
        await self._serve_standby()
        ticker = asyncio.create_task(self._tick(), name="ibfleet-role-ticker")
        stopper = asyncio.create_task(self._stop_on(stop), name="ibfleet-role-stop")
        try:
            self._post(ld.Tick(self._clock(), None))
            while True:
                event = await self._events.get()
                for action in self.machine.step(event):
                    code = await self._do(action)
                    if code is not None:
                        if self.failure is not None:
                            raise self.failure
                        return code
        finally:
            for task in (ticker, stopper, self._trying):
                if task is not None:
                    task.cancel()
            await self._close_standby_api()
            if self._parts is None and self._starting is None:
                self._journal.close()

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._post(ld.StopRequested())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_every)
            self._post(ld.Tick(self._clock(), self._journal.confirmed_at))

    def _post(self, event: ld.Event) -> None:
        self._events.put_nowait(event)

    def _watch(self, journal: SharedJournal) -> None:
        def lost() -> None:
            if journal is self._journal:  # not a late word from a journal already replaced
                self._post(
                    ld.LeaseLost(
                        "another supervisor holds the lease (found by a renewal or a refused write)"
                    )
                )

        def changed(leading: bool) -> None:
            # Any thread, maybe under the journal's lock: only post to the loop.
            if not leading:
                self._loop.call_soon_threadsafe(lost)

        journal.add_role_listener(changed)

    async def _do(self, action: ld.Action) -> int | None:
        if isinstance(action, ld.TryLead):
            if self._trying is None or self._trying.done():
                self._trying = asyncio.create_task(self._try_lead())
        elif isinstance(action, ld.StartLeader):
            self._starting = asyncio.create_task(self._lead(action.epoch))
        elif isinstance(action, ld.Fence):
            if self._guard is not None:
                self._guard.fence(action.reason)
        elif isinstance(action, ld.HandOver):
            await self._hand_over(action.reason)
        elif isinstance(action, ld.Shutdown):
            await self._shutdown()
        elif isinstance(action, ld.Exit):
            return action.code
        return None

    async def _try_lead(self) -> None:
        journal = self._journal
        try:
            won = await asyncio.to_thread(journal.try_lead, keep=True)
            self._leader = None if won else await asyncio.to_thread(journal.leader)
        except JournalError as exc:
            self.problem = str(exc)
            log.warning("standby_lease_unknown error=%s", exc)
            return
        self.problem = None
        if won:
            epoch = journal.epoch
            assert epoch is not None
            self._post(ld.LeaseTaken(epoch, journal.confirmed_at or self._clock()))

    async def _lead(self, epoch: int) -> LeaderParts | None:
        await self._close_standby_api()
        self._guard = LeaderGuard(self._journal)
        log.warning("leader_taking_over holder=%s epoch=%d", self._journal.holder, epoch)
        try:
            parts = await self._start_leader(self._journal, self._guard)
        except Exception as exc:
            # A leader that cannot start (a bad secret, no engine) hands the lease on and
            # ends the process with the reason; a standby would fail alike, or may not.
            self.failure = exc
            self._post(ld.StopRequested())
            return None
        self._parts = parts
        self._post(ld.LeaderUp())
        log.warning("leader_acting holder=%s epoch=%d", self._journal.holder, epoch)
        return parts

    async def _started(self) -> LeaderParts | None:
        task, self._starting = self._starting, None
        if task is None:
            return self._parts
        # A start under way finishes (its actions are refused once fenced) and then closes.
        return await task

    async def _hand_over(self, reason: str) -> None:
        log.error("leader_stepping_down reason=%s", reason)
        parts = await self._started()
        self._parts = None
        if parts is not None:
            try:
                await parts.close(hand_over=True)
            except Exception as exc:  # the parts are gone either way; the standby goes on
                log.exception("leader_step_down_failed error=%s", type(exc).__name__)
        with contextlib.suppress(Exception):
            self._journal.close()
        self._guard = None
        await self._serve_standby()
        # A new journal object for the standby: a server that is down (why the lease was lost,
        # maybe) is looked for again at the standby's own pace until it answers.
        journal = self._journal
        while not self._stopping.is_set():
            try:
                journal = await asyncio.to_thread(self._open_journal)
                break
            except Exception as exc:
                self.problem = str(exc)
                log.warning("standby_journal_unreachable error=%s", exc)
                await asyncio.sleep(self.tick_every * 2)
        self.problem = None
        self._journal = journal
        self._watch(journal)
        log.warning("leader_stepped_down now=standby holder=%s", journal.holder)
        self._post(ld.HandedOver())

    async def _shutdown(self) -> None:
        parts = await self._started()
        self._parts = None
        if parts is not None:
            await parts.close(hand_over=False)  # closes the journal, handing the lease on
        self._post(ld.Stopped())

    async def _serve_standby(self) -> None:
        host, port = self._listen
        api = ApiServer(
            standby_app(self.health, allowed_hosts=self._allowed_hosts), host=host, port=port
        )
        await api.start()
        self._api = api
        self._on_standby()
        log.info("standby_waiting holder=%s api=%s:%d", self._journal.holder, host, api.port)

    async def _close_standby_api(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            await api.stop()

    def alive(self) -> bool:
        """For the systemd watchdog: the role loop runs (a standby is alive while it waits)."""
        return self.machine.role is not ld.Role.STOPPED
