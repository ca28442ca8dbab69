"""The status record: everything the machine knows about one gateway, and its journal form.

Only fields some transition, the gate or the supervisor reads are kept. A record written by an
older supervisor still loads: fields it lacks default, fields since removed (``restart_planned``)
are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.authlog import RelaunchKind
from gateway.outage import OutageKind
from supervisor.lifecycle.states import READY_STATES, RestartKind, State

__all__ = ["GatewayStatus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """Everything the machine knows about one gateway; immutable, journal-friendly."""

    gateway: str
    username: str
    state: State = State.ABSENT
    since: datetime
    reason: str = ""
    logged_in: bool = False
    api_connected: bool = False
    last_heartbeat: datetime | None = None
    login_deadline: datetime | None = None
    twofa_deadline: datetime | None = None
    degraded_reasons: frozenset[str] = frozenset()
    stall_since: datetime | None = None
    in_window: bool = False
    window_ended_at: datetime | None = None
    restart_kind: RestartKind | None = None
    restart_deadline: datetime | None = None
    api_dropped: bool = False
    restarts: tuple[datetime, ...] = ()  # unplanned restarts, for the retry budget
    login_attempts: tuple[datetime, ...] = ()
    failed_logins: int = 0  # consecutive; the backoff exponent
    backoff_until: datetime | None = None
    restart_count: int = 0
    reauth_at: datetime | None = None
    open_alerts: frozenset[str] = frozenset()
    # The planned outage (relaunch) in progress must be over by then; None: none is planned.
    planned_until: datetime | None = None
    # An API drop before then is read as the planned relaunch of ``expected_relaunch``.
    relaunch_expected_until: datetime | None = None
    expected_relaunch: RelaunchKind | None = None
    window_until: datetime | None = None
    # A log line that would end the session, held while the probe sees it healthy: replayed
    # (``suspect``: the event's name, ``suspect_detail``: IB's text) if the probe loses the
    # API before ``suspect_until``, forgotten otherwise (a forged or stale line).
    suspect: str | None = None
    suspect_detail: str = ""
    suspect_until: datetime | None = None
    # The gate last given to the strategies (GateOrders is emitted when it changes).
    gate_open: bool = False
    gate_kind: OutageKind | None = OutageKind.LOST
    # A rollout replaces the container until then (bounded, should ReplaceFinished be lost):
    # meanwhile the rollout's deadline and rollback decide, never a restart or hold of ours.
    replacing_until: datetime | None = None

    @classmethod
    def initial(cls, *, gateway: str, username: str, now: datetime) -> GatewayStatus:
        """A gateway the supervisor has just learned about."""
        return cls(gateway=gateway, username=username, since=now, reason="new")

    @property
    def ready(self) -> bool:
        """True in API_READY: logged in and answering probes."""
        return self.state in READY_STATES

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible fields, so the journal can persist the machine across restarts."""
        record: dict[str, Any] = {}
        for name in _STR_FIELDS | _BOOL_FIELDS | _INT_FIELDS:
            record[name] = getattr(self, name)
        for name in _INSTANT_FIELDS | _NEW_INSTANT_FIELDS:
            value = getattr(self, name)
            record[name] = None if value is None else value.astimezone(UTC).isoformat()
        record["gate_open"] = self.gate_open
        record["suspect"] = self.suspect
        record["suspect_detail"] = self.suspect_detail
        for name in _INSTANT_TUPLE_FIELDS:
            record[name] = [t.astimezone(UTC).isoformat() for t in getattr(self, name)]
        for name in _STR_SET_FIELDS:
            record[name] = sorted(getattr(self, name))
        record["state"] = self.state.value
        record["restart_kind"] = None if self.restart_kind is None else self.restart_kind.value
        record["expected_relaunch"] = (
            None if self.expected_relaunch is None else self.expected_relaunch.value
        )
        record["gate_kind"] = None if self.gate_kind is None else self.gate_kind.value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GatewayStatus:
        """Rebuild from :meth:`to_record`; a bad field raises ValueError naming it."""
        where = f"gateway status {record.get('gateway', '?')!r}"
        values: dict[str, Any] = {}
        for name in _STR_FIELDS:
            values[name] = _typed(record, name, str, where)
        for name in _BOOL_FIELDS:
            values[name] = _typed(record, name, bool, where)
        for name in _INT_FIELDS:
            values[name] = _typed(record, name, int, where)
        for name in _INSTANT_FIELDS | _NEW_INSTANT_FIELDS:
            raw = record.get(name)
            values[name] = None if raw is None else _instant(raw, f"{where}.{name}")
        # Fields added later default when a record from an older supervisor lacks them.
        values["gate_open"] = _typed(
            {"gate_open": record.get("gate_open", False)}, "gate_open", bool, where
        )
        suspect = record.get("suspect")
        if suspect is not None and not isinstance(suspect, str):
            raise ValueError(f"{where}.suspect: expected a string or null, got {suspect!r}")
        values["suspect"] = suspect
        values["suspect_detail"] = _typed(
            {"suspect_detail": record.get("suspect_detail", "")}, "suspect_detail", str, where
        )
        relaunch = record.get("expected_relaunch")
        values["expected_relaunch"] = (
            None
            if relaunch is None
            else _enum(RelaunchKind, relaunch, f"{where}.expected_relaunch")
        )
        gate_kind = record.get("gate_kind", OutageKind.LOST.value)
        values["gate_kind"] = (
            None if gate_kind is None else _enum(OutageKind, gate_kind, f"{where}.gate_kind")
        )
        for name in _INSTANT_TUPLE_FIELDS:
            items = _typed(record, name, list, where)
            values[name] = tuple(
                _instant(item, f"{where}.{name}[{i}]") for i, item in enumerate(items)
            )
        for name in _STR_SET_FIELDS:
            items = _typed(record, name, list, where)
            if not all(isinstance(item, str) for item in items):
                raise ValueError(f"{where}.{name}: expected a list of strings, got {items!r}")
            values[name] = frozenset(items)
        values["state"] = _enum(State, record.get("state"), f"{where}.state")
        kind = record.get("restart_kind")
        values["restart_kind"] = (
            None if kind is None else _enum(RestartKind, kind, f"{where}.restart_kind")
        )
        return cls(**values)


_STR_FIELDS = frozenset({"gateway", "username", "reason"})
_BOOL_FIELDS = frozenset({"logged_in", "api_connected", "in_window", "api_dropped"})
_INT_FIELDS = frozenset({"failed_logins", "restart_count"})
_INSTANT_FIELDS = frozenset(
    {
        "since",
        "last_heartbeat",
        "login_deadline",
        "twofa_deadline",
        "stall_since",
        "window_ended_at",
        "restart_deadline",
        "backoff_until",
        "reauth_at",
    }
)
_NEW_INSTANT_FIELDS = frozenset(
    {
        "planned_until",
        "relaunch_expected_until",
        "window_until",
        "suspect_until",
        "replacing_until",
    }
)
_INSTANT_TUPLE_FIELDS = frozenset({"restarts", "login_attempts"})
_STR_SET_FIELDS = frozenset({"degraded_reasons", "open_alerts"})


def _typed(record: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = record.get(name)
    # bool is an int subclass; an int field must not accept True.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{name}: expected {kind.__name__}, got {value!r}")
    return value


def _instant(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an ISO-8601 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


_E = TypeVar("_E", bound=enum.Enum)


def _enum(kind: type[_E], value: object, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise ValueError(f"{where}: {value!r} is not one of {allowed}") from None
