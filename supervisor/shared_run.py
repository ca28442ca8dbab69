"""``ibfleet run`` on a shared (PostgreSQL) journal: a standby until the lease is won.

The leader's parts are what :func:`supervisor.wiring.start_supervisor` builds for a single
host; here they are built at each takeover (the runtime too, so a standby never touches the
Docker engine) with every IB or Docker action behind the term's
:class:`supervisor.standby.LeaderGuard`, and torn down without acting when the lease is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import ibc
from gateway import probe as probe_mod
from gateway.runtime import Runtime
from supervisor import sdnotify
from supervisor.gateway_controller import utc_now
from supervisor.journal import JournalError
from supervisor.journal.postgres import PostgresJournal
from supervisor.settings import FleetSettings, RuntimeKind
from supervisor.standby import FencedRuntime, LeaderGuard, RoleDriver, SharedJournal
from supervisor.wiring import (
    Running,
    StartupError,
    desired_specs,
    docker_runtime,
    fingerprint_key_path,
    in_process_runtime,
    resolve_credentials,
    shared_journal,
    start_supervisor,
)

log = logging.getLogger("ibfleet.run")


SPEC_KEY_RECORD = "fleet:spec-key"


def shared_fingerprint_key(journal: PostgresJournal, path: Path) -> bytes:
    """The spec-hash key every supervisor of a shared journal uses: the journal's, else this
    host's file (then saved in the journal). A standby with another key would take every
    running container for drifted and recreate it at takeover. The file follows the journal so
    ``ibfleet plan`` on this host hashes alike."""
    from gateway.secret_files import load_or_create_fingerprint_key

    record = journal.load_record(SPEC_KEY_RECORD)
    if record is None:
        key = load_or_create_fingerprint_key(path)
        journal.save_record(SPEC_KEY_RECORD, {"key": key.hex()}, now=utc_now())
        return key
    key = bytes.fromhex(str(record["key"]))
    if not path.exists() or path.read_bytes() != key:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        log.warning("spec_key_taken_from_journal path=%s", path)
    return key


@dataclass
class _Term:
    """One leadership term: the running supervisor and the runtime it made."""

    running: Running
    runtime: Runtime | None  # an in-process runtime this term owns (closed with it)

    async def close(self, *, hand_over: bool = False) -> None:
        await self.running.close(hand_over=hand_over)
        close = getattr(self.runtime, "close", None)
        if close is not None:
            await close()


async def serve_shared(
    settings: FleetSettings,
    *,
    environ: Mapping[str, str],
    stop: asyncio.Event,
    runtime: Runtime | None,
    notifier: sdnotify.ServiceNotifier,
    interval: float | None,
) -> None:
    """Wait as a standby, lead while the lease holds, step down when it is lost; until
    ``stop``. READY=1 goes to systemd once the standby's API serves."""
    terms: list[_Term] = []

    def open_journal() -> SharedJournal:
        try:
            return shared_journal(settings.storage, environ)
        except JournalError as exc:
            raise StartupError(str(exc)) from None

    async def start_leader(journal: SharedJournal, guard: LeaderGuard) -> _Term:
        assert isinstance(journal, PostgresJournal)  # what open_journal made
        limits: list[str] = []
        options: dict[str, Any] = {}
        owned = runtime is None and settings.runtime.kind is RuntimeKind.IN_PROCESS
        if runtime is not None:
            inner = runtime
        elif owned:
            inner = await in_process_runtime(settings, resolve_credentials(settings, environ))
        else:
            # Where this process runs decides how it dials and guards (supervisor.placement).
            inner, limits, options = await asyncio.to_thread(
                docker_runtime, settings, environ=environ
            )
        credentials = resolve_credentials(settings, environ)
        key = await asyncio.to_thread(
            shared_fingerprint_key, journal, fingerprint_key_path(settings)
        )
        running = await start_supervisor(
            settings,
            environ=environ,
            runtime=FencedRuntime(inner, guard),
            specs=desired_specs(settings, credentials, fingerprint_key=key),
            isolation_limits=limits,
            journal=journal,
            health=driver.health,
            supervisor_options={
                **options,
                "probe_factory": guard.probes(probe_mod.IbAsyncSession),
                "ibc_send": guard.ibc(ibc.send),
            },
        )
        term = _Term(running, inner if owned else None)
        terms[:] = [term]
        return term

    def summary() -> str:
        role = driver.machine.role.value
        if terms and driver.machine.role.value == "leader":
            return f"leader; {sdnotify.fleet_summary(terms[0].running.supervisor.gateways())}"
        return role

    service = sdnotify.SystemdService(
        notifier, interval=interval, summary=summary, alive=lambda: driver.alive()
    )
    ready: list[bool] = []

    def on_standby() -> None:
        if not ready:
            ready.append(True)
            service.ready()

    driver = RoleDriver(
        open_journal=open_journal,
        start_leader=start_leader,
        listen=(settings.api.host, settings.api.port),
        allowed_hosts=tuple(settings.api.allowed_hosts),
        on_standby=on_standby,
    )
    try:
        await driver.run(stop)
    finally:
        if ready:
            await service.stopping()
