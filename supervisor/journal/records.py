"""The journal's values: its errors, durability levels, stored records, and their text form."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugins.intents import IntentState


class JournalError(Exception):
    """The journal cannot be used; the message names the file and what to do."""


class JournalLockedError(JournalError):
    """Another supervisor process holds the journal."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        owner = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"journal {path} is locked by another supervisor ({owner}); "
            "a supervisor must never run twice against one journal"
        )


class JournalUnavailable(JournalError):
    """A journal call did not complete within its bound, or SQLite refused the write.

    The journal is locked by someone else, the disk is full or failing; the message says which
    and never holds the data that was being written.
    """


class Durability(enum.Enum):
    """How hard a commit waits for the disk (SQLite ``PRAGMA synchronous``)."""

    FULL = "FULL"  # fsync on every commit: survives power loss
    NORMAL = "NORMAL"  # WAL fsync at checkpoints: survives a process crash


#: The intent state is the strategy host's (one enum for both layers): the journal stores
#: its values and hands it back.
IntentStatus = IntentState


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One journal event (what ``GET /api/v1/events`` returns)."""

    id: int
    at: datetime
    kind: str
    gateway: str | None
    strategy: str | None
    severity: str
    message: str
    fields: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict for the HTTP API and the CLI."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "gateway": self.gateway,
            "strategy": self.strategy,
            "severity": self.severity,
            "message": self.message,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True)
class IntentChange:
    """One step of an intent's history."""

    at: datetime
    status: IntentStatus
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order a strategy meant to place; ``key`` travels to IB as ``orderRef``."""

    key: str
    strategy: str
    gateway: str
    account: str
    client_id: int
    order_id: int | None
    perm_id: int | None
    contract: Mapping[str, Any]
    order: Mapping[str, Any]
    status: IntentStatus
    filled: float
    created_at: datetime
    updated_at: datetime
    history: tuple[IntentChange, ...] = ()


@dataclass(frozen=True, slots=True)
class OperatorState:
    """What a human decided about a gateway; it must survive a supervisor restart."""

    gateway: str
    stopped_by_operator: bool
    fatal_acknowledged_at: datetime | None
    updated_at: datetime


def _ts(value: datetime, what: str = "timestamp") -> str:
    # One fixed UTC format so text order is time order in every dialect.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-compatible: {exc}") from None


class JournalFenced(JournalError):
    """A write from a supervisor that no longer leads: a newer leader epoch exists.

    Raised before anything is written, so the order of a stale leader is never sent.
    """


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who leads a journal: ``holder`` (host:pid:tag), its ``epoch``, and when the lease ends.

    ``expires_in`` is seconds on the database server's clock; None for a single-host journal,
    whose owner leads for as long as it holds the file.
    """

    holder: str
    epoch: int
    expires_in: float | None

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict for the HTTP API and the CLI."""
        return {"holder": self.holder, "epoch": self.epoch, "expires_in": self.expires_in}
