"""When each simulated instrument trades: its sessions, regular (useRTH=1) or all hours.

- US stocks and ETFs: NYSE's calendar from exchange-calendars (holidays and early closes);
  regular hours 09:30-16:00 America/New_York, all hours 04:00-20:00 (IB's pre- and
  post-market) on the same days.
- FX on IDEALPRO: Sunday 17:15 to Friday 17:00 New York, one session per weekday from 17:15
  the day before to 17:00 (IB's forex day ends at 17:00 New York, when a DAY order expires);
  regular hours are the same (IB's liquid hours for IDEALPRO cover the whole day). Holidays
  are not modelled.
- CME futures: Sunday-Friday 17:00-16:00 America/Chicago, regular hours 08:30-15:00
  Chicago; CME holidays are not modelled.

The one definition of the simulator's trading hours: historical data, contract details and the
order desk (when an order may trigger or fill, when a DAY order expires) all read it.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

from ibsim.contracts import ContractSpec

__all__ = ["NEW_YORK", "Session", "day_order_end", "is_open", "sessions", "trading_hours"]

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")

Session = tuple[datetime, datetime]  # aware (start, end), end exclusive


@functools.cache
def _nyse(year: int) -> xcals.ExchangeCalendar:
    # One calendar per year keeps any date in range (the default range ends a year ahead).
    return xcals.get_calendar(
        "XNYS", start=pd.Timestamp(year - 1, 12, 1), end=pd.Timestamp(year + 1, 1, 31)
    )


@functools.cache
def _nyse_day(day: date) -> tuple[datetime, datetime] | None:
    """NYSE's regular open and close on ``day`` (aware), or None when it does not trade."""
    cal = _nyse(day.year)
    stamp = pd.Timestamp(day)
    if not cal.is_session(stamp):
        return None
    opened = cal.session_open(stamp).to_pydatetime()
    closed = cal.session_close(stamp).to_pydatetime()
    return opened.astimezone(NEW_YORK), closed.astimezone(NEW_YORK)


def _days(start: datetime, end: datetime) -> list[date]:
    first = (start - timedelta(days=1)).date()
    count = (end.date() - first).days + 2
    return [first + timedelta(days=n) for n in range(count)]


def _stock_sessions(start: datetime, end: datetime, rth: bool) -> list[Session]:
    found: list[Session] = []
    for day in _days(start.astimezone(NEW_YORK), end.astimezone(NEW_YORK)):
        hours = _nyse_day(day)
        if hours is None:
            continue
        opened, closed = hours
        if not rth:
            opened = datetime.combine(day, time(4, 0), NEW_YORK)
            closed = closed + timedelta(hours=4)  # 20:00, or 17:00 after an early close
        found.append((opened, closed))
    return found


def _daily_sessions(
    start: datetime, end: datetime, zone: ZoneInfo, opens: time, closes: time, overnight: bool
) -> list[Session]:
    found: list[Session] = []
    for day in _days(start.astimezone(zone), end.astimezone(zone)):
        if day.weekday() >= 5:  # the Monday session starts on Sunday evening
            continue
        first = day - timedelta(days=1) if overnight else day
        found.append((datetime.combine(first, opens, zone), datetime.combine(day, closes, zone)))
    return found


def sessions(spec: ContractSpec, start: datetime, end: datetime, *, rth: bool) -> list[Session]:
    """Every session of ``spec`` that overlaps [start, end), oldest first."""
    if spec.sec_type == "CASH":
        found = _daily_sessions(start, end, NEW_YORK, time(17, 15), time(17, 0), overnight=True)
    elif spec.sec_type == "FUT":
        if rth:
            found = _daily_sessions(start, end, CHICAGO, time(8, 30), time(15, 0), overnight=False)
        else:
            found = _daily_sessions(start, end, CHICAGO, time(17, 0), time(16, 0), overnight=True)
    else:
        found = _stock_sessions(start, end, rth)
    return [(s, e) for s, e in found if e > start and s < end]


def trading_hours(spec: ContractSpec, now: datetime, *, rth: bool, days: int = 5) -> str:
    """contractDetails' tradingHours (rth=False) or liquidHours: the next days in the
    contract's zone, ``yyyymmdd:hhmm-yyyymmdd:hhmm`` or ``yyyymmdd:CLOSED``, ';'-joined."""
    zone = ZoneInfo(spec.time_zone)
    local = now.astimezone(zone)
    start = datetime.combine(local.date(), time(0, 0), zone)
    end = start + timedelta(days=days)
    found = sessions(spec, start, end, rth=rth)
    parts: list[str] = []
    for offset in range(days):
        day = (start + timedelta(days=offset)).date()
        todays = [(s, e) for s, e in found if e.astimezone(zone).date() == day]
        if not todays:
            parts.append(f"{day:%Y%m%d}:CLOSED")
        for s, e in todays:
            s_local, e_local = s.astimezone(zone), e.astimezone(zone)
            parts.append(f"{s_local:%Y%m%d:%H%M}-{e_local:%Y%m%d:%H%M}")
    return ";".join(parts)


def is_open(spec: ContractSpec, now: datetime, *, outside_rth: bool) -> bool:
    """Whether an order may trigger or fill now: in regular hours, or in all hours with
    outsideRth."""
    found = sessions(spec, now, now + timedelta(microseconds=1), rth=not outside_rth)
    return any(start <= now < end for start, end in found)


def day_order_end(spec: ContractSpec, placed_at: datetime, *, outside_rth: bool) -> datetime:
    """When a DAY order placed at ``placed_at`` expires: the end of its session (the next
    session's when placed after the close; all hours' end with outsideRth)."""
    for _, end in sessions(spec, placed_at, placed_at + timedelta(days=10), rth=not outside_rth):
        if end > placed_at:
            return end
    raise ValueError(f"no session for {spec.local_symbol} within 10 days of {placed_at}")
