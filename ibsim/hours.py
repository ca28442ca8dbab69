"""Trading sessions of the simulator's contracts, in each contract's time zone. Pure.

- US stocks (STK): the NYSE calendar of the ``exchange-calendars`` package (holidays and early
  closes included) for the regular session; IB's extended hours for US stocks, 04:00-20:00
  New York time, on those days.
- Forex on IDEALPRO (CASH): Sunday 17:15 to Friday 17:00 New York time; IB's forex day ends at
  17:00 New York time, which is when a DAY order expires.
- Futures (FUT): 17:00 the day before to 16:00 Chicago time, Monday to Friday (the CME's
  holidays and its daily 15-minute pause are not modelled).

A DAY order lives until the end of the session it was placed in (the next one when placed
after the close); with ``outsideRth`` a stock's DAY order lives to the end of after-hours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

from ibsim.contracts import ContractSpec

__all__ = ["Session", "day_order_end", "is_open", "session_on"]

_NEW_YORK = ZoneInfo("America/New_York")
_CHICAGO = ZoneInfo("America/Chicago")


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day of a contract, as aware UTC instants."""

    open: datetime
    close: datetime
    extended_open: datetime
    extended_close: datetime


@functools.cache
def _nyse() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS")


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _stock_session(day: date) -> Session | None:
    calendar = _nyse()
    label = pd.Timestamp(day)
    if calendar.first_session <= label <= calendar.last_session:
        if not calendar.is_session(label):
            return None
        opening = calendar.session_open(label).to_pydatetime()
        closing = calendar.session_close(label).to_pydatetime()
    else:  # beyond the package's calendar: weekdays at the usual hours
        if day.weekday() >= 5:
            return None
        opening = _at(day, time(9, 30), _NEW_YORK)
        closing = _at(day, time(16, 0), _NEW_YORK)
    return Session(
        open=opening,
        close=closing,
        extended_open=_at(day, time(4, 0), _NEW_YORK),
        extended_close=_at(day, time(20, 0), _NEW_YORK),
    )


def session_on(spec: ContractSpec, day: date) -> Session | None:
    """The session of ``day`` (a date in the contract's exchange zone), None on a closed day."""
    if spec.sec_type == "CASH":
        if day.weekday() >= 5:
            return None
        opening = _at(day - timedelta(days=1), time(17, 15), _NEW_YORK)
        closing = _at(day, time(17, 0), _NEW_YORK)
        return Session(opening, closing, opening, closing)
    if spec.sec_type == "FUT":
        if day.weekday() >= 5:
            return None
        opening = _at(day - timedelta(days=1), time(17, 0), _CHICAGO)
        closing = _at(day, time(16, 0), _CHICAGO)
        return Session(opening, closing, opening, closing)
    return _stock_session(day)


def _zone(spec: ContractSpec) -> ZoneInfo:
    return _CHICAGO if spec.sec_type == "FUT" else _NEW_YORK


def _sessions_from(spec: ContractSpec, now: datetime, days: int) -> list[Session]:
    """Sessions of the days around ``now`` (yesterday first), closed days left out."""
    today = now.astimezone(_zone(spec)).date()
    found = []
    for offset in range(-1, days):
        session = session_on(spec, today + timedelta(days=offset))
        if session is not None:
            found.append(session)
    return found


def is_open(spec: ContractSpec, now: datetime, *, outside_rth: bool) -> bool:
    """Whether an order may trigger or fill now: regular hours, or extended with outsideRth."""
    for session in _sessions_from(spec, now, 2):
        start, end = (
            (session.extended_open, session.extended_close)
            if outside_rth
            else (session.open, session.close)
        )
        if start <= now < end:
            return True
    return False


def day_order_end(spec: ContractSpec, placed_at: datetime, *, outside_rth: bool) -> datetime:
    """When a DAY order placed at ``placed_at`` expires: its session's end (or the next's)."""
    for session in _sessions_from(spec, placed_at, 10):
        end = session.extended_close if outside_rth else session.close
        if end > placed_at:
            return end
    raise ValueError(f"no session for {spec.local_symbol} within 10 days of {placed_at}")
