"""``ibfleet run`` under a systemd ``Type=notify`` unit: READY, the watchdog, STATUS, STOPPING.

- ``READY=1`` once the fleet is adopted (the running containers listed and taken over) and the
  HTTP API serves, so ``systemctl start`` returns when ``ibfleet status`` can answer.
- ``WATCHDOG=1`` from a task on the supervisor's own event loop, every half of the unit's
  ``WatchdogSec`` (systemd's advice in sd_watchdog_enabled(3)): a wedged loop stops pinging and
  systemd restarts the service; so does a supervisor whose reconcile loop or ticker has died.
- ``STATUS=`` a one-line fleet summary for ``systemctl status``, sent when it changes.
- ``STOPPING=1`` when a stop begins, so systemd knows the slow part (safe state) is shutdown.

The datagrams are sent by libsystemd's own ``sd_notify`` (cysystemd's wheel bundles
libsystemd), so every address form systemd hands out (a path, an abstract ``@name``) is handled
as systemd's own clients handle it. libsystemd reads ``NOTIFY_SOCKET`` from the process
environment; the mapping passed in here only decides whether to notify at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from supervisor.api_views import GatewayView

__all__ = [
    "LibsystemdNotifier",
    "NullNotifier",
    "ServiceNotifier",
    "ServiceNotifyError",
    "SystemdService",
    "fleet_summary",
    "from_environment",
    "watchdog_interval",
]

log = logging.getLogger("ibfleet.systemd")

#: STATUS is re-read this often when no watchdog asks for more frequent wake-ups.
STATUS_EVERY = 5.0


class ServiceNotifyError(ValueError):
    """The service manager's environment cannot be used; the message says which variable."""


class ServiceNotifier(Protocol):
    """One notification to the service manager per call (sd_notify(3)'s assignments)."""

    def ready(self) -> None: ...

    def watchdog(self) -> None: ...

    def status(self, text: str) -> None: ...

    def stopping(self) -> None: ...


class NullNotifier:
    """No service manager asked for notifications (``NOTIFY_SOCKET`` unset)."""

    def ready(self) -> None:
        return None

    def watchdog(self) -> None:
        return None

    def status(self, text: str) -> None:
        return None

    def stopping(self) -> None:
        return None


class LibsystemdNotifier:
    """sd_notify through cysystemd; a failed send is logged once per kind, never raised (the
    supervisor keeps supervising; systemd's own timeouts say what went wrong)."""

    def __init__(self) -> None:
        from cysystemd import daemon

        self._daemon = daemon
        self._failed: set[str] = set()

    def _send(self, kind: Any, value: str | None = None) -> None:
        try:
            if value is None:
                self._daemon.notify(kind, return_exceptions=False)
            else:
                self._daemon.notify(kind, value, return_exceptions=False)
        except (OSError, ValueError) as exc:
            if kind.name not in self._failed:
                self._failed.add(kind.name)
                log.warning("sd_notify_failed kind=%s error=%s", kind.name, exc)
        else:
            self._failed.discard(kind.name)

    def ready(self) -> None:
        self._send(self._daemon.Notification.READY)

    def watchdog(self) -> None:
        self._send(self._daemon.Notification.WATCHDOG)

    def status(self, text: str) -> None:
        # One line: systemd shows STATUS verbatim and a newline would start a new assignment.
        self._send(self._daemon.Notification.STATUS, " ".join(text.split())[:200])

    def stopping(self) -> None:
        self._send(self._daemon.Notification.STOPPING)


def watchdog_interval(environ: Mapping[str, str], *, pid: int) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when none is asked.

    ``WATCHDOG_PID`` names the process the watchdog is meant for; another process's (a child
    that inherited the environment) is not ours to ping for.
    """
    raw = environ.get("WATCHDOG_USEC")
    if raw is None or raw == "":
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            raise ServiceNotifyError(
                f"WATCHDOG_PID={owner!r} is not a process id (set by the service manager)"
            ) from None
    try:
        usec = int(raw)
    except ValueError:
        raise ServiceNotifyError(
            f"WATCHDOG_USEC={raw!r} is not a whole number of microseconds"
        ) from None
    if usec <= 0:
        raise ServiceNotifyError(f"WATCHDOG_USEC={raw!r} must be positive")
    return usec / 2 / 1_000_000


def from_environment(environ: Mapping[str, str]) -> ServiceNotifier:
    """libsystemd's notifier when a service manager set ``NOTIFY_SOCKET``, else a no-op."""
    if not environ.get("NOTIFY_SOCKET"):
        return NullNotifier()
    try:
        return LibsystemdNotifier()
    except ImportError:
        raise ServiceNotifyError(
            "NOTIFY_SOCKET is set (a Type=notify unit) but cysystemd is not installed: "
            "reinstall ibfleet on Linux, or use Type=exec in the unit"
        ) from None


def fleet_summary(gateways: Iterable[GatewayView]) -> str:
    """``2/3 gateways ready; live-b LOGGING_IN`` (the ones not ready, by name)."""
    views = list(gateways)
    ready = sum(1 for v in views if v.ready)
    waiting = [f"{v.name} {v.state}" for v in sorted(views, key=lambda v: v.name) if not v.ready]
    text = f"{ready}/{len(views)} gateways ready"
    return f"{text}; {', '.join(waiting)}" if waiting else text


class SystemdService:
    """Drives a :class:`ServiceNotifier` for one supervisor run.

    ``summary`` is the STATUS line; ``alive`` is False once the supervisor has stopped working
    (then the watchdog stops pinging, and systemd restarts the service).
    """

    def __init__(
        self,
        notifier: ServiceNotifier,
        *,
        interval: float | None,
        summary: Callable[[], str],
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self._notifier = notifier
        self.interval = interval
        self._summary = summary
        self._alive = alive
        self._task: asyncio.Task[None] | None = None
        self._status: str | None = None

    def ready(self) -> None:
        """The fleet is adopted and the API serves: say so, then keep the watchdog fed."""
        self._send_status()
        self._notifier.ready()
        log.info("service_ready watchdog_every=%s", self.interval)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="systemd-notify")

    async def stopping(self, text: str = "stopping: closing order gates") -> None:
        """A stop began; no more watchdog pings are needed (systemd stops the watchdog)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._notifier.stopping()
        self._notifier.status(text)

    def _send_status(self) -> None:
        try:
            text = self._summary()
        except Exception:
            # A summary that cannot be built must not stop the watchdog.
            log.exception("service_status_failed")
            return
        if text != self._status:
            self._status = text
            self._notifier.status(text)

    async def _run(self) -> None:
        every = STATUS_EVERY if self.interval is None else min(self.interval, STATUS_EVERY)
        while True:
            if self.interval is not None:
                if not self._alive():
                    log.error("service_watchdog_stopped reason=supervisor-not-running")
                    return
                # Sent from the loop itself: if the loop is blocked, nothing is sent.
                self._notifier.watchdog()
            self._send_status()
            await asyncio.sleep(every)
