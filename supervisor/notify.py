"""The alert adapter: sends what the pure :class:`~supervisor.alertpolicy.AlertBook` decides.

One :class:`Sender` per route (apprise URLs, or ``console://`` for the demo). Senders block, so
:class:`Notifier` runs them on per-route threads under a deadline: a slow or hung route never
stalls the event loop or another route. :class:`AlertDispatcher` owns the book, persists it to
the journal after every change (a restarted supervisor neither pages twice nor forgets a
resolved notice), retries and repeats on a timer, and counts outcomes per route.

Alert URLs carry credentials: logs name the route and the URL scheme, never the URL, and every
text sent or logged passes through the fleet's :class:`~supervisor.alertpolicy.Redactor`.

One module just past 600 lines on purpose: the senders, the notifier that runs them and the
dispatcher that feeds it share one redaction and one secret-handling rule, read best together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import apprise

from gateway import codes
from gateway.aio import within
from supervisor.alertpolicy import (
    Alert,
    AlertBook,
    AlertPolicy,
    Delivery,
    DeliveryKind,
    Redactor,
    Route,
    Severity,
)
from supervisor.severity import MarketError, MarketSeverity

if TYPE_CHECKING:
    from supervisor.metrics import FleetMetrics
    from supervisor.settings import AlertSettings, FleetSettings

__all__ = [
    "CONSOLE_URL",
    "REPEAT_NOTE",
    "AlertDispatcher",
    "AlertStore",
    "AppriseSender",
    "ConsoleSender",
    "DeliveryResult",
    "Notifier",
    "NotifyConfigError",
    "Sender",
    "build_routes",
    "fleet_redactor",
    "market_severity",
    "url_secrets",
]

log = logging.getLogger(__name__)

CONSOLE_URL = "console://"
# Path segments and query values at least this long are treated as tokens (slack://T/B/X).
_TOKEN_MIN_LEN = 8
#: Leads the body of a message sent again after a restart cut its last attempt short.
REPEAT_NOTE = (
    "(sent again: ibfleet restarted before it knew whether this message was delivered; "
    "it may be a repeat)"
)
# A title is a line, a body a screenful: the most any target is sent.
_MAX_TITLE = 250
_MAX_BODY = 4000


class NotifyConfigError(ValueError):
    """An alert route cannot be built; the message names the route and the URL scheme."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a send did; ``error`` says why it failed (already redacted)."""

    ok: bool
    error: str | None = None


class Sender(Protocol):
    """Sends one message on one route. Blocking; may raise (the Notifier catches)."""

    @property
    def schemes(self) -> tuple[str, ...]:
        """URL schemes of the route, safe to log."""
        ...

    def send(self, *, title: str, body: str, severity: Severity, resolved: bool) -> DeliveryResult:
        """Send and report; never retries (the book does)."""
        ...


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


# Carries the id of the send a log record belongs to, into apprise's worker threads
# (apprise submits its work with the caller's context).
_CAPTURE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "ibfleet_apprise_capture", default=None
)


class _CaptureHandler(logging.Handler):
    """Collects apprise's warnings for the send whose context it runs in."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _CAPTURE.get()
        if sink is not None:
            with contextlib.suppress(Exception):
                sink.append(record.getMessage())


_NOTIFY_TYPE = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
}


class AppriseSender:
    """One apprise.Apprise object for one route's URLs."""

    def __init__(self, *, route: str, urls: Sequence[str], timeout: float = 30.0) -> None:
        if not urls:
            raise NotifyConfigError(f"alert route {route}: no URLs")
        self.route = route
        self._timeout = timeout
        self._apprise = apprise.Apprise()
        for index, url in enumerate(urls):
            if not self._apprise.add(url):
                raise NotifyConfigError(
                    f"alert route {route}: URL #{index + 1} (scheme {_scheme(url)}://) is not "
                    "a URL apprise understands; check its form in the apprise documentation"
                )
        self._schemes = tuple(_scheme(u) for u in urls)
        self._handler = _CaptureHandler(level=logging.WARNING)

    @property
    def schemes(self) -> tuple[str, ...]:
        """URL schemes of the route, safe to log."""
        return self._schemes

    def send(self, *, title: str, body: str, severity: Severity, resolved: bool) -> DeliveryResult:
        """Notify every URL of the route; ok only when all accepted the message."""
        notify_type = apprise.NotifyType.SUCCESS if resolved else _NOTIFY_TYPE[severity]
        reasons: list[str] = []
        token = _CAPTURE.set(reasons)
        logger = logging.getLogger("apprise")
        logger.addHandler(self._handler)
        try:
            # Plain text, declared: each target escapes it its own way (Slack: & < >), so no
            # text is ever read as markup.
            kwargs: dict[str, Any] = {
                "body": body,
                "title": title,
                "notify_type": notify_type,
                "body_format": apprise.NotifyFormat.TEXT,
            }
            if self._timeout > 0 and _notify_takes_timeout():
                kwargs["timeout"] = self._timeout
            result: Any = self._apprise.notify(**kwargs)
        finally:
            logger.removeHandler(self._handler)
            _CAPTURE.reset(token)
        if bool(result):
            return DeliveryResult(ok=True)
        if not reasons:
            # apprise >= 2 also keeps the call's warnings on its result object.
            logs = getattr(result, "logs", None)
            if callable(logs):
                with contextlib.suppress(Exception):
                    reasons = [str(getattr(e, "message", e)) for e in logs()]
        reason = "; ".join(dict.fromkeys(reasons)) or "apprise reported a failure"
        return DeliveryResult(ok=False, error=reason)


@functools.cache
def _notify_takes_timeout() -> bool:
    # apprise >= 2 bounds the whole call itself; older versions only have socket timeouts.
    try:
        return "timeout" in inspect.signature(apprise.Apprise.notify).parameters
    except (TypeError, ValueError):
        return False


class ConsoleSender:
    """Prints alerts to a terminal (the demo's route: ``console://``)."""

    def __init__(self, *, route: str, stream: TextIO | None = None) -> None:
        self.route = route
        self._stream = stream

    @property
    def schemes(self) -> tuple[str, ...]:
        """URL schemes of the route, safe to log."""
        return ("console",)

    def send(self, *, title: str, body: str, severity: Severity, resolved: bool) -> DeliveryResult:
        """Write one block to the stream (stdout unless one was given)."""
        stream = self._stream or sys.stdout
        label = "RESOLVED" if resolved else severity.name
        stream.write(f"[ibfleet alert {label}] {title}\n    {body}\n")
        stream.flush()
        return DeliveryResult(ok=True)


class _AllSenders:
    """A route mixing console:// with apprise URLs: ok when every part is."""

    def __init__(self, parts: Sequence[Sender]) -> None:
        self._parts = tuple(parts)

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(s for p in self._parts for s in p.schemes)

    def send(self, *, title: str, body: str, severity: Severity, resolved: bool) -> DeliveryResult:
        errors = []
        for part in self._parts:
            result = part.send(title=title, body=body, severity=severity, resolved=resolved)
            if not result.ok:
                errors.append(result.error or "failed")
        return DeliveryResult(ok=not errors, error="; ".join(errors) or None)


def make_sender(
    *, route: str, urls: Sequence[str], timeout: float = 30.0, console: TextIO | None = None
) -> Sender:
    """The sender for one route: console://, apprise URLs, or both."""
    console_urls = [u for u in urls if u.strip().lower() == CONSOLE_URL]
    other = [u for u in urls if u.strip().lower() != CONSOLE_URL]
    parts: list[Sender] = []
    if console_urls:
        parts.append(ConsoleSender(route=route, stream=console))
    if other:
        parts.append(AppriseSender(route=route, urls=other, timeout=timeout))
    if not parts:
        raise NotifyConfigError(f"alert route {route}: no URLs")
    return parts[0] if len(parts) == 1 else _AllSenders(parts)


class Notifier:
    """Runs senders off the event loop, one small thread pool per route, under a deadline."""

    def __init__(
        self,
        senders: Mapping[str, Sender],
        *,
        redactor: Redactor,
        deadline: float = 30.0,
        threads_per_route: int = 2,
    ) -> None:
        if deadline <= 0:
            raise ValueError(f"notify deadline must be positive, got {deadline}")
        self._senders = dict(senders)
        self._redactor = redactor
        self._deadline = deadline
        self._pools = {
            name: concurrent.futures.ThreadPoolExecutor(
                max_workers=threads_per_route, thread_name_prefix=f"ibfleet-alert-{name}"
            )
            for name in self._senders
        }

    @property
    def routes(self) -> tuple[str, ...]:
        """Names of the routes this notifier can send to."""
        return tuple(self._senders)

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one delivery; never raises, returns why it failed."""
        sender = self._senders.get(delivery.route)
        if sender is None:
            return DeliveryResult(ok=False, error=f"no alert route named {delivery.route!r}")
        # The last line of defence: whatever a gateway managed to put in the text, no target
        # sees an escape, a control character, a mention or a link label (gateway.codes).
        title = codes.inert(self._redactor.redact(delivery.title), limit=_MAX_TITLE)
        body = codes.defuse(self._redactor.redact(delivery.body))
        if delivery.repeat:
            body = f"{REPEAT_NOTE}\n{body}"
        body = body[:_MAX_BODY]
        resolved = delivery.kind is DeliveryKind.RESOLVE
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pools[delivery.route],
            _call_send,
            sender,
            title,
            body,
            delivery.severity,
            resolved,
        )
        try:
            result = await within(future, timeout=self._deadline)
        except TimeoutError:
            result = DeliveryResult(ok=False, error=f"no answer within {self._deadline:g}s")
        except Exception as exc:  # a sender bug must not take the dispatcher down
            result = DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if result.error is not None:
            result = DeliveryResult(ok=result.ok, error=self._redactor.redact(result.error))
        log.log(
            logging.INFO if result.ok else logging.WARNING,
            "alert_delivery route=%s schemes=%s kind=%s key=%s attempt=%d ok=%s error=%s",
            delivery.route,
            ",".join(sender.schemes),
            delivery.kind.value,
            delivery.key,
            delivery.attempt,
            result.ok,
            result.error,
        )
        return result

    def close(self) -> None:
        """Stop the route threads (a hung send is abandoned, not awaited)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _call_send(
    sender: Sender, title: str, body: str, severity: Severity, resolved: bool
) -> DeliveryResult:
    try:
        return sender.send(title=title, body=body, severity=severity, resolved=resolved)
    except Exception as exc:
        return DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}")


class AlertStore(Protocol):
    """Where the dispatcher keeps the book (``AsyncJournal`` fits)."""

    async def save_alert_book(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace the stored record."""
        ...

    async def load_alert_book(self) -> dict[str, Any] | None:
        """The stored record, or None."""
        ...


class AlertDispatcher:
    """Drives the alert book: sends its deliveries concurrently, reports back, persists."""

    def __init__(
        self,
        *,
        book: AlertBook,
        notifier: Notifier,
        store: AlertStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: FleetMetrics | None = None,
        idle_poll: timedelta = timedelta(seconds=30),
    ) -> None:
        self.book = book
        self._notifier = notifier
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._idle_poll = idle_poll
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def restore(
        cls,
        *,
        policy: AlertPolicy,
        redactor: Redactor,
        notifier: Notifier,
        store: AlertStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: FleetMetrics | None = None,
        idle_poll: timedelta = timedelta(seconds=30),
    ) -> AlertDispatcher:
        """A dispatcher whose book is the one last saved in ``store`` (or a fresh one)."""
        record = await store.load_alert_book()
        if record is None:
            book = AlertBook(policy=policy, redactor=redactor)
        else:
            book = AlertBook.from_record(record, policy=policy, redactor=redactor)
            log.info(
                "alert_book_restored open=%d pending=%d",
                len(book.open_keys()),
                len(book.pending_ids()),
            )
        return cls(
            book=book,
            notifier=notifier,
            store=store,
            clock=clock,
            metrics=metrics,
            idle_poll=idle_poll,
        )

    # -- commands --------------------------------------------------------------------------

    async def raise_(self, alert: Alert) -> list[Delivery]:
        """Open ``alert`` (nothing is sent if its key is already open)."""
        deliveries = self.book.raise_(alert, self._clock())
        await self._after_change(deliveries)
        return deliveries

    async def resolve(self, key: str) -> list[Delivery]:
        """Close ``key`` and send the resolved notices."""
        deliveries = self.book.resolve(key, self._clock())
        await self._after_change(deliveries)
        return deliveries

    async def tick(self) -> list[Delivery]:
        """Send retries and repeats that are due now."""
        deliveries = self.book.due(self._clock())
        if deliveries:
            await self._after_change(deliveries)
        return deliveries

    async def wait_idle(self, timeout: float) -> None:
        """Wait until no delivery is in flight (raises TimeoutError after ``timeout``)."""
        await within(self._idle.wait(), timeout)

    # -- timer -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the retry/repeat timer on the running loop."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(
                self._run(), name="ibfleet-alert-timer"
            )

    async def stop(self, *, drain: float = 5.0) -> None:
        """Stop the timer; give in-flight deliveries ``drain`` seconds, then cancel them."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=drain)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self._persist()

    async def _run(self) -> None:
        while True:
            due_at = self.book.next_due()
            wait = self._idle_poll.total_seconds()
            if due_at is not None:
                wait = min(wait, max(0.0, (due_at - self._clock()).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), timeout=wait)
            try:
                await self.tick()
            except Exception:
                log.exception("alert_timer_failed")

    # -- internals -------------------------------------------------------------------------

    async def _after_change(self, deliveries: Iterable[Delivery]) -> None:
        # Persist before sending: a crash after the send then repeats it (at-least-once),
        # never loses it.
        await self._persist()
        for delivery in deliveries:
            task = asyncio.get_running_loop().create_task(
                self._send(delivery), name=f"ibfleet-alert-{delivery.id}"
            )
            self._tasks.add(task)
            self._idle.clear()
            task.add_done_callback(self._task_done)
        self._wake.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _send(self, delivery: Delivery) -> None:
        result = await self._notifier.deliver(delivery)
        if self._metrics is not None:
            if result.ok:
                self._metrics.alert_sent(delivery.route, delivery.severity.name.lower())
            else:
                self._metrics.alert_failed(delivery.route)
        retry = self.book.delivered(delivery.id, result.ok, self._clock())
        if retry is not None:
            log.info(
                "alert_retry_scheduled route=%s key=%s attempt=%d",
                retry.route,
                retry.key,
                retry.attempt,
            )
        await self._persist()
        self._wake.set()

    async def _persist(self) -> None:
        try:
            await self._store.save_alert_book(self.book.to_record(), now=self._clock())
        except Exception as exc:
            # Alerting goes on without the journal; the next change tries again.
            log.error("alert_book_save_failed error=%s", type(exc).__name__)


# -- building from settings ------------------------------------------------------------------


def url_secrets(url: str) -> set[str]:
    """The parts of an apprise URL to keep out of messages: the URL, passwords, tokens."""
    out = {url}
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.add(parts.password)
        out.add(urllib.parse.unquote(parts.password))
    # Webhook tokens sit in the path or the query (slack://TokenA/TokenB/TokenC, ?token=...).
    candidates = [seg for seg in parts.path.split("/") if seg]
    host = parts.netloc.rpartition("@")[2]  # not .hostname: that lower-cases the token
    if host and "." not in host and ":" not in host and host != "localhost":
        candidates.append(host)  # a dotless "host" is a token (slack://TokenA/...)
    candidates.extend(v for _k, v in urllib.parse.parse_qsl(parts.query))
    if parts.username and parts.scheme not in ("mailto", "mailtos"):
        candidates.append(parts.username)  # token-in-user forms (ntfy://token@host)
    out.update(c for c in candidates if len(c) >= _TOKEN_MIN_LEN and "@" not in c)
    return out


def market_severity(fleet: FleetSettings) -> MarketSeverity:
    """The policy's ``severity_at`` for ``fleet``: lost gateways by their strategies' markets."""
    try:
        return MarketSeverity.build(
            strategies=[(s.name, s.gateways) for s in fleet.strategies],
            strategy_markets=fleet.alerts.markets,
            idle=dict(fleet.alerts.gateway_severity),
            gateways=[gw.name for gw in fleet.gateways],
        )
    except MarketError as exc:
        raise NotifyConfigError(str(exc)) from None


def build_routes(
    settings: AlertSettings,
    *,
    environ: Mapping[str, str],
    timeout: float = 30.0,
    console: TextIO | None = None,
    fleet: FleetSettings | None = None,
) -> tuple[AlertPolicy, dict[str, Sender], set[str]]:
    """Policy, one sender per route (named ``routes[i]``) and the URLs' secret parts.

    With ``fleet``, a lost gateway's severity follows its strategies' market hours.
    """
    routes: list[Route] = []
    senders: dict[str, Sender] = {}
    secrets: set[str] = set()
    for index, route in enumerate(settings.routes):
        name = f"routes[{index}]"
        urls = [ref.resolve(environ=environ).get_secret_value().strip() for ref in route.urls]
        for url in urls:
            if url.lower() != CONSOLE_URL:
                secrets |= url_secrets(url)
        senders[name] = make_sender(route=name, urls=urls, timeout=timeout, console=console)
        routes.append(Route(name=name, min_severity=route.min_severity))
        log.info(
            "alert_route_built route=%s schemes=%s min_severity=%s",
            name,
            ",".join(senders[name].schemes),
            route.min_severity.name.lower(),
        )
    policy = AlertPolicy(routes=tuple(routes), repeat_critical_every=settings.repeat_critical_every)
    if fleet is not None:
        policy = dataclasses.replace(policy, severity_at=market_severity(fleet))
    return policy, senders, secrets


def fleet_redactor(
    settings: FleetSettings, *, environ: Mapping[str, str], extra: Iterable[str] = ()
) -> Redactor:
    """A redactor for every secret value of the fleet that resolves now.

    Passwords (the journal's too), the API token and alert URLs are secrets; IB usernames are
    not (2FA alerts name the username on purpose so the operator knows which phone to look at).
    """
    values: set[str] = set(extra)
    refs = [gw.password for gw in settings.gateways]
    if settings.api.token is not None:
        refs.append(settings.api.token)
    if settings.storage.password is not None:
        refs.append(settings.storage.password)  # the PostgreSQL journal's
    for ref in refs:
        if ref.missing_reason(environ=environ) is None:
            values.add(ref.resolve(environ=environ).get_secret_value())
    for route in settings.alerts.routes:
        for ref in route.urls:
            if ref.missing_reason(environ=environ) is None:
                url = ref.resolve(environ=environ).get_secret_value().strip()
                if url.lower() != CONSOLE_URL:
                    values |= url_secrets(url)
    return Redactor(secrets=frozenset(v for v in values if v))
