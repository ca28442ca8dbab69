"""``ibfleet run``: build every part from the settings, run until told to stop, stop cleanly.

This is the only place that opens the journal, reads the secrets, talks to the Docker engine
and binds the HTTP API; everything below gets what it needs passed in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gateway import addresses
from gateway.runtime import Runtime
from gateway.secret_refs import SecretError
from gateway.spec import ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from plugins.host import StrategyHost, StrategyState
from supervisor import lifecycle as lc
from supervisor import sdnotify
from supervisor.alertpolicy import Alert, Redactor, Severity
from supervisor.api import ApiServer, create_app
from supervisor.api_views import Health
from supervisor.budget import ledger_from_record
from supervisor.fleet_loop import Supervisor
from supervisor.fleet_settings import StorageSettings
from supervisor.gateway_controller import Clock, utc_now
from supervisor.journal import AsyncJournal, JournalError, SqliteJournal
from supervisor.metrics import FleetMetrics
from supervisor.notify import (
    AlertDispatcher,
    Notifier,
    NotifyConfigError,
    build_routes,
    fleet_redactor,
)
from supervisor.settings import FleetSettings, RuntimeKind
from supervisor.strategy_wiring import HostControl, build_host

if TYPE_CHECKING:
    from supervisor.journal.postgres import PostgresJournal

log = logging.getLogger("ibfleet.run")


class StartupError(Exception):
    """The supervisor cannot start; the message says what to fix."""


# ------------------------------------------------------------------------------ logging


class RedactingFilter(logging.Filter):
    """Last line of defence: no secret value leaves through a log record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redactor.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_redaction(redactor: Redactor) -> Callable[[], None]:
    """Put a :class:`RedactingFilter` on every root handler; returns what takes it off again.

    On the handlers, not the root logger: a logger's filters never see records that propagate
    from child loggers, which is where every ibfleet record comes from.
    """
    flt = RedactingFilter(redactor)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(flt)

    def remove() -> None:
        for handler in handlers:
            handler.removeFilter(flt)

    return remove


def configure_logging(*, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """One structured line per event: ``time level logger event key=value ...``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn", "apprise", "docker", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The probe reports what the client library would log (refused connects, 1100, ...) as
    # lifecycle events of its own; the library's copies would only repeat them.
    for chatty in ("ib_async", "ib_insync"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)


# ------------------------------------------------------------------------------ journal


def open_journal(
    storage: StorageSettings, environ: Mapping[str, str]
) -> SqliteJournal | PostgresJournal:
    """The journal ``storage`` names: the SQLite file, or (``url``) PostgreSQL, led by us.

    A PostgreSQL journal another supervisor leads is refused as a locked SQLite file is.
    """
    if storage.url is None:
        return SqliteJournal(storage.path, wait=storage.write_wait.total_seconds())
    journal = shared_journal(storage, environ)
    if journal.try_lead():
        return journal
    led = journal.leader()
    journal.close()
    holder = "another supervisor" if led is None else f"{led.holder} (epoch {led.epoch})"
    raise JournalError(
        f"journal {journal.where} is led by {holder}; a supervisor must never act twice on "
        "one journal (its lease ends within storage.lease once that supervisor stops)"
    )


def shared_journal(storage: StorageSettings, environ: Mapping[str, str]) -> PostgresJournal:
    """The PostgreSQL journal ``storage.url`` names, opened without taking the lease."""
    # Imported here: a fleet on SQLite never loads the PostgreSQL driver.
    from supervisor.journal.postgres import PostgresJournal

    assert storage.url is not None
    password = (
        storage.password.resolve(environ=environ).get_secret_value()
        if storage.password is not None
        else None
    )
    return PostgresJournal(
        storage.url,
        password=password,
        wait=storage.write_wait.total_seconds(),
        lease_ttl=storage.lease.total_seconds(),
    )


# ------------------------------------------------------------------------------ journal health

JOURNAL_ALERT = "supervisor:journal"


class JournalWatch:
    """Turns the journal's health into a critical alert and a /readyz problem.

    The journal reports from whichever thread wrote; the alert is raised on the loop.
    """

    def __init__(
        self, dispatcher: AlertDispatcher, path: Path | str, metrics: FleetMetrics | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._path = path
        self._loop = asyncio.get_running_loop()
        self._problem: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def problems(self) -> list[str]:
        return [f"journal {self._path}: {self._problem}"] if self._problem is not None else []

    def listener(self, problem: str | None) -> None:
        self._loop.call_soon_threadsafe(self._changed, problem)

    def _changed(self, problem: str | None) -> None:
        if self._metrics is not None:
            self._metrics.set_journal_writable(problem is None)
        if (problem is None) == (self._problem is None):
            self._problem = problem
            return
        self._problem = problem
        if problem is None:
            coro = self._dispatcher.resolve(JOURNAL_ALERT)
        else:
            coro = self._dispatcher.raise_(
                Alert(
                    key=JOURNAL_ALERT,
                    severity=Severity.CRITICAL,
                    title="ibfleet journal cannot be written",
                    body=f"journal {self._path}: {problem}. New orders are refused until it "
                    "can be written; gateways stay supervised. Free the disk or stop the "
                    "process holding the file.",
                )
            )
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ------------------------------------------------------------------------------ isolation

ISOLATION_ALERT = "supervisor:isolation"


async def report_isolation(dispatcher: AlertDispatcher, limits: Sequence[str]) -> None:
    """Say at start-up where the engine keeps ibfleet's network isolation from being enforced.

    A warning, not a refusal: the engine is the operator's choice, and a gateway whose rules
    cannot be installed is not created anyway (the runtime fails closed). On an engine without
    the limits an alert left open by an earlier start is resolved.
    """
    if not limits:
        await dispatcher.resolve(ISOLATION_ALERT)
        return
    for limit in limits:
        log.warning("isolation_not_enforced reason=%r", limit)
    await dispatcher.raise_(
        Alert(
            key=ISOLATION_ALERT,
            severity=Severity.WARNING,
            title="ibfleet cannot enforce network isolation on this Docker engine",
            body="; ".join(limits)
            + ". ibfleet's iptables rules (only the supervisor, its strategies and trusted_ips "
            "reach a gateway's API port and command server) do not apply here, and a gateway is "
            "created only once its rules are installed. Run the fleet on a rootful Docker "
            "engine on a Linux host.",
        )
    )


# ------------------------------------------------------------------------------ building


def intents_maybe_live(host: StrategyHost) -> dict[str, int]:
    """Per strategy, the intents that may be live at IB: those reconciliation did not find, or
    (more, when its last safe state reached no gateway) the ones that run left behind."""
    out: dict[str, int] = {}
    for status in host.strategies():
        runs = host.safe_state_runs(status.name)
        stranded = len(runs[-1].still_live) if runs and not runs[-1].ok else 0
        out[status.name] = max(status.unknown_intents, stranded)
    return out


def resolve_credentials(
    settings: FleetSettings, environ: Mapping[str, str]
) -> dict[str, GatewaySecrets]:
    """Every gateway's username and password, or a StartupError listing each one missing."""
    out: dict[str, GatewaySecrets] = {}
    missing: list[str] = []
    for gw in settings.gateways:
        try:
            out[gw.name] = GatewaySecrets(
                username=gw.username.resolve(environ=environ),
                password=gw.password.resolve(environ=environ),
            )
        except SecretError as exc:
            missing.append(f"gateways[{gw.name}]: {exc}")
    if missing:
        raise StartupError("secrets cannot be read:\n  " + "\n  ".join(missing))
    return out


def fingerprint_key_path(settings: FleetSettings) -> Path:
    return settings.storage.path.with_name(settings.storage.path.name + ".spec-key")


def desired_specs(
    settings: FleetSettings,
    credentials: Mapping[str, GatewaySecrets],
    *,
    fingerprint_key: bytes,
    control_from: Sequence[str] = (),
) -> list[ContainerSpec]:
    """The containers the fleet file asks for (with the simulator's broker when it is on)."""
    sim = settings.simulator
    if sim.enabled and settings.runtime.kind in (RuntimeKind.DOCKER, RuntimeKind.SWARM):
        # The simulator's broker is one more container (on Swarm, one more service).
        from supervisor.simfleet import render_sim_fleet

        return render_sim_fleet(
            settings.gateways,
            fleet=settings.fleet,
            network=settings.runtime.network,
            image=sim.image,
            timezone=settings.timezone,
            secrets=credentials,
            fingerprint_key=fingerprint_key,
            control_port=sim.control_port,
            default_daily_restart=settings.default_daily_restart,
            twofa_users=[
                credentials[name].username.get_secret_value()
                for name in sim.twofa_gateways
                if name in credentials
            ],
        )
    image_of = sim.image if sim.enabled else settings.runtime.image
    return [
        render_spec(
            gw,
            fleet=settings.fleet,
            network=settings.runtime.network,
            image=gw.image or image_of,
            timezone=settings.timezone,
            secrets=credentials[gw.name],
            fingerprint_key=fingerprint_key,
            control_from=control_from,
            default_daily_restart=settings.default_daily_restart,
        )
        for gw in settings.gateways
    ]


@dataclass
class Running:
    """A started supervisor and what must be closed with it."""

    supervisor: Supervisor
    api: ApiServer
    dispatcher: AlertDispatcher
    notifier: Notifier
    journal: AsyncJournal
    host: StrategyHost | None = None
    unredact: Callable[[], None] | None = None

    @property
    def api_url(self) -> str:
        return addresses.local_url(self.supervisor.settings.api.host, self.api.port)

    async def close(self, *, hand_over: bool = False) -> None:
        """Stop supervising and serving; the gateway containers keep running.

        Every order gate closes with kind SHUTDOWN first, so strategies apply their shutdown
        policy (``safe_state.on_shutdown``) while their gateways still answer; then they stop.
        ``hand_over`` (the lease was lost: a new leader owns the fleet): no policy runs, the
        strategies' sessions just close.
        """
        if not hand_over:
            await self.supervisor.close_gates()
        if self.host is not None:
            await self.host.stop(hand_over=hand_over)
        await self.api.stop()
        await self.supervisor.stop()
        await self.dispatcher.stop()
        self.notifier.close()
        await self.journal.aclose()
        if self.unredact is not None:
            self.unredact()


async def start_supervisor(
    settings: FleetSettings,
    *,
    environ: Mapping[str, str],
    runtime: Runtime,
    specs: Sequence[ContainerSpec] | None = None,
    clock: Clock = utc_now,
    console: TextIO | None = None,
    api_port: int | None = None,
    extra: Callable[[Supervisor], None] | None = None,
    supervisor_options: Mapping[str, Any] | None = None,
    isolation_limits: Sequence[str] = (),
    journal: SqliteJournal | PostgresJournal | None = None,
    health: Callable[[], Health] | None = None,
) -> Running:
    """Open the journal, restore state, start reconcile, probes, alerts and the HTTP API.

    ``isolation_limits`` say why the engine cannot enforce the fleet's network isolation
    (:func:`gateway.firewall.isolation_limits`); they are logged and raised as a warning.
    ``journal``: one already open and led (a standby taking over); ``health``: the role
    /healthz reports (:class:`supervisor.standby.RoleDriver`).
    """
    credentials = resolve_credentials(settings, environ)
    if journal is None:
        try:
            journal = open_journal(settings.storage, environ)
        except Exception as exc:
            raise StartupError(str(exc)) from None
    ajournal = AsyncJournal(journal)
    try:
        redactor = fleet_redactor(settings, environ=environ)
        policy, senders, _ = build_routes(
            settings.alerts, environ=environ, console=console, fleet=settings
        )
        token = (
            settings.api.token.resolve(environ=environ).get_secret_value()
            if settings.api.token is not None
            else None
        )
    except (SecretError, NotifyConfigError) as exc:
        await ajournal.aclose()
        raise StartupError(f"alerts or api: {exc}") from None
    unredact = install_redaction(redactor)
    version = _version()
    metrics = FleetMetrics(
        version=version,
        redactor=redactor,
        strategy_states=[state.name for state in StrategyState],
    )
    notifier = Notifier(senders, redactor=redactor)
    dispatcher = await AlertDispatcher.restore(
        policy=policy, redactor=redactor, notifier=notifier, store=ajournal, metrics=metrics
    )
    metrics.sample_open_alerts(lambda: len(dispatcher.book.open_keys()))
    watch = JournalWatch(dispatcher, settings.storage.where, metrics)
    journal.add_listener(watch.listener)
    restored: dict[str, lc.GatewayStatus] = {}
    for gw in settings.gateways:
        record = await ajournal.load_record(f"gateway:{gw.name}")
        if record is not None:
            try:
                restored[gw.name] = lc.GatewayStatus.from_record(record)
            except ValueError as exc:
                log.warning("state_not_restored gateway=%s error=%s", gw.name, exc)
    # An operator's stop survives this restart: the orchestrator holds those gateways.
    operator_stopped = {
        name
        for name, state in (await ajournal.operator_states()).items()
        if state.stopped_by_operator
    }
    ledger_record = await ajournal.load_login_ledger()
    limit = max((gw.logins_per_hour for gw in settings.gateways), default=4)
    ledger = ledger_from_record(ledger_record or {}, limit=limit)
    if specs is None:
        from gateway.secret_files import load_or_create_fingerprint_key

        key = load_or_create_fingerprint_key(fingerprint_key_path(settings))
        specs = desired_specs(settings, credentials, fingerprint_key=key)
    supervisor = Supervisor(
        settings=settings,
        runtime=runtime,
        desired=specs,
        journal=ajournal,
        dispatcher=dispatcher,
        metrics=metrics,
        clock=clock,
        restored=restored,
        ledger=ledger,
        usernames={n: c.username.get_secret_value() for n, c in credentials.items()},
        operator_stopped=operator_stopped,
        **dict(supervisor_options or {}),
    )
    if extra is not None:
        extra(supervisor)
    host: StrategyHost | None = None
    control: HostControl | None = None
    if any(s.enabled for s in settings.strategies):
        host = build_host(
            supervisor, store=journal, dispatcher=dispatcher, metrics=metrics, clock=clock
        )
        control = HostControl(host)
        metrics.sample_intents_maybe_live(functools.partial(intents_maybe_live, host))
    api = ApiServer(
        create_app(
            supervisor,
            token=token,
            strategies=control,
            docs=settings.api.docs,
            allowed_hosts=settings.api.allowed_hosts,
            problems=watch.problems,
            role=health,
        ),
        host=settings.api.host,
        port=settings.api.port if api_port is None else api_port,
    )
    dispatcher.start()
    await report_isolation(dispatcher, isolation_limits)
    await supervisor.start()
    try:
        await api.start()
        if host is not None:
            await host.start()
    except Exception:
        await api.stop()
        await supervisor.stop()
        await dispatcher.stop()
        notifier.close()
        await ajournal.aclose()
        unredact()
        raise
    log.info(
        "supervisor_started fleet=%s gateways=%d api=%s:%d version=%s",
        settings.fleet,
        len(settings.gateways),
        settings.api.host,
        api.port,
        version,
    )
    return Running(supervisor, api, dispatcher, notifier, ajournal, host, unredact)


def docker_runtime(
    settings: FleetSettings, *, environ: Mapping[str, str]
) -> tuple[Runtime, list[str], dict[str, Any]]:
    """The Docker runtime for where this process runs (:mod:`supervisor.placement`; on
    ``runtime.kind: swarm`` the Swarm runtime), why the engine cannot enforce the fleet's
    network isolation (empty: it can), and the supervisor's options that follow from it; or a
    StartupError saying what is missing."""
    import docker

    from supervisor import placement

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        raise StartupError(f"no Docker engine answers: {exc}") from None
    try:
        if settings.runtime.kind is RuntimeKind.SWARM:
            from gateway.secret_files import load_or_create_fingerprint_key

            # The spec-hash key names the secrets too (a standby's file follows the journal).
            key = load_or_create_fingerprint_key(fingerprint_key_path(settings))
            setup = placement.swarm_runtime_for(client, settings, environ=environ, secret_key=key)
        else:
            setup = placement.docker_runtime_for(client, settings, environ=environ)
    except placement.StartupRefused as exc:
        raise StartupError(str(exc)) from None
    except docker.errors.DockerException as exc:
        raise StartupError(
            f"the Docker engine failed while placing the supervisor: {exc}"
        ) from None
    if settings.simulator.enabled:
        try:
            client.images.get(settings.simulator.image)
        except docker.errors.ImageNotFound:
            raise StartupError(
                f"the simulator image {settings.simulator.image} is not built: run "
                f"`ibfleet sim image --tag {settings.simulator.image}` first"
            ) from None
    return setup.runtime, setup.limits, {"api_endpoint": setup.endpoint}


async def in_process_runtime(
    settings: FleetSettings, credentials: Mapping[str, GatewaySecrets]
) -> Runtime:
    """Simulated gateways inside this process, with the broker's control API on loopback."""
    from ibsim.runtime import InProcessRuntime

    twofa = {
        credentials[name].username.get_secret_value()
        for name in settings.simulator.twofa_gateways
        if name in credentials
    }
    runtime = InProcessRuntime(twofa_users=twofa)
    url = await runtime.start_control(settings.simulator.control_port)
    log.info("simulator_control url=%s", url)
    return runtime


async def run_until_signalled(settings: FleetSettings, *, environ: Mapping[str, str]) -> None:
    """``ibfleet run``: supervise until SIGTERM or SIGINT, then stop and leave gateways running."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, environ=environ, stop=stop)


async def serve(
    settings: FleetSettings,
    *,
    environ: Mapping[str, str],
    stop: asyncio.Event,
    runtime: Runtime | None = None,
) -> None:
    """Supervise until ``stop`` is set, telling a systemd ``Type=notify`` unit how it goes.

    READY=1 goes out once :func:`start_supervisor` returned: the running containers are adopted
    and the API serves. ``runtime`` defaults to the one the settings name.
    """
    try:
        notifier = sdnotify.from_environment(environ)
        interval = sdnotify.watchdog_interval(environ, pid=os.getpid())
    except sdnotify.ServiceNotifyError as exc:
        raise StartupError(str(exc)) from None
    if settings.storage.url is not None:
        # A shared journal: standby until the lease is won (imported here: it builds on this).
        from supervisor.shared_run import serve_shared

        await serve_shared(
            settings,
            environ=environ,
            stop=stop,
            runtime=runtime,
            notifier=notifier,
            interval=interval,
        )
        return
    limits: list[str] = []
    options: dict[str, Any] = {}
    owned = runtime is None
    if runtime is None and settings.runtime.kind is RuntimeKind.IN_PROCESS:
        runtime = await in_process_runtime(settings, resolve_credentials(settings, environ))
    elif runtime is None:
        # Blocking engine calls (and the firewall helper's start): off the event loop.
        docker_setup: tuple[Runtime, list[str], dict[str, Any]] = await asyncio.to_thread(
            docker_runtime, settings, environ=environ
        )
        runtime, limits, options = docker_setup
    running = await start_supervisor(
        settings,
        environ=environ,
        runtime=runtime,
        isolation_limits=limits,
        supervisor_options=options,
    )
    supervisor = running.supervisor
    service = sdnotify.SystemdService(
        notifier,
        interval=interval,
        summary=lambda: sdnotify.fleet_summary(supervisor.gateways()),
        alive=supervisor.alive,
    )
    service.ready()
    try:
        await stop.wait()
        log.info("supervisor_stopping reason=signal gateways=left-running")
    finally:
        await service.stopping()
        await running.close()
        close = getattr(runtime, "close", None)
        if owned and close is not None and settings.runtime.kind is RuntimeKind.IN_PROCESS:
            await close()


def _version() -> str:
    try:
        return metadata.version("ibfleet")
    except metadata.PackageNotFoundError:
        return "unknown"
