"""One budget type (at most N events per window) for logins and restarts, and backoff.

Pure: time comes in as ``now`` (aware UTC datetimes) and randomness from an injected
``random.Random``, so the journal can persist the state and tests can drive it exactly.
IB counts every failed login (a 2FA timeout included) and locks the account after too many,
so automatic restarts must be rationed per username, not per container.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

__all__ = [
    "BackoffPolicy",
    "Budget",
    "BudgetRecordError",
    "Ledger",
    "backoff_ceiling",
    "full_jitter_delay",
    "ledger_from_record",
    "ledger_to_record",
]


class BudgetRecordError(ValueError):
    """A persisted budget record could not be read back; the message names the field."""


def _require_aware(value: datetime, what: str) -> None:
    # Naive datetimes compare wrongly across DST and hosts; refuse them at the boundary.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")


def _parse_instant(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise BudgetRecordError(f"{where}: expected an ISO-8601 timestamp string, got {text!r}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BudgetRecordError(f"{where}: {text!r} is not an ISO-8601 timestamp") from exc
    if value.tzinfo is None:
        raise BudgetRecordError(f"{where}: {text!r} has no UTC offset")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``limit`` events in any ``window``-long interval; the state is the timestamps.

    The one budget type: "never more than N logins per hour" (per username, see
    :data:`Ledger`) and "at most N restarts per window" (per gateway) are both this.
    """

    limit: int
    window: timedelta
    events: tuple[datetime, ...] = ()

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"sliding window limit must be >= 0, got {self.limit}")
        if self.window <= timedelta(0):
            raise ValueError(f"sliding window length must be positive, got {self.window}")

    def pruned(self, now: datetime) -> Budget:
        """Drop events that fell out of the window ending at ``now``."""
        _require_aware(now, "now")
        horizon = now - self.window
        kept = tuple(sorted(t for t in self.events if t > horizon))
        return Budget(limit=self.limit, window=self.window, events=kept)

    def used(self, now: datetime) -> int:
        """How many events count against the budget at ``now``."""
        return len(self.pruned(now).events)

    def allows(self, now: datetime) -> bool:
        """True when one more event at ``now`` stays within the limit."""
        return self.used(now) < self.limit

    def record(self, now: datetime) -> Budget:
        """Return a window with one more event at ``now`` (old events pruned)."""
        base = self.pruned(now)
        return Budget(limit=self.limit, window=self.window, events=(*base.events, now))

    def next_allowed(self, now: datetime) -> datetime:
        """Earliest instant at or after ``now`` when one more event is allowed."""
        base = self.pruned(now)
        if len(base.events) < self.limit:
            return now
        if self.limit == 0:
            raise ValueError("a sliding window with limit 0 never allows an event")
        # The slot frees when the oldest event that keeps us at the limit ages out.
        blocking = base.events[len(base.events) - self.limit]
        return blocking + self.window

    def to_record(self) -> list[str]:
        """The timestamps as ISO-8601 strings, for the journal."""
        return [t.astimezone(UTC).isoformat() for t in self.events]

    @classmethod
    def from_record(
        cls, record: Iterable[object], *, limit: int, window: timedelta, where: str = "window"
    ) -> Budget:
        """Rebuild from :meth:`to_record` output; bad entries raise naming their index."""
        events = tuple(
            _parse_instant(item, f"{where}[{index}]") for index, item in enumerate(record)
        )
        return cls(limit=limit, window=window, events=tuple(sorted(events)))


Ledger: TypeAlias = dict[str, Budget]
"""Login budgets per IB username: two gateways sharing a username share one budget."""


def ledger_to_record(ledger: Mapping[str, Budget]) -> dict[str, list[str]]:
    """Username -> ISO timestamps (usernames without attempts left out), for the journal."""
    return {name: budget.to_record() for name, budget in sorted(ledger.items()) if budget.events}


def ledger_from_record(
    record: Mapping[str, object], *, limit: int, window: timedelta = timedelta(hours=1)
) -> Ledger:
    """Rebuild from :func:`ledger_to_record`; a bad entry raises naming the username."""
    ledger: Ledger = {}
    for username, items in record.items():
        where = f"login ledger[{username!r}]"
        if not isinstance(items, list):
            raise BudgetRecordError(f"{where}: expected a list of timestamps, got {items!r}")
        ledger[username] = Budget.from_record(items, limit=limit, window=window, where=where)
    return ledger


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff: attempt n waits up to ``min(cap, base * 2**n)``."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise ValueError(f"backoff base must be positive, got {self.base}")
        if self.cap < self.base:
            raise ValueError(f"backoff cap {self.cap} must be >= base {self.base}")

    def ceiling(self, attempt: int) -> timedelta:
        """The largest delay for ``attempt`` (0-based)."""
        return backoff_ceiling(attempt, base=self.base, cap=self.cap)

    def delay(self, attempt: int, *, rng: random.Random | None) -> timedelta:
        """Full-jitter delay for ``attempt``; without ``rng`` the ceiling (deterministic)."""
        if rng is None:
            return self.ceiling(attempt)
        return full_jitter_delay(attempt, base=self.base, cap=self.cap, rng=rng)


def backoff_ceiling(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """``min(cap, base * 2**attempt)``, computed without overflowing for large attempts."""
    if attempt < 0:
        raise ValueError(f"backoff attempt must be >= 0, got {attempt}")
    # 2**64 * any positive base exceeds any sane cap; clamp the exponent to stay in range.
    factor = 2 ** min(attempt, 64)
    base_s = base.total_seconds()
    cap_s = cap.total_seconds()
    return timedelta(seconds=min(cap_s, base_s * factor))


def full_jitter_delay(
    attempt: int, *, base: timedelta, cap: timedelta, rng: random.Random
) -> timedelta:
    """Uniform in ``[0, min(cap, base * 2**attempt)]`` ("full jitter") from the injected rng.

    Full jitter spreads a fleet's retries so gateways that failed together do not log in
    together again.
    """
    ceiling = backoff_ceiling(attempt, base=base, cap=cap)
    return timedelta(seconds=rng.uniform(0.0, ceiling.total_seconds()))
