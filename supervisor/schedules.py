"""Schedule math: IB server reset windows, daily soft restart, weekly re-authentication.

Pure and DST-correct: every instant in and out is an aware datetime (returned in UTC), wall
clock times are resolved with :mod:`zoneinfo`. The weekend is treated as one long reset window,
conservatively: from Friday 17:00 America/New_York (US futures close) to Sunday 17:00
America/New_York (an hour before US futures reopen at 18:00 ET, and before Asia's Monday open),
so a gateway that IB disconnects over the weekend pages nobody, while one that is not back by
Sunday evening does. A login that needs 2FA still pages at any time: that is the lifecycle's
job, not the window's.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "NEW_YORK",
    "REAUTH_BOUNDARY",
    "DailyWindowSpec",
    "Region",
    "ScheduleError",
    "WeeklyTime",
    "Window",
    "default_daily_restart",
    "in_reset_window",
    "last_weekly_reauth",
    "needs_full_auth",
    "next_daily",
    "next_weekly",
    "next_weekly_reauth",
    "next_window",
    "parse_hhmm",
    "parse_weekly",
    "reauth_warning_due",
    "resolve_zone",
    "windows_between",
]

NEW_YORK = ZoneInfo("America/New_York")
_ZURICH = ZoneInfo("Europe/Zurich")
_HONG_KONG = ZoneInfo("Asia/Hong_Kong")


class ScheduleError(ValueError):
    """A schedule spec could not be parsed; the message names the value and the format."""


class Region(enum.StrEnum):
    """IB server regions, each with its own daily reset windows (the fleet file's ``region``)."""

    AMERICA = "america"
    EUROPE = "europe"
    ASIA = "asia"


@dataclass(frozen=True, slots=True)
class DailyWindowSpec:
    """A daily wall-clock window; ``end`` before ``start`` means it crosses midnight."""

    name: str
    zone: ZoneInfo
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Window:
    """One concrete reset window, ``start <= t < end`` in UTC."""

    region: Region
    name: str
    start: datetime
    end: datetime

    def contains(self, now: datetime) -> bool:
        """True when ``now`` falls inside this window."""
        return self.start <= now < self.end


# From the operations reference: North America about 23:30-01:00 ET; Europe about
# 05:30-07:00 Zurich; Asia about 16:15-17:15 ET and 20:00-21:15 Hong Kong.
_DAILY: dict[Region, tuple[DailyWindowSpec, ...]] = {
    Region.AMERICA: (DailyWindowSpec("na-daily", NEW_YORK, time(23, 30), time(1, 0)),),
    Region.EUROPE: (DailyWindowSpec("eu-daily", _ZURICH, time(5, 30), time(7, 0)),),
    Region.ASIA: (
        DailyWindowSpec("asia-daily-et", NEW_YORK, time(16, 15), time(17, 15)),
        DailyWindowSpec("asia-daily-hk", _HONG_KONG, time(20, 0), time(21, 15)),
    ),
}

# Weekend: Friday 17:00 ET to Sunday 17:00 ET (see the module docstring for why).
_WEEKEND_START = (4, time(17, 0))  # Friday
_WEEKEND_END = (6, time(17, 0))  # Sunday

# The first start after Sunday 01:00 ET needs a full login with 2FA.
REAUTH_BOUNDARY = (6, time(1, 0))  # Sunday, America/New_York

_DAYS = {
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tues": 1,
    "tuesday": 1,
    "wed": 2,
    "wednesday": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
    "sun": 6,
    "sunday": 6,
}
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")


def _at(day: date, clock: time, zone: tzinfo, *, later: bool) -> datetime:
    """Wall-clock ``clock`` on ``day`` in ``zone`` as UTC.

    For an ambiguous time (autumn fall-back) ``later`` picks the second occurrence; a time
    that does not exist (spring-forward gap) lands just after the gap, as zoneinfo maps it.
    """
    local = datetime.combine(day, clock, tzinfo=zone).replace(fold=1 if later else 0)
    return local.astimezone(UTC)


def resolve_zone(name: str) -> ZoneInfo:
    """A :class:`ZoneInfo` for ``name``, with an error that names the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"time zone {name!r} is not a known IANA zone (e.g. 'America/New_York')"
        ) from exc


def parse_hhmm(text: str, *, what: str = "time") -> time:
    """Parse a 24-hour ``HH:MM``; the error names ``what`` and the value."""
    match = _HHMM.match(text) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(f"{what} {text!r}: expected HH:MM on a 24-hour clock, e.g. '23:45'")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{what} {text!r}: hour must be 0-23 and minute 0-59")
    return time(hour, minute)


@dataclass(frozen=True, slots=True)
class WeeklyTime:
    """A weekday (0 = Monday) and a wall-clock time, e.g. ``Sun 01:30``."""

    weekday: int
    at: time


def parse_weekly(text: str, *, what: str = "weekly time") -> WeeklyTime:
    """Parse ``"<Day> HH:MM"`` (``Sun 01:30``, ``sunday 1:30``); the error names the value."""
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 2 or parts[0].lower() not in _DAYS:
        raise ScheduleError(f"{what} {text!r}: expected '<Day> HH:MM', e.g. 'Sun 01:30'")
    return WeeklyTime(weekday=_DAYS[parts[0].lower()], at=parse_hhmm(parts[1], what=what))


def _local_days(now: datetime, zone: tzinfo, before: int, after: int) -> list[date]:
    today = now.astimezone(zone).date()
    return [today + timedelta(days=offset) for offset in range(-before, after + 1)]


def _raw_windows(region: Region, start: datetime, end: datetime) -> list[Window]:
    """Every daily and weekend window of ``region`` overlapping [start, end), unmerged."""
    found: list[Window] = []
    span_days = (end - start).days + 2
    for spec in _DAILY[region]:
        for day in _local_days(start, spec.zone, 1, span_days):
            begin = _at(day, spec.start, spec.zone, later=False)
            end_day = day + timedelta(days=1) if spec.end <= spec.start else day
            finish = _at(end_day, spec.end, spec.zone, later=True)
            if finish > start and begin < end:
                found.append(Window(region, spec.name, begin, finish))
    for day in _local_days(start, NEW_YORK, 7, span_days):
        if day.weekday() != _WEEKEND_START[0]:
            continue
        begin = _at(day, _WEEKEND_START[1], NEW_YORK, later=False)
        days_to_end = (_WEEKEND_END[0] - _WEEKEND_START[0]) % 7
        finish = _at(day + timedelta(days=days_to_end), _WEEKEND_END[1], NEW_YORK, later=True)
        if finish > start and begin < end:
            found.append(Window(region, "weekend", begin, finish))
    return found


def _merge(windows: list[Window]) -> list[Window]:
    # Overlapping windows (a daily window inside the weekend) become one, so the lifecycle
    # never sees the window "end" at an inner boundary and pages too early.
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: (w.start, w.end)):
        if merged and window.start <= merged[-1].end:
            last = merged[-1]
            if window.end > last.end:
                parts = last.name.split("+")
                name = last.name if window.name in parts else f"{last.name}+{window.name}"
                merged[-1] = Window(last.region, name, last.start, window.end)
            continue
        merged.append(window)
    return merged


def windows_between(region: Region, start: datetime, end: datetime) -> list[Window]:
    """Merged reset windows of ``region`` overlapping ``[start, end)``, in order."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    # Look a week either side so a merged window is never cut at the search boundary.
    raw = _raw_windows(region, start - timedelta(days=7), end + timedelta(days=7))
    return [w for w in _merge(raw) if w.end > start and w.start < end]


def in_reset_window(region: Region, now: datetime) -> Window | None:
    """The reset window containing ``now``, or None."""
    _require_aware(now, "now")
    for window in windows_between(region, now, now + timedelta(seconds=1)):
        if window.contains(now):
            return window
    return None


def next_window(region: Region, now: datetime) -> Window:
    """The first reset window that starts strictly after ``now``."""
    _require_aware(now, "now")
    for window in windows_between(region, now, now + timedelta(days=8)):
        if window.start > now:
            return window
    raise AssertionError("every region has a daily window; none found in 8 days")


def next_daily(clock: time, *, zone: tzinfo, now: datetime) -> datetime:
    """Next instant strictly after ``now`` when the wall clock in ``zone`` reads ``clock``.

    On a spring-forward day a time inside the gap fires just after the gap; on a fall-back
    day an ambiguous time fires once, at its first occurrence.
    """
    _require_aware(now, "now")
    candidates = (_at(day, clock, zone, later=False) for day in _local_days(now, zone, 1, 2))
    return min(c for c in candidates if c > now)


def next_weekly(spec: WeeklyTime, *, zone: tzinfo, now: datetime) -> datetime:
    """Next instant strictly after ``now`` matching ``spec`` in ``zone``."""
    _require_aware(now, "now")
    candidates = (
        _at(day, spec.at, zone, later=False)
        for day in _local_days(now, zone, 1, 8)
        if day.weekday() == spec.weekday
    )
    return min(c for c in candidates if c > now)


def _reauth_instants(now: datetime) -> list[datetime]:
    weekday, clock = REAUTH_BOUNDARY
    return [
        _at(day, clock, NEW_YORK, later=False)
        for day in _local_days(now, NEW_YORK, 8, 8)
        if day.weekday() == weekday
    ]


def next_weekly_reauth(now: datetime) -> datetime:
    """Next Sunday 01:00 America/New_York strictly after ``now`` (in UTC)."""
    _require_aware(now, "now")
    return min(t for t in _reauth_instants(now) if t > now)


def last_weekly_reauth(now: datetime) -> datetime:
    """The latest Sunday 01:00 America/New_York at or before ``now`` (in UTC)."""
    _require_aware(now, "now")
    return max(t for t in _reauth_instants(now) if t <= now)


def needs_full_auth(last_full_auth: datetime | None, now: datetime) -> bool:
    """True when a start at ``now`` needs full 2FA: no full login since the last boundary."""
    _require_aware(now, "now")
    if last_full_auth is None:
        return True
    _require_aware(last_full_auth, "last_full_auth")
    return last_full_auth < last_weekly_reauth(now)


def reauth_warning_due(now: datetime, lead: timedelta) -> bool:
    """True when the next weekly re-authentication is within ``lead`` of ``now``."""
    if lead < timedelta(0):
        raise ValueError(f"re-auth warning lead must be >= 0, got {lead}")
    return next_weekly_reauth(now) - now <= lead


# A year is enough to meet every DST rule of the window's zone and of the fleet's zone.
_SAMPLE_YEAR = 2026
_DAY_MINUTES = 24 * 60


def _local_spans(spec: DailyWindowSpec, zone: tzinfo) -> dict[tuple[int, int], int]:
    """How many days of the year ``spec`` has each (start minute, length) on ``zone``'s clock."""
    spans: dict[tuple[int, int], int] = {}
    day = date(_SAMPLE_YEAR, 1, 1)
    while day.year == _SAMPLE_YEAR:
        begin = _at(day, spec.start, spec.zone, later=False)
        end_day = day + timedelta(days=1) if spec.end <= spec.start else day
        finish = _at(end_day, spec.end, spec.zone, later=True)
        local = begin.astimezone(zone)
        span = (local.hour * 60 + local.minute, int((finish - begin).total_seconds() // 60))
        spans[span] = spans.get(span, 0) + 1
        day += timedelta(days=1)
    return spans


def _score(minute: int, spans: dict[tuple[int, int], int]) -> tuple[int, int]:
    """(days of the year ``minute`` is inside the window, its margin to an edge on the worst)."""
    days, worst = 0, _DAY_MINUTES
    for (start, length), count in spans.items():
        offset = (minute - start) % _DAY_MINUTES
        if offset <= length:
            days += count
            worst = min(worst, offset, length - offset)
    return days, worst


@functools.lru_cache(maxsize=64)
def default_daily_restart(region: Region, zone: tzinfo) -> time:
    """The Gateway's daily auto-restart time when the fleet file sets none, on ``zone``'s clock.

    The middle of the region's daily reset window, chosen so that it stays inside the window on
    every day of the year although the window's zone and ``zone`` may change their clocks on
    different dates: the minute inside the window on the most days, then with the largest
    margin to the window's edges on its worst day. (Where the two zones' daylight saving rules
    make every day impossible, as between New York and Sydney, it is inside on most days.) A
    restart there falls where IB's servers reset anyway. Pure and deterministic.
    """
    best: tuple[int, int, int] | None = None  # (days inside, margin, -minute)
    for spec in _DAILY[region]:
        spans = _local_spans(spec, zone)
        for minute in range(_DAY_MINUTES):
            days, margin = _score(minute, spans)
            score = (days, margin, -minute)
            if best is None or score > best:
                best = score
    assert best is not None, "every region has a daily window"
    minute = -best[2]
    return time(minute // 60, minute % 60)
