"""Bars built from trade prices over fixed intervals. Pure: time comes in with each price."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["BarBuilder", "BarData"]


@dataclass(frozen=True, slots=True)
class BarData:
    """One closed bar."""

    symbol: str
    start: datetime
    open: float
    high: float
    low: float
    close: float
    count: int


class BarBuilder:
    """Collects prices; returns the previous bar when a price falls in a new interval."""

    def __init__(self, symbol: str, interval: timedelta) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"bar interval for {symbol} must be positive, got {interval}")
        self.symbol = symbol
        self.interval = interval
        self._start: datetime | None = None
        self._ohlc: list[float] = []
        self._count = 0

    def _bucket(self, now: datetime) -> datetime:
        step = self.interval.total_seconds()
        seconds = math.floor(now.timestamp() / step) * step
        return datetime.fromtimestamp(seconds, tz=now.tzinfo)

    def add(self, price: float, now: datetime) -> BarData | None:
        """Add one price; a finished bar comes back when ``now`` starts a new interval."""
        if not math.isfinite(price) or price <= 0:
            return None
        start = self._bucket(now)
        done: BarData | None = None
        if self._start is not None and start > self._start:
            o, h, lo, c = self._ohlc
            done = BarData(self.symbol, self._start, o, h, lo, c, self._count)
            self._start = None
        if self._start is None:
            self._start = start
            self._ohlc = [price, price, price, price]
            self._count = 0
        self._ohlc[1] = max(self._ohlc[1], price)
        self._ohlc[2] = min(self._ohlc[2], price)
        self._ohlc[3] = price
        self._count += 1
        return done
