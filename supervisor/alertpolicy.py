"""Alert policy: dedup by problem key, routing by severity, repeats, retries, redaction.

Pure: the book decides what to send and when; an adapter (apprise) does the sending and
reports back through :meth:`AlertBook.delivered`. The book's state is a plain record so the
journal can persist it and a restarted supervisor neither pages again for an open problem
nor forgets to say it was resolved. Delivery is at-least-once: a delivery that was in flight
when the supervisor stopped is sent again after a restore.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "Alert",
    "AlertBook",
    "AlertPolicy",
    "AlertRecordError",
    "Delivery",
    "DeliveryKind",
    "Redactor",
    "Route",
    "Severity",
]


class AlertRecordError(ValueError):
    """A persisted alert record could not be read back; the message names the field."""


class Severity(enum.IntEnum):
    """Ordered so a route's minimum severity is a plain comparison."""

    INFO = 10
    WARNING = 20
    CRITICAL = 30

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"warning"`` -> ``Severity.WARNING``, with an error naming the allowed values."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            allowed = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"severity {text!r}: expected one of {allowed}") from None


class DeliveryKind(enum.Enum):
    """Why a message is sent."""

    RAISE = "raise"
    REPEAT = "repeat"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Alert:
    """A problem to tell a human about; ``key`` names the problem (``gateway:paper-a:2fa``)."""

    key: str
    severity: Severity
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Route:
    """Where alerts go: an identifier of a set of notification URLs, and the least severity."""

    name: str
    min_severity: Severity = Severity.WARNING


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Routing and timing knobs; the wiring fills this from settings."""

    routes: tuple[Route, ...]
    repeat_critical_every: timedelta | None = timedelta(minutes=30)
    retry_base: timedelta = timedelta(seconds=10)
    retry_cap: timedelta = timedelta(minutes=10)
    max_attempts: int = 20

    def __post_init__(self) -> None:
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"alert routes must have distinct names, got {names}")
        if self.repeat_critical_every is not None and self.repeat_critical_every <= timedelta(0):
            raise ValueError(
                f"repeat_critical_every must be positive, got {self.repeat_critical_every}"
            )
        if self.retry_base <= timedelta(0) or self.retry_cap < self.retry_base:
            raise ValueError(
                f"alert retry backoff needs 0 < base <= cap, got {self.retry_base}/{self.retry_cap}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def routes_for(self, severity: Severity) -> tuple[str, ...]:
        """Names of the routes that take alerts of ``severity``."""
        return tuple(r.name for r in self.routes if severity >= r.min_severity)

    def retry_delay(self, attempt: int) -> timedelta:
        """Delay before retry number ``attempt`` (1 = first retry), doubling up to the cap."""
        factor: int = 2 ** min(max(attempt - 1, 0), 32)
        return min(self.retry_cap, self.retry_base * factor)


_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|pwd|passphrase|secret|token|api[_-]?key)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s&;,]+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+(?::[^/\s@]*)?@")
_MASK = "***"


@dataclass(frozen=True, slots=True)
class Redactor:
    """Removes known secret values, ``password=...`` style pairs and URL credentials."""

    secrets: frozenset[str] = frozenset()

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        # Longest first so a secret that contains another is removed whole.
        for secret in sorted((s for s in self.secrets if s), key=len, reverse=True):
            text = text.replace(secret, _MASK)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{_MASK}@", text)
        return _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{_MASK}", text)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one route; the adapter sends it and reports by ``id``."""

    id: str
    key: str
    route: str
    kind: DeliveryKind
    severity: Severity
    title: str
    body: str
    attempt: int = 1


class _Stage(enum.Enum):
    IN_FLIGHT = "in_flight"
    RETRY = "retry"
    # In flight for an alert resolved meanwhile: its outcome is recorded, never retried.
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class _Pending:
    delivery: Delivery
    stage: _Stage
    not_before: datetime


@dataclass(frozen=True, slots=True)
class _Open:
    alert: Alert
    raised_at: datetime
    routes: tuple[str, ...]
    last_sent: datetime
    delivered_to: frozenset[str] = frozenset()


@dataclass
class AlertBook:
    """The alert state machine for the whole fleet; methods take ``now`` and return deliveries.

    Dedup: while a key is open, raising it again sends nothing. Resolve: one notice per route
    the alert went to (delivered or still in flight); a raise still waiting for a retry is
    dropped instead, so nobody gets "resolved" for an alert they never saw.
    """

    policy: AlertPolicy
    redactor: Redactor = field(default_factory=Redactor)
    _open: dict[str, _Open] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _seq: int = 0
    _dropped: int = 0

    # -- queries ---------------------------------------------------------------------------

    def is_open(self, key: str) -> bool:
        """True while ``key`` has been raised and not resolved."""
        return key in self._open

    def open_keys(self) -> frozenset[str]:
        """Keys of all open alerts."""
        return frozenset(self._open)

    def pending_ids(self) -> frozenset[str]:
        """Ids of deliveries in flight or waiting for a retry."""
        return frozenset(self._pending)

    @property
    def dropped(self) -> int:
        """Deliveries given up after ``max_attempts`` failures (for a metric)."""
        return self._dropped

    # -- commands --------------------------------------------------------------------------

    def raise_(self, alert: Alert, now: datetime) -> list[Delivery]:
        """Open ``alert`` and return its first deliveries; nothing if the key is open."""
        _require_aware(now)
        if alert.key in self._open:
            return []
        clean = Alert(
            key=alert.key,
            severity=alert.severity,
            title=self.redactor.redact(alert.title),
            body=self.redactor.redact(alert.body),
        )
        routes = self.policy.routes_for(clean.severity)
        self._open[clean.key] = _Open(clean, now, routes, now)
        return [self._send(clean.key, route, DeliveryKind.RAISE, clean, now) for route in routes]

    def resolve(self, key: str, now: datetime) -> list[Delivery]:
        """Close ``key`` and tell the routes that heard about it; nothing if it is not open."""
        _require_aware(now)
        entry = self._open.pop(key, None)
        if entry is None:
            return []
        heard = set(entry.delivered_to)
        for pid, pending in list(self._pending.items()):
            if pending.delivery.key != key or pending.delivery.kind is DeliveryKind.RESOLVE:
                continue
            if pending.stage is _Stage.IN_FLIGHT:
                heard.add(pending.delivery.route)
                # It may still fail; a retry would then page about a closed alert.
                self._pending[pid] = replace(pending, stage=_Stage.STALE)
            elif pending.stage is _Stage.RETRY:
                # Never reached this route; retrying a stale alert would only confuse.
                del self._pending[pid]
        notice = Alert(
            key=key,
            severity=entry.alert.severity,
            title=f"Resolved: {entry.alert.title}",
            body=f"Resolved: {entry.alert.body}",
        )
        return [
            self._send(key, route, DeliveryKind.RESOLVE, notice, now)
            for route in entry.routes
            if route in heard
        ]

    def due(self, now: datetime) -> list[Delivery]:
        """Retries whose time has come, then repeats of unresolved critical alerts."""
        _require_aware(now)
        out: list[Delivery] = []
        for pid, pending in sorted(self._pending.items(), key=lambda kv: kv[1].not_before):
            if pending.stage is _Stage.RETRY and pending.not_before <= now:
                self._pending[pid] = replace(pending, stage=_Stage.IN_FLIGHT, not_before=now)
                out.append(pending.delivery)
        every = self.policy.repeat_critical_every
        if every is not None:
            for key, entry in sorted(self._open.items()):
                if entry.alert.severity is not Severity.CRITICAL:
                    continue
                if now - entry.last_sent < every:
                    continue
                self._open[key] = replace(entry, last_sent=now)
                out.extend(
                    self._send(key, route, DeliveryKind.REPEAT, entry.alert, now)
                    for route in entry.routes
                )
        return out

    def delivered(self, delivery_id: str, ok: bool, now: datetime) -> Delivery | None:
        """Record the adapter's outcome; a failure schedules a retry, never a wait.

        Returns the retry that was scheduled (not yet due), or None.
        """
        _require_aware(now)
        pending = self._pending.get(delivery_id)
        if pending is None or pending.stage is _Stage.RETRY:
            return None
        if pending.stage is _Stage.STALE:
            del self._pending[delivery_id]
            return None
        delivery = pending.delivery
        if ok:
            del self._pending[delivery_id]
            entry = self._open.get(delivery.key)
            if entry is not None and delivery.kind is not DeliveryKind.RESOLVE:
                self._open[delivery.key] = replace(
                    entry, delivered_to=entry.delivered_to | {delivery.route}
                )
            return None
        if delivery.attempt >= self.policy.max_attempts:
            del self._pending[delivery_id]
            self._dropped += 1
            return None
        retry = replace(delivery, attempt=delivery.attempt + 1)
        not_before = now + self.policy.retry_delay(delivery.attempt)
        self._pending[delivery_id] = _Pending(retry, _Stage.RETRY, not_before)
        return retry

    def next_due(self) -> datetime | None:
        """When :meth:`due` next has something to return (for the adapter's timer)."""
        times = [p.not_before for p in self._pending.values() if p.stage is _Stage.RETRY]
        every = self.policy.repeat_critical_every
        if every is not None:
            times.extend(
                e.last_sent + every
                for e in self._open.values()
                if e.alert.severity is Severity.CRITICAL
            )
        return min(times) if times else None

    # -- persistence -----------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible state (texts are stored already redacted)."""
        return {
            "seq": self._seq,
            "dropped": self._dropped,
            "open": [
                {
                    "key": e.alert.key,
                    "severity": e.alert.severity.name.lower(),
                    "title": e.alert.title,
                    "body": e.alert.body,
                    "raised_at": _iso(e.raised_at),
                    "last_sent": _iso(e.last_sent),
                    "routes": list(e.routes),
                    "delivered_to": sorted(e.delivered_to),
                }
                for e in self._open.values()
            ],
            "pending": [
                {
                    "id": p.delivery.id,
                    "key": p.delivery.key,
                    "route": p.delivery.route,
                    "kind": p.delivery.kind.value,
                    "severity": p.delivery.severity.name.lower(),
                    "title": p.delivery.title,
                    "body": p.delivery.body,
                    "attempt": p.delivery.attempt,
                    "stage": p.stage.value,
                    "not_before": _iso(p.not_before),
                }
                for p in self._pending.values()
            ],
        }

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        *,
        policy: AlertPolicy,
        redactor: Redactor | None = None,
    ) -> AlertBook:
        """Rebuild a book; in-flight deliveries become retries due at once (at-least-once)."""
        book = cls(policy=policy, redactor=redactor or Redactor())
        book._seq = _int(record.get("seq", 0), "alert record.seq")
        book._dropped = _int(record.get("dropped", 0), "alert record.dropped")
        for index, item in enumerate(_list(record.get("open", []), "alert record.open")):
            where = f"alert record.open[{index}]"
            alert = Alert(
                key=_str(item, "key", where),
                severity=_severity(item, where),
                title=_str(item, "title", where),
                body=_str(item, "body", where),
            )
            book._open[alert.key] = _Open(
                alert=alert,
                raised_at=_instant(item, "raised_at", where),
                routes=tuple(_strs(item, "routes", where)),
                last_sent=_instant(item, "last_sent", where),
                delivered_to=frozenset(_strs(item, "delivered_to", where)),
            )
        for index, item in enumerate(_list(record.get("pending", []), "alert record.pending")):
            where = f"alert record.pending[{index}]"
            try:
                kind = DeliveryKind(_str(item, "kind", where))
            except ValueError:
                raise AlertRecordError(f"{where}.kind: unknown kind {item.get('kind')!r}") from None
            delivery = Delivery(
                id=_str(item, "id", where),
                key=_str(item, "key", where),
                route=_str(item, "route", where),
                kind=kind,
                severity=_severity(item, where),
                title=_str(item, "title", where),
                body=_str(item, "body", where),
                attempt=_int(item.get("attempt", 1), f"{where}.attempt"),
            )
            not_before = _instant(item, "not_before", where)
            if item.get("stage") == _Stage.STALE.value:
                continue  # its alert was resolved: sending it again would page for nothing
            book._pending[delivery.id] = _Pending(delivery, _Stage.RETRY, not_before)
        return book

    # -- internals -------------------------------------------------------------------------

    def _send(
        self, key: str, route: str, kind: DeliveryKind, alert: Alert, now: datetime
    ) -> Delivery:
        self._seq += 1
        delivery = Delivery(
            id=f"{self._seq}:{kind.value}:{route}:{key}",
            key=key,
            route=route,
            kind=kind,
            severity=alert.severity,
            title=alert.title,
            body=alert.body,
        )
        self._pending[delivery.id] = _Pending(delivery, _Stage.IN_FLIGHT, now)
        return delivery


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now!r}")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _list(value: object, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise AlertRecordError(f"{where}: expected a list of objects, got {value!r}")
    return value


def _str(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise AlertRecordError(f"{where}.{name}: expected a string, got {value!r}")
    return value


def _strs(item: Mapping[str, Any], name: str, where: str) -> Iterable[str]:
    value = item.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AlertRecordError(f"{where}.{name}: expected a list of strings, got {value!r}")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AlertRecordError(f"{where}: expected an integer, got {value!r}")
    return value


def _severity(item: Mapping[str, Any], where: str) -> Severity:
    text = _str(item, "severity", where)
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise AlertRecordError(f"{where}.severity: {exc}") from None


def _instant(item: Mapping[str, Any], name: str, where: str) -> datetime:
    text = _str(item, name, where)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise AlertRecordError(f"{where}.{name}: {text!r} is not an ISO-8601 timestamp") from None
    if value.tzinfo is None:
        raise AlertRecordError(f"{where}.{name}: {text!r} has no UTC offset")
    return value.astimezone(UTC)
