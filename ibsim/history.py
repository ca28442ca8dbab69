"""Historical bars and ticks as IB's historical data service answers them. Pure.

Requests use IB's strings: durations ``"N S|D|W|M|Y"`` and the legal bar sizes IB's own
error text lists (``"1 secs"`` ... ``"1 day"``, ``"1 week"``/``"1W"``, ``"1 month"``/``"1M"``).
Bars fall in the instrument's sessions (:mod:`ibsim.sessions`: regular hours with useRTH=1,
no weekends, NYSE holidays), ``"N D"`` counting trading sessions, and the last bar closes at
the price given (the current price). Each bar's move is seeded by the instrument, the bar
size and the bar's start, so the same bar is the same in every request made at one price.

Errors carry IB's code and text: 321 for a bar size or duration IB does not accept (ib_async
treats 321 as a warning, so its awaiting call ends only at its own timeout, as with IB); 162
"invalid step" for a bar size too small for the duration (IB's step-size table); 162 "No data
of type ..." for TRADES on FX (IB has no trades for IDEALPRO).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibsim.contracts import ContractSpec
from ibsim.drift import TRADING_DAY_SECONDS, quote, round_to_tick
from ibsim.records import Bar
from ibsim.sessions import Session, sessions

__all__ = [
    "BAR_SIZES",
    "HistTick",
    "HistoryError",
    "bars",
    "head_timestamp",
    "parse_bar_size",
    "parse_duration",
    "parse_end",
    "ticks",
]

BAR_SIZES: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": 86_400,
    "1 week": 604_800,
    "1W": 604_800,
    "1 month": 2_592_000,
    "1M": 2_592_000,
}
_LEGAL = (
    "1 secs, 5 secs, 10 secs, 15 secs, 30 secs, 1 min, 2 mins, 3 mins, 5 mins, 10 mins, "
    "15 mins, 20 mins, 30 mins, 1 hour, 2 hours, 3 hours, 4 hours, 8 hours, 1 day, 1W, 1M"
)
_DURATION = re.compile(r"^(\d+) ([SDWMY])$")
_UNIT_SECONDS = {"S": 1, "D": 86_400, "W": 604_800, "M": 2_592_000, "Y": 31_536_000}
# IB's step-size table: the smallest bar size for a duration up to N seconds.
_MIN_STEP = (
    (1800, 1),
    (3600, 5),
    (14_400, 10),
    (28_800, 30),
    (86_400, 60),
    (172_800, 120),
    (604_800, 180),
    (2_592_000, 1800),
)
HMDS = "Historical Market Data Service error message:"
MAX_TICKS = 1000  # IB's cap per reqHistoricalTicks


@dataclass(frozen=True, slots=True)
class HistoryError(Exception):
    """IB's answer to a request it refuses: (code, text) for the error message."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"


def parse_bar_size(text: str) -> int:
    """Seconds per bar; 321 with IB's list of legal sizes otherwise."""
    seconds = BAR_SIZES.get(" ".join(text.split()))
    if seconds is None:
        raise HistoryError(
            321,
            "Error validating request.-'bK' : cause - Historical data bar size setting is "
            f"invalid. Legal ones are: {_LEGAL}",
        )
    return seconds


def parse_duration(text: str) -> tuple[int, str]:
    """(amount, unit) of ``"N S|D|W|M|Y"``; 321 otherwise."""
    match = _DURATION.match(text.strip().upper())
    if match is None or int(match.group(1)) <= 0:
        raise HistoryError(
            321,
            f"Error validating request.-'bK' : cause - Invalid duration string {text!r}: "
            "expected an integer and a unit of S, D, W, M or Y",
        )
    return int(match.group(1)), match.group(2)


def _check_step(amount: int, unit: str, bar_seconds: int) -> None:
    span = amount * _UNIT_SECONDS[unit]
    for limit, smallest in _MIN_STEP:
        if span <= limit:
            if bar_seconds < smallest:
                raise HistoryError(162, f"{HMDS}invalid step: {bar_seconds}")
            return
    if bar_seconds < 86_400:
        raise HistoryError(162, f"{HMDS}invalid step: {bar_seconds}")


def _what(spec: ContractSpec, what_to_show: str) -> str:
    what = what_to_show.strip().upper()
    allowed = {"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"}
    if spec.sec_type == "CASH":
        allowed -= {"TRADES", "ADJUSTED_LAST"}
    if what not in allowed:
        kind = "Forex" if spec.sec_type == "CASH" else spec.sec_type
        raise HistoryError(
            162,
            f"{HMDS}No data of type {what or 'EMPTY'} is available for the exchange "
            f"'{spec.exchange}' and the security type '{kind}'",
        )
    return what


def _window_start(spec: ContractSpec, end: datetime, amount: int, unit: str, rth: bool) -> datetime:
    if unit != "D":
        return end - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    # "N D": the last N sessions that started before the end (IB counts trading days).
    back = end - timedelta(days=amount * 2 + 7)
    started = [s for s in sessions(spec, back, end, rth=rth) if s[0] < end]
    return started[-amount][0] if len(started) >= amount else back


def _intraday_starts(
    found: Iterable[Session], start: datetime, end: datetime, size: int
) -> list[int]:
    stamps: list[int] = []
    first, last = start.timestamp(), end.timestamp()
    for opened, closed in found:
        lo, hi = max(opened.timestamp(), first), min(closed.timestamp(), last)
        t = int(lo // size * size)
        while t < hi:
            stamps.append(max(t, int(opened.timestamp())))
            t += size
    return sorted(set(stamps))


@dataclass(frozen=True, slots=True)
class _Period:
    start: int  # epoch seconds: the seed and, intraday, the bar's date
    label: str  # yyyymmdd for daily and longer bars
    weight: float  # the period's length in trading days (sets its volatility)


def _periods(
    spec: ContractSpec, end: datetime, amount: int, unit: str, size: int, rth: bool
) -> list[_Period]:
    start = _window_start(spec, end, amount, unit, rth)
    found = sessions(spec, start, end, rth=rth)
    if size < 86_400:
        day = (found[0][1] - found[0][0]).total_seconds() if found else TRADING_DAY_SECONDS
        return [
            _Period(t, "", min(size, day) / day) for t in _intraday_starts(found, start, end, size)
        ]
    zone = found[0][1].tzinfo if found else UTC
    daily = [
        _Period(int(closed.timestamp()), closed.astimezone(zone).strftime("%Y%m%d"), 1.0)
        for opened, closed in found
        if opened < end
    ]
    if size == 86_400:
        return daily
    groups: dict[str, list[_Period]] = {}
    for p in daily:
        when = datetime.strptime(p.label, "%Y%m%d")
        key = f"{when:%G-%V}" if size == 604_800 else f"{when:%Y-%m}"
        groups.setdefault(key, []).append(p)
    return [_Period(g[0].start, g[0].label, float(len(g))) for g in groups.values()]


def _volume_scale(spec: ContractSpec) -> float:
    # Shares (stocks), contracts (futures) per trading day, of a plausible order.
    if spec.sec_type == "FUT":
        return 1_500_000.0
    return 200_000_000.0 / max(spec.start_price, 1.0) * 10


def bars(
    spec: ContractSpec,
    *,
    end: datetime,
    duration: str,
    bar_size: str,
    what_to_show: str,
    rth: bool,
    last: float,
    max_bars: int = 50_000,
) -> list[Bar]:
    """The bars of one request, oldest first, the last closing at ``last``.

    Intraday bars' dates are epoch seconds as text (the caller formats them); daily and
    longer bars' dates are ``yyyymmdd``."""
    size = parse_bar_size(bar_size)
    amount, unit = parse_duration(duration)
    what = _what(spec, what_to_show)
    _check_step(amount, unit, size)
    periods = _periods(spec, end, amount, unit, size, rth)[-max_bars:]
    tick = spec.min_tick
    closes: list[float] = []
    price = last
    moves: list[tuple[float, float, float]] = []
    for p in reversed(periods):
        rng = random.Random(spec.con_id * 1_000_003 + size * 7_919 + p.start)
        sigma = spec.daily_vol * math.sqrt(p.weight)
        closes.append(price)
        moves.append((rng.gauss(0.0, sigma), abs(rng.gauss(0.0, sigma / 2)), rng.random()))
        price = price / math.exp(moves[-1][0])
    closes.reverse()
    moves.reverse()
    out: list[Bar] = []
    trades = what in ("TRADES", "ADJUSTED_LAST")
    for p, close_raw, (ret, wick, share) in zip(periods, closes, moves, strict=True):
        open_raw = close_raw / math.exp(ret)
        high_raw = max(open_raw, close_raw) * (1 + wick)
        low_raw = min(open_raw, close_raw) * (1 - wick * share)
        o, h, lo, c = (
            max(round_to_tick(v, tick), tick) for v in (open_raw, high_raw, low_raw, close_raw)
        )
        if what in ("BID", "ASK", "BID_ASK"):
            o, h, lo, c = (quote(spec, v)[0 if what == "BID" else 1] for v in (o, h, lo, c))
            if what == "BID_ASK":
                lo = quote(spec, lo)[0]
        h, lo = max(o, h, lo, c), min(o, h, lo, c)
        volume = round(_volume_scale(spec) * p.weight * (0.5 + share)) if trades else -1.0
        count = max(1, round(volume / 150)) if trades else -1
        wap = round((h + lo + c) / 3, 6) if trades else -1.0
        out.append(
            Bar(
                date=p.label or str(p.start),
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=float(volume),
                wap=wap,
                count=count,
            )
        )
    if out:
        last_bar = out[-1]
        out[-1] = Bar(
            date=last_bar.date,
            open=last_bar.open,
            high=max(last_bar.high, last),
            low=min(last_bar.low, last),
            close=round_to_tick(last, tick)
            if what in ("TRADES", "MIDPOINT", "ADJUSTED_LAST")
            else last_bar.close,
            volume=last_bar.volume,
            wap=last_bar.wap,
            count=last_bar.count,
        )
    return out


@dataclass(frozen=True, slots=True)
class HistTick:
    """One historical tick: TRADES uses price/size, BID_ASK bid/ask and sizes, MIDPOINT price."""

    time: int
    price: float
    size: float
    bid: float = 0.0
    ask: float = 0.0
    bid_size: float = 0.0
    ask_size: float = 0.0


def ticks(
    spec: ContractSpec,
    *,
    start: datetime | None,
    end: datetime | None,
    count: int,
    what_to_show: str,
    rth: bool,
    last: float,
    now: datetime,
) -> list[HistTick]:
    """Up to ``count`` (at most 1000) ticks after ``start`` or before ``end``, oldest first,
    inside the instrument's sessions; the newest is at ``last`` when it reaches now."""
    what = what_to_show.strip().upper()
    if what not in ("TRADES", "BID_ASK", "MIDPOINT") or (
        spec.sec_type == "CASH" and what == "TRADES"
    ):
        raise HistoryError(
            162, f"{HMDS}No data of type {what or 'EMPTY'} is available for this request"
        )
    count = max(1, min(count, MAX_TICKS))
    anchor = min(end or now, now)
    lo = start if start is not None else anchor - timedelta(days=10)
    found = sessions(spec, lo, anchor, rth=rth)
    rng = random.Random(spec.con_id * 31 + int(anchor.timestamp()))
    stamps: list[int] = []
    for opened, closed in reversed(found):
        t = min(closed, anchor).timestamp()
        while t > max(opened, lo).timestamp() and len(stamps) < count * 4:
            stamps.append(int(t))
            t -= 1 + rng.random() * 9
        if len(stamps) >= count * 4:
            break
    stamps.sort()
    stamps = stamps[:count] if start is not None and end is None else stamps[-count:]
    sigma = spec.daily_vol * math.sqrt(5 / TRADING_DAY_SECONDS)
    price = last
    out: list[HistTick] = []
    for stamp in reversed(stamps):
        p = max(round_to_tick(price, spec.min_tick), spec.min_tick)
        bid, ask = quote(spec, p)
        size = float(rng.choice((1, 10, 50, 100, 100, 200, 500)))
        out.append(HistTick(stamp, p, size, bid, ask, size * 3, size * 2))
        price = price / math.exp(rng.gauss(0.0, sigma))
    out.reverse()
    return out


def head_timestamp(spec: ContractSpec, *, format_date: int) -> str:
    """The first moment IB has data for: the listing day at its first session's open."""
    day = datetime.strptime(spec.head_timestamp, "%Y%m%d")
    opening = sessions(
        spec, day.replace(tzinfo=UTC), day.replace(tzinfo=UTC) + timedelta(days=7), rth=True
    )
    first = opening[0][0] if opening else day.replace(tzinfo=UTC)
    if format_date == 2:
        return str(int(first.timestamp()))
    return first.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")


def parse_end(text: str, now: datetime) -> datetime:
    """An endDateTime as IB accepts it: empty (now), ``yyyymmdd hh:mm:ss [zone]`` (no zone:
    UTC, the simulated Gateway's zone) or ``yyyymmdd-hh:mm:ss`` (UTC); 321 otherwise."""
    text = text.strip()
    if not text:
        return now
    try:
        if "-" in text[:9]:
            return datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        stamp, _, zone = text.partition(" ")
        clock, _, zone = zone.partition(" ")
        when = datetime.strptime(f"{stamp} {clock or '23:59:59'}", "%Y%m%d %H:%M:%S")
        return when.replace(tzinfo=ZoneInfo(zone) if zone else UTC).astimezone(UTC)
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        raise HistoryError(
            321, f"Error validating request.-'bK' : cause - Invalid end date/time {text!r}"
        ) from None
