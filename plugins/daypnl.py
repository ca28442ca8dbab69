"""A strategy's P&L for the trading day, from its own fills and the last prices: what the daily
loss limit (:func:`plugins.risk.check_daily_loss`) is checked against.

The trading day is an exchange calendar's (``exchange_calendars``): from one session's open to
the next, or from a configured local reset time. When a day begins, realised P&L starts at
zero and positions carried over are valued from their mark at that moment, so a day counts
only its own moves. Pure: time comes in with each call.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import exchange_calendars as xcals
import pandas as pd

__all__ = ["DayPnL", "trading_day"]


@functools.cache
def _calendar(name: str, year: int) -> xcals.ExchangeCalendar:
    # The default range ends a year after install; a calendar per year keeps any date in range.
    return xcals.get_calendar(
        name, start=pd.Timestamp(year - 1, 12, 1), end=pd.Timestamp(year + 1, 1, 31)
    )


def trading_day(now: dt.datetime, *, calendar: str, reset: dt.time | None = None) -> dt.date:
    """The trading day ``now`` belongs to on ``calendar``: the session open at or before it,
    or, with ``reset``, the local date of the last ``reset`` time in the calendar's zone."""
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    utc = now.astimezone(dt.UTC)
    cal = _calendar(calendar, utc.year)
    if reset is not None:
        local = utc.astimezone(cal.tz)
        day = local.date()
        return day if local.time() >= reset else day - dt.timedelta(days=1)
    minute = pd.Timestamp(utc).floor("min")
    # Between sessions (and on a break) the day is still the previous session's.
    session: pd.Timestamp = cal.minute_to_session(minute, direction="previous")
    opened: dt.date = session.date()
    return opened


@dataclass
class _Holding:
    quantity: float = 0.0
    cost: float = 0.0  # average price of the open quantity (the day's start mark if carried)
    multiplier: float = 1.0


class DayPnL:
    """Realised and marked P&L of one strategy for the current trading day, per conId."""

    def __init__(self, *, calendar: str, reset: dt.time | None = None) -> None:
        self.calendar = calendar
        self.reset = reset
        self.day: dt.date | None = None
        self.realised = 0.0
        self._holdings: dict[int, _Holding] = {}
        self._minute: dt.datetime | None = None

    def _roll(self, now: dt.datetime, marks: Mapping[int, float]) -> None:
        minute = now.replace(second=0, microsecond=0)
        if minute == self._minute:
            return
        self._minute = minute
        day = trading_day(now, calendar=self.calendar, reset=self.reset)
        if day == self.day:
            return
        if self.day is not None:
            self.realised = 0.0
            for con_id, held in self._holdings.items():
                mark = marks.get(con_id)
                if mark is not None:
                    held.cost = mark
        self.day = day

    def fill(
        self,
        con_id: int,
        quantity: float,
        price: float,
        *,
        now: dt.datetime,
        multiplier: float = 1.0,
        marks: Mapping[int, float] | None = None,
    ) -> None:
        """Book one execution (``quantity`` signed: buys positive)."""
        self._roll(now, marks or {})
        held = self._holdings.setdefault(con_id, _Holding(multiplier=multiplier))
        held.multiplier = multiplier
        if held.quantity == 0 or (held.quantity > 0) == (quantity > 0):
            total = held.quantity + quantity
            held.cost = (held.cost * held.quantity + price * quantity) / total if total else 0.0
            held.quantity = total
            return
        closing = min(abs(quantity), abs(held.quantity))
        sign = 1.0 if held.quantity > 0 else -1.0
        self.realised += closing * (price - held.cost) * sign * held.multiplier
        rest = held.quantity + quantity
        if rest == 0 or (rest > 0) == (held.quantity > 0):
            held.quantity = rest  # reduced (or closed): the cost of what is left is unchanged
        else:
            held.quantity, held.cost = rest, price  # flipped: the new side opened at this price
        if held.quantity == 0:
            held.cost = 0.0

    def unrealised(self, marks: Mapping[int, float]) -> float:
        """Open positions valued at ``marks`` (a position without a mark counts zero)."""
        total = 0.0
        for con_id, held in self._holdings.items():
            mark = marks.get(con_id)
            if held.quantity and mark is not None:
                total += held.quantity * (mark - held.cost) * held.multiplier
        return total

    def total(self, marks: Mapping[int, float], *, now: dt.datetime) -> float:
        """The day's P&L at ``now``: realised plus open positions marked at ``marks``."""
        self._roll(now, marks)
        return self.realised + self.unrealised(marks)

    # -- persistence (the strategy's kv store keeps it across restarts) ----------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat() if self.day else None,
            "realised": self.realised,
            "holdings": {
                str(k): [h.quantity, h.cost, h.multiplier]
                for k, h in self._holdings.items()
                if h.quantity
            },
        }

    def load(self, record: Mapping[str, Any]) -> None:
        day = record.get("day")
        self.day = dt.date.fromisoformat(day) if day else None
        self.realised = float(record.get("realised", 0.0))
        self._holdings = {
            int(k): _Holding(quantity=float(q), cost=float(c), multiplier=float(m))
            for k, (q, c, m) in dict(record.get("holdings", {})).items()
        }
        self._minute = None
