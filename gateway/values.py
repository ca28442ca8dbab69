"""Value types shared by the fleet file: durations, clock times, weekly times and secret references.

Pure: parsing and validation only. Secret references are resolved at the edge by passing in
the environment mapping and a file reader, never by reading ``os.environ`` here.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    model_validator,
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


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message never contains the secret."""


EnvReader = Mapping[str, str]
FileReader = Callable[[Path], str]


def read_bounded_file(path: Path, *, limit: int, what: str) -> bytes:
    """A regular file's bytes, at most ``limit``.

    Opened with ``O_NONBLOCK`` so that a FIFO or a device never hangs the caller, then checked
    with ``fstat`` on the opened descriptor (no race with a swapped path). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` with the reason otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} must be a regular file, not a {_kind(info.st_mode)}")
        if info.st_size > limit:
            raise ValueError(f"{what} is {info.st_size} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise ValueError(exc.strerror or str(exc)) from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:  # grew while being read
                raise ValueError(f"{what} is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


#: The largest secret file read: a password or token is short; a wrong path must not be read whole.
MAX_SECRET_BYTES = 64 * 1024


def read_text_file(path: Path) -> str:
    """The default file reader for ``{file: PATH}`` secrets (one trailing newline dropped).

    A regular UTF-8 file of at most :data:`MAX_SECRET_BYTES`; anything else is a
    :class:`SecretError` that names the file, never its content.
    """
    try:
        data = read_bounded_file(path, limit=MAX_SECRET_BYTES, what="a secret file")
    except FileNotFoundError:
        raise SecretError(f"cannot read secret file {path}: it does not exist") from None
    except ValueError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"cannot read secret file {path}: it is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


class SecretRef(BaseModel):
    """Where a secret comes from: ``{env: NAME}``, ``{file: PATH}`` or (discouraged) a literal.

    The literal itself is kept in a ``SecretStr`` so it never shows in a repr, a log line or an
    error message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, description="Name of the environment variable.")
    file: Path | None = Field(default=None, description="Path of a file holding the secret.")
    literal: SecretStr | None = Field(
        default=None, description="An inline value; accepted with a warning."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_literal(cls, data: Any) -> Any:
        if isinstance(data, str | int) and not isinstance(data, bool):
            return {"literal": str(data)}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "literal") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a secret is one of {env: NAME} or {file: PATH} (or a literal string)")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            raise ValueError(f"{self.env!r} is not an environment variable name")
        return self

    @property
    def is_literal(self) -> bool:
        return self.literal is not None

    def describe(self) -> str:
        """Where the secret comes from, safe to print."""
        if self.env is not None:
            return f"env:{self.env}"
        if self.file is not None:
            return f"file:{self.file}"
        return "literal:**********"

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"

    __str__ = describe

    def missing_reason(self, *, environ: EnvReader) -> str | None:
        """Why the reference cannot be resolved right now, or None when it can."""
        if self.env is not None and not environ.get(self.env):
            return f"environment variable {self.env} is not set"
        if self.file is not None and not self.file.is_file():
            return f"file {self.file} does not exist"
        return None

    def resolve(self, *, environ: EnvReader, read_file: FileReader = read_text_file) -> SecretStr:
        """The secret's value, wrapped so that it stays redacted."""
        if self.literal is not None:
            return self.literal
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise SecretError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(read_file(self.file))
        except SecretError:
            raise
        except OSError as exc:
            raise SecretError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(
                f"cannot read secret file {self.file}: it is not UTF-8 text"
            ) from None
