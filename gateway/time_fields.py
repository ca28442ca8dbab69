"""Fleet-file field types for time: durations (``5s``, ``1h30m``), clock times (``23:55``) and
weekly times (``Sun 01:30``), each a parser plus the pydantic annotation that uses it.

Pure: parsing and validation only.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    BeforeValidator,
    PlainSerializer,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> dt.timedelta:
    """Parse ``5s``, ``10m``, ``1h``, ``1h30m``, ``250ms`` or a number of seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 5s, 10m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return dt.timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or text like 5s, 10m, 1h")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("a duration cannot be empty; write e.g. 5s, 10m or 1h")
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 10m, 1h or 1h30m")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """Render a duration the way the fleet file writes it (``90s`` -> ``1m30s``)."""
    total = value.total_seconds()
    if total < 1 and total != 0:
        return f"{round(total * 1000)}ms"
    whole = int(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock_time(value: object) -> dt.time:
    """Parse a 24-hour ``HH:MM`` clock time (unquoted YAML like 23:55 may arrive as minutes)."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 23:55 as the sexagesimal number 1435.
        return dt.time(value // 60, value % 60)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        shown = f"{value // 60}:{value % 60:02d}"
        raise ValueError(f"{shown!r} is not a 24-hour time; write HH:MM, e.g. 23:55")
    if not isinstance(value, str) or not _TIME.match(value.strip()):
        raise ValueError(f"{value!r} is not a 24-hour time; write HH:MM, e.g. 23:55")
    hours, minutes = value.strip().split(":")
    return dt.time(int(hours), int(minutes))


ClockTime = Annotated[
    dt.time,
    BeforeValidator(parse_clock_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class WeeklyTime:
    """A time of the week in the fleet's timezone, e.g. ``Sun 01:30``."""

    weekday: int  # Monday is 0, as in datetime.weekday()
    time: dt.time

    def __str__(self) -> str:
        return f"{_WEEKDAYS[self.weekday].capitalize()} {self.time.strftime('%H:%M')}"


def parse_weekly_time(value: object) -> WeeklyTime:
    """Parse ``Sun 01:30`` (day names in English, three letters or full)."""
    if isinstance(value, WeeklyTime):
        return value
    if not isinstance(value, str) or len(value.split()) != 2:
        raise ValueError(f"{value!r} is not a weekly time; write a day and HH:MM, e.g. 'Sun 01:30'")
    day, clock = value.split()
    key = day.strip().lower()[:3]
    if key not in _WEEKDAYS or not _WEEKDAYS[_WEEKDAYS.index(key)].startswith(key):
        raise ValueError(f"{day!r} is not a day of the week; write Mon, Tue, ..., Sun")
    return WeeklyTime(weekday=_WEEKDAYS.index(key), time=parse_clock_time(clock))


WeeklyClock = Annotated[
    WeeklyTime,
    BeforeValidator(parse_weekly_time),
    PlainSerializer(str, return_type=str),
]
