"""Alert policy: one incident per problem, routing by severity, repeats, retries, redaction.

Alerts are raised per cause (``gateway:paper-a:stall``, ``gateway:paper-a:degraded``) and
grouped into incidents by their owner (``gateway:paper-a``): an incident pages once when it
opens, sends an update only when its severity rises, and one resolved notice when its last
cause is gone; its text lists every cause. A cause's severity may depend on the time (market
hours): the policy's ``severity_at`` decides it, and :meth:`AlertBook.due` re-evaluates it.

Pure: the book decides what to send and when; an adapter (apprise) does the sending and
reports back through :meth:`AlertBook.delivered`. The book's state is a plain record so the
journal can persist it and a restarted supervisor neither pages again for an open problem
nor forgets to say it was resolved. Delivery is at-least-once: a delivery that was in flight
when the supervisor stopped is sent again after a restore.

One module past 600 lines on purpose: :class:`AlertBook` is one state machine, and its
record readers at the bottom check the very fields it writes, so they stay beside it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "STANDALONE_PROBLEMS",
    "Alert",
    "AlertBook",
    "AlertPolicy",
    "AlertRecordError",
    "Delivery",
    "DeliveryKind",
    "Redactor",
    "Route",
    "Severity",
    "incident_of_key",
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
    UPDATE = "update"  # an open incident's severity rose
    REPEAT = "repeat"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Alert:
    """A cause to tell a human about; ``key`` names it (``gateway:paper-a:2fa``)."""

    key: str
    severity: Severity
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Route:
    """Where alerts go: an identifier of a set of notification URLs, and the least severity."""

    name: str
    min_severity: Severity = Severity.WARNING


#: Problems that are their own incident: each asks the operator to act now (approve the IB Key
#: prompt) or announces a later event, so it must be sent even while its gateway's incident is
#: already at its top severity.
STANDALONE_PROBLEMS = frozenset({"2fa", "reauth"})


def incident_of_key(key: str) -> str:
    """The incident of a cause: its owner (``gateway:paper-a:stall`` -> ``gateway:paper-a``).

    Keys without an owner part, and standalone problems, are incidents of their own.
    """
    kind, sep, rest = key.partition(":")
    owner, sep2, problem = rest.partition(":")
    if not (sep and sep2 and kind and owner) or problem in STANDALONE_PROBLEMS:
        return key
    return f"{kind}:{owner}"


def _as_raised(alert: Alert, now: datetime) -> Severity:
    del now
    return alert.severity


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Routing, grouping and timing knobs; the wiring fills this from settings."""

    routes: tuple[Route, ...]
    repeat_critical_every: timedelta | None = timedelta(minutes=30)
    retry_base: timedelta = timedelta(seconds=10)
    retry_cap: timedelta = timedelta(minutes=10)
    max_attempts: int = 20
    incident_of: Callable[[str], str] = incident_of_key
    # A cause's severity at an instant (market hours); must be pure.
    severity_at: Callable[[Alert, datetime], Severity] = _as_raised

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
    #: Sent again after a restart that cut the last attempt short: it may have arrived, so
    #: the message says it may be a repeat (at-least-once; a lost page would be worse).
    repeat: bool = False


class _Stage(enum.Enum):
    IN_FLIGHT = "in_flight"
    RETRY = "retry"
    # In flight for an incident resolved meanwhile: its outcome is recorded, never retried.
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class _Pending:
    delivery: Delivery
    stage: _Stage
    not_before: datetime


@dataclass(frozen=True, slots=True)
class _Incident:
    """One problem of one owner: its open causes, and what has been said about it."""

    id: str
    causes: tuple[Alert, ...]  # open, in the order they were raised
    seen: tuple[Alert, ...]  # every cause since it opened, for the resolved notice
    raised_at: datetime
    routes: tuple[str, ...]  # routes it was announced to
    severity: Severity  # the highest severity announced
    last_sent: datetime
    delivered_to: frozenset[str] = frozenset()


def _owner_of(incident: str) -> str:
    return incident.partition(":")[2].partition(":")[0] or incident


def _text(incident: str, causes: tuple[Alert, ...]) -> tuple[str, str]:
    """Title and body of an incident: one cause speaks for itself; several are listed."""
    if len(causes) == 1:
        return causes[0].title, causes[0].body
    owner = _owner_of(incident)
    prefix = f"{owner}: "
    parts = [c.title[len(prefix) :] if c.title.startswith(prefix) else c.title for c in causes]
    title = f"{owner}: {'; '.join(dict.fromkeys(parts))}"
    body = "\n".join(f"- {c.body}" for c in causes)
    return title, body


@dataclass
class AlertBook:
    """The alert state machine for the whole fleet; methods take ``now`` and return deliveries.

    Dedup: while a cause key is open, raising it again sends nothing; a new cause of an open
    incident sends nothing unless it raises the incident's severity (then an update goes to
    every route that takes the new severity). Resolve: when the last cause goes, one notice
    per route the incident went to (delivered or still in flight); a raise still waiting for
    a retry is dropped instead, so nobody gets "resolved" for an alert they never saw.
    """

    policy: AlertPolicy
    redactor: Redactor = field(default_factory=Redactor)
    _incidents: dict[str, _Incident] = field(default_factory=dict)
    _cause_incident: dict[str, str] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _seq: int = 0
    _dropped: int = 0

    # -- queries ---------------------------------------------------------------------------

    def is_open(self, key: str) -> bool:
        """True while cause ``key`` has been raised and not resolved."""
        return key in self._cause_incident

    def open_keys(self) -> frozenset[str]:
        """Keys of all open causes."""
        return frozenset(self._cause_incident)

    def open_incidents(self) -> dict[str, frozenset[str]]:
        """Each open incident and the keys of its open causes."""
        return {i.id: frozenset(c.key for c in i.causes) for i in self._incidents.values()}

    def open_causes(self) -> list[tuple[Alert, datetime]]:
        """Every open cause (redacted) and when its incident opened, oldest incident first."""
        incidents = sorted(self._incidents.values(), key=lambda i: i.raised_at)
        return [(cause, i.raised_at) for i in incidents for cause in i.causes]

    def pending_ids(self) -> frozenset[str]:
        """Ids of deliveries in flight or waiting for a retry."""
        return frozenset(self._pending)

    @property
    def dropped(self) -> int:
        """Deliveries given up after ``max_attempts`` failures (for a metric)."""
        return self._dropped

    # -- commands --------------------------------------------------------------------------

    def raise_(self, alert: Alert, now: datetime) -> list[Delivery]:
        """Open cause ``alert``; its incident's first deliveries, an update, or nothing."""
        _require_aware(now)
        if alert.key in self._cause_incident:
            return []
        clean = Alert(
            key=alert.key,
            severity=alert.severity,
            title=self.redactor.redact(alert.title),
            body=self.redactor.redact(alert.body),
        )
        incident_id = self.policy.incident_of(clean.key)
        self._cause_incident[clean.key] = incident_id
        entry = self._incidents.get(incident_id)
        if entry is None:
            severity = self.policy.severity_at(clean, now)
            routes = self.policy.routes_for(severity)
            entry = _Incident(
                id=incident_id,
                causes=(clean,),
                seen=(clean,),
                raised_at=now,
                routes=routes,
                severity=severity,
                last_sent=now,
            )
            self._incidents[incident_id] = entry
            return self._announce(entry, DeliveryKind.RAISE, routes, now)
        seen = entry.seen if any(c.key == clean.key for c in entry.seen) else (*entry.seen, clean)
        self._incidents[incident_id] = replace(entry, causes=(*entry.causes, clean), seen=seen)
        return self._escalate(incident_id, now)

    def resolve(self, key: str, now: datetime) -> list[Delivery]:
        """Close cause ``key``; the resolved notices if it was its incident's last cause."""
        _require_aware(now)
        incident_id = self._cause_incident.pop(key, None)
        if incident_id is None:
            return []
        entry = self._incidents[incident_id]
        causes = tuple(c for c in entry.causes if c.key != key)
        if causes:
            # Severity may fall now; saying so would be a page about nothing to do.
            self._incidents[incident_id] = replace(entry, causes=causes)
            return []
        del self._incidents[incident_id]
        heard = set(entry.delivered_to)
        for pid, pending in list(self._pending.items()):
            if pending.delivery.key != incident_id or pending.delivery.kind is DeliveryKind.RESOLVE:
                continue
            if pending.stage is _Stage.IN_FLIGHT:
                heard.add(pending.delivery.route)
                # It may still fail; a retry would then page about a closed incident.
                self._pending[pid] = replace(pending, stage=_Stage.STALE)
            elif pending.stage is _Stage.RETRY:
                # Never reached this route; retrying a stale alert would only confuse.
                del self._pending[pid]
        title, body = _text(incident_id, entry.seen)
        notice = Alert(
            key=incident_id,
            severity=entry.severity,
            title=f"Resolved: {title}",
            body=f"Resolved: {body}",
        )
        return [
            self._send(incident_id, route, DeliveryKind.RESOLVE, notice, now)
            for route in entry.routes
            if route in heard
        ]

    def due(self, now: datetime) -> list[Delivery]:
        """Retries whose time has come, updates of incidents whose severity rose, repeats."""
        _require_aware(now)
        out: list[Delivery] = []
        for pid, pending in sorted(self._pending.items(), key=lambda kv: kv[1].not_before):
            if pending.stage is _Stage.RETRY and pending.not_before <= now:
                self._pending[pid] = replace(pending, stage=_Stage.IN_FLIGHT, not_before=now)
                out.append(pending.delivery)
        for incident_id in sorted(self._incidents):
            out.extend(self._escalate(incident_id, now))
        every = self.policy.repeat_critical_every
        if every is not None:
            for incident_id, entry in sorted(self._incidents.items()):
                if entry.severity is not Severity.CRITICAL or now - entry.last_sent < every:
                    continue
                if self._severity(entry, now) is not Severity.CRITICAL:
                    # Critical no longer (its market closed): skip this repeat, look again later.
                    self._incidents[incident_id] = replace(entry, last_sent=now)
                    continue
                out.extend(self._announce(entry, DeliveryKind.REPEAT, entry.routes, now))
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
            entry = self._incidents.get(delivery.key)
            if entry is not None and delivery.kind is not DeliveryKind.RESOLVE:
                self._incidents[delivery.key] = replace(
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
        """When :meth:`due` next has something to return (for the adapter's timer).

        A severity that rises with the clock (a market opening) is found by the adapter's
        idle poll, not here: the book cannot know when ``severity_at`` changes its answer.
        """
        times = [p.not_before for p in self._pending.values() if p.stage is _Stage.RETRY]
        every = self.policy.repeat_critical_every
        if every is not None:
            times.extend(
                e.last_sent + every
                for e in self._incidents.values()
                if e.severity is Severity.CRITICAL
            )
        return min(times) if times else None

    # -- persistence -----------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible state (texts are stored already redacted)."""
        return {
            "version": 2,
            "seq": self._seq,
            "dropped": self._dropped,
            "incidents": [
                {
                    "id": e.id,
                    "causes": [_alert_record(c) for c in e.causes],
                    "seen": [_alert_record(c) for c in e.seen],
                    "severity": e.severity.name.lower(),
                    "raised_at": _iso(e.raised_at),
                    "last_sent": _iso(e.last_sent),
                    "routes": list(e.routes),
                    "delivered_to": sorted(e.delivered_to),
                }
                for e in self._incidents.values()
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
                    "repeat": p.delivery.repeat,
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
        """Rebuild a book; in-flight deliveries become retries due at once (at-least-once).

        A record written before incidents existed (``open``: one entry per key) is read as
        incidents of their own, so an upgrade neither repages nor forgets a resolve.
        """
        book = cls(policy=policy, redactor=redactor or Redactor())
        book._seq = _int(record.get("seq", 0), "alert record.seq")
        book._dropped = _int(record.get("dropped", 0), "alert record.dropped")
        for index, item in enumerate(_list(record.get("incidents", []), "alert record.incidents")):
            where = f"alert record.incidents[{index}]"
            causes = tuple(
                _alert(c, f"{where}.causes[{n}]")
                for n, c in enumerate(_list(item.get("causes"), f"{where}.causes"))
            )
            seen = tuple(
                _alert(c, f"{where}.seen[{n}]")
                for n, c in enumerate(_list(item.get("seen", []), f"{where}.seen"))
            )
            if not causes:
                raise AlertRecordError(f"{where}.causes: an open incident needs a cause")
            entry = _Incident(
                id=_str(item, "id", where),
                causes=causes,
                seen=seen or causes,
                raised_at=_instant(item, "raised_at", where),
                routes=tuple(_strs(item, "routes", where)),
                severity=_severity(item, where),
                last_sent=_instant(item, "last_sent", where),
                delivered_to=frozenset(_strs(item, "delivered_to", where)),
            )
            book._incidents[entry.id] = entry
            book._cause_incident.update((c.key, entry.id) for c in causes)
        for index, item in enumerate(_list(record.get("open", []), "alert record.open")):
            where = f"alert record.open[{index}]"
            alert = _alert(item, where)
            entry = _Incident(
                id=alert.key,
                causes=(alert,),
                seen=(alert,),
                raised_at=_instant(item, "raised_at", where),
                routes=tuple(_strs(item, "routes", where)),
                severity=alert.severity,
                last_sent=_instant(item, "last_sent", where),
                delivered_to=frozenset(_strs(item, "delivered_to", where)),
            )
            book._incidents[entry.id] = entry
            book._cause_incident[alert.key] = entry.id
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
                # In flight when the process ended: whether it arrived is unknown.
                repeat=item.get("repeat") is True or item.get("stage") == _Stage.IN_FLIGHT.value,
            )
            not_before = _instant(item, "not_before", where)
            if item.get("stage") == _Stage.STALE.value:
                continue  # its incident was resolved: sending it again would page for nothing
            book._pending[delivery.id] = _Pending(delivery, _Stage.RETRY, not_before)
        return book

    # -- internals -------------------------------------------------------------------------

    def _severity(self, entry: _Incident, now: datetime) -> Severity:
        return max(self.policy.severity_at(c, now) for c in entry.causes)

    def _escalate(self, incident_id: str, now: datetime) -> list[Delivery]:
        """An update to every route taking the incident's severity, if it rose; else nothing."""
        entry = self._incidents[incident_id]
        severity = self._severity(entry, now)
        if severity <= entry.severity:
            return []
        routes = self.policy.routes_for(severity)
        entry = replace(
            entry,
            severity=severity,
            routes=tuple(dict.fromkeys((*entry.routes, *routes))),
        )
        self._incidents[incident_id] = entry
        return self._announce(entry, DeliveryKind.UPDATE, routes, now)

    def _announce(
        self, entry: _Incident, kind: DeliveryKind, routes: Iterable[str], now: datetime
    ) -> list[Delivery]:
        title, body = _text(entry.id, entry.causes)
        severity = max(entry.severity, self._severity(entry, now))
        message = Alert(key=entry.id, severity=severity, title=title, body=body)
        self._incidents[entry.id] = replace(entry, last_sent=now)
        return [self._send(entry.id, route, kind, message, now) for route in routes]

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


def _alert_record(alert: Alert) -> dict[str, str]:
    return {
        "key": alert.key,
        "severity": alert.severity.name.lower(),
        "title": alert.title,
        "body": alert.body,
    }


def _alert(item: Mapping[str, Any], where: str) -> Alert:
    return Alert(
        key=_str(item, "key", where),
        severity=_severity(item, where),
        title=_str(item, "title", where),
        body=_str(item, "body", where),
    )


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
