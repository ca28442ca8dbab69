"""One container log line -> its typed auth event: the IBC line classifier.

A gateway's login story is told by IBC's console lines (``yyyy-MM-dd HH:mm:ss:SSS IBC: ...``)
and by its start script's plain lines. :func:`parse_line` reads one line (with or without the
timestamp ``docker logs --timestamps`` puts in front) into an event or None; it never raises.

Matching is case-insensitive because IBC's capitalisation changed across versions; the exact
strings are IBC 3.24.1's (``src/ibcalpha/ibc/*.java``, ``resources/scripts/ibcstart.sh``), which
:mod:`ibsim.ibclog` prints. Every text an event carries from a line (IB's dialog text, a path)
is untrusted and passed on inert (:func:`gateway.codes.inert`): no escapes or controls, no chat
markup, capped. Pure: no I/O, time comes in with the lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo

from gateway.authlog.events import (
    AuthEvent,
    AutorestartFound,
    AutorestartNotFound,
    ColdRestart,
    ExistingSessionDetected,
    ExistingSessionOutcome,
    ExitStatus,
    IbcExiting,
    LoggedIn,
    LoginAttempt,
    LoginFailed,
    LoopEnded,
    ReloginRequired,
    RestartScheduled,
    RestartShortly,
    SessionStarting,
    Stopping,
    TooManyFailedAttempts,
    TwoFactorApproved,
    TwoFactorExpired,
    TwoFactorInitiated,
    TwoFactorReloginScheduled,
    TwoFactorTimedOut,
    WillReloginAt,
)
from gateway.codes import ibc_exit_from_status, inert

# docker logs --timestamps: RFC 3339 with up to nanoseconds, in UTC ("...T15:00:00.123456789Z").
_DOCKER_TS = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d\d:?\d\d)\s"
)
# IBC's Utils.formatMessage, and IBController's before it was renamed.
_IBC_PREFIX = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?::(?P<ms>\d{1,3}))?\s+"
    r"(?:IBC|IBController):\s?(?P<msg>.*)$",
    re.IGNORECASE,
)
# docker compose logs puts "<service>  | " in front of each line.
_COMPOSE_PREFIX = re.compile(r"^[\w.-]{1,128}\s+\|\s?")
_MAX_LINE = 10_000  # longer lines are cut: a log line is never a reason to spend memory
MAX_DETAIL = 500  # a failed login's dialog text is kept to this many characters


@dataclass(frozen=True)
class Split:
    """A raw line taken apart: its best timestamp, whether IBC wrote it, and the message."""

    at: datetime | None
    from_ibc: bool
    message: str


def _docker_time(match: re.Match[str]) -> datetime | None:
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    zone = match["zone"]
    if zone == "Z":
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}.{frac}{zone}")
    except ValueError:
        return None


def split_line(line: str, tz: tzinfo) -> Split:
    """Take off compose's and Docker's prefixes and IBC's stamp (the first 10,000 characters)."""
    text = line[:_MAX_LINE].rstrip("\r\n")
    compose = _COMPOSE_PREFIX.match(text)
    if compose is not None:
        text = text[compose.end() :]
    at: datetime | None = None
    docker = _DOCKER_TS.match(text)
    if docker is not None:
        # Docker's own stamp is UTC and exact, so it wins over IBC's zone-less wall time.
        at = _docker_time(docker)
        text = text[docker.end() :]
    ibc = _IBC_PREFIX.match(text)
    if ibc is None:
        return Split(at=at, from_ibc=False, message=text.strip())
    if at is None:
        try:
            local = datetime.strptime(ibc["stamp"], "%Y-%m-%d %H:%M:%S")
            millis = int((ibc["ms"] or "0").ljust(3, "0"))
            at = local.replace(microsecond=millis * 1000, tzinfo=tz)
        except ValueError:
            at = None
    return Split(at=at, from_ibc=True, message=ibc["msg"].strip())


def _parse_naive_ibc_time(text: str, tz: tzinfo) -> datetime | None:
    try:
        stamp, _, millis = text.rpartition(":")
        local = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
        return local.replace(microsecond=int(millis[:3].ljust(3, "0")) * 1000, tzinfo=tz)
    except ValueError:
        return None


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], datetime | None, tzinfo], AuthEvent | None]]


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _too_many(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    rest = m.string
    minutes = re.search(r"(\d+)\s*minute", rest, re.IGNORECASE)
    seconds = re.search(r"(\d+)\s*second", rest, re.IGNORECASE)
    wait: int | None = None
    if minutes or seconds:
        wait = (int(minutes[1]) if minutes else 0) * 60 + (int(seconds[1]) if seconds else 0)
    return TooManyFailedAttempts(at=at, wait_seconds=wait)


def _exit_status(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    status = int(m[1])
    return ExitStatus(at=at, status=status, ibc_exit=ibc_exit_from_status(status))


def _ibc_exiting(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    code = int(m[1])
    return IbcExiting(at=at, code=code, ibc_exit=ibc_exit_from_status(code))


def _will_relogin(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    number = int(m["n"]) if m["n"] else None
    return WillReloginAt(at=at, when=_parse_naive_ibc_time(m["when"], tz), login_number=number)


def _restart_scheduled(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    try:
        when: time | None = datetime.strptime(m[1].upper(), "%I:%M %p").time()
    except ValueError:
        when = None
    return RestartScheduled(at=at, when=when)


def _session_starting(m: re.Match[str], at: datetime | None, tz: tzinfo) -> AuthEvent:
    return SessionStarting(at=at, dialog_timeout_seconds=int(m[1]), restarting=False)


def _existing(outcome: ExistingSessionOutcome) -> Callable[..., AuthEvent]:
    return lambda m, at, tz: ExistingSessionDetected(at=at, outcome=outcome)


_ESO = ExistingSessionOutcome
# Anchored at the start of the message unless the text may sit inside a longer message.
# Int captures are bounded to 9 digits so a hostile line cannot make a huge int.
_RULES: tuple[_Rule, ...] = (
    (
        _rx(r"^starting session: will exit if login dialog is not displayed within (\d{1,9})"),
        _session_starting,
    ),
    (
        _rx(r"^re-starting session\b"),
        lambda m, at, tz: SessionStarting(at=at, dialog_timeout_seconds=None, restarting=True),
    ),
    (_rx(r"^login attempt:\s*(\d{1,9})"), lambda m, at, tz: LoginAttempt(at=at, number=int(m[1]))),
    (_rx(r"^second factor authentication initiated"), lambda m, at, tz: TwoFactorInitiated(at=at)),
    (
        _rx(r"^login frame has now become secondfactorauthenticationdialog"),
        lambda m, at, tz: TwoFactorInitiated(at=at),
    ),
    (
        _rx(
            r"^ibc closing (?:because login has not completed after second factor authentication"
            r"|after second factor authentication dialog timeout)"
        ),
        lambda m, at, tz: TwoFactorTimedOut(at=at),
    ),
    (
        _rx(r"^re-login after second factor authentication timeout in\b"),
        lambda m, at, tz: TwoFactorReloginScheduled(at=at),
    ),
    (
        _rx(r"^re-login after second factor authentication timeout not required"),
        lambda m, at, tz: TwoFactorExpired(at=at),
    ),
    (
        _rx(r"^if login has not completed, ibc will exit in (\d{1,9}) seconds?"),
        lambda m, at, tz: TwoFactorApproved(at=at, exit_in_seconds=int(m[1])),
    ),
    (
        _rx(r"^setting auto-restart time to (\d{1,2}:\d\d [ap]m)\s*$"),
        _restart_scheduled,
    ),
    # "Login has completed: exiting via [File, Close] menu" is a shutdown, not a login.
    (_rx(r"^login has completed: exiting"), lambda m, at, tz: Stopping(at=at, was_logged_in=True)),
    (
        _rx(r"^login has not completed: exiting"),
        lambda m, at, tz: Stopping(at=at, was_logged_in=False),
    ),
    (_rx(r"^login has completed\W*$"), lambda m, at, tz: LoggedIn(at=at, configured=False)),
    (_rx(r"^configuration tasks completed"), lambda m, at, tz: LoggedIn(at=at, configured=True)),
    (
        _rx(r"user must choose whether to continue with this session"),
        _existing(_ESO.USER_MUST_CHOOSE),
    ),
    (
        _rx(r"^end this session and let the other session proceed"),
        _existing(_ESO.THIS_SESSION_ENDS),
    ),
    (
        _rx(r"^other session (?:must|may) be primary.*end this session"),
        _existing(_ESO.THIS_SESSION_ENDS),
    ),
    (
        _rx(
            r"^(?:don't know the type of the other session, so continue this one"
            r"|continue this session and let the other session exit)"
        ),
        _existing(_ESO.THIS_SESSION_CONTINUES),
    ),
    (_rx(r"^trading login handoff dialog;"), _existing(_ESO.DETECTED)),
    (_rx(r"^detected dialog entitled: existing session detected"), _existing(_ESO.DETECTED)),
    (
        _rx(r"^detected dialog entitled: re-login is required"),
        lambda m, at, tz: ReloginRequired(at=at),
    ),
    (_rx(r"^login failed\W*$"), lambda m, at, tz: LoginFailed(at=at, message=None)),
    (
        _rx(r"^login error message:\s*(.*)$"),
        lambda m, at, tz: LoginFailed(at=at, message=inert(m[1], limit=MAX_DETAIL) or None),
    ),
    (_rx(r"too many failed login attempts"), _too_many),
    (_rx(r"^cold restart in progress"), lambda m, at, tz: ColdRestart(at=at)),
    (
        _rx(r"^login dialog has been invalidated - initiate cold restart"),
        lambda m, at, tz: ColdRestart(at=at),
    ),
    (
        _rx(
            r"^will re-login at (?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?::\d{1,3})?)"
            r"(?:;\s*login number:\s*(?P<n>\d{1,9}))?"
        ),
        _will_relogin,
    ),
    (
        _rx(r"^autorestart file found at (.*?):\s*authentication will not be required"),
        lambda m, at, tz: AutorestartFound(at=at, path=inert(m[1])),
    ),
    (_rx(r"^autorestart file not found"), lambda m, at, tz: AutorestartNotFound(at=at)),
    (_rx(r"^exiting after error with exit code\s*=\s*(-?\d{1,9})"), _ibc_exiting),
    (_rx(r"^ibc returned exit status\s+(\d{1,9})"), _exit_status),
    (_rx(r"^ibc will restart shortly"), lambda m, at, tz: RestartShortly(at=at, cold=False)),
    (_rx(r"^ibc will cold-restart shortly"), lambda m, at, tz: RestartShortly(at=at, cold=True)),
    (_rx(r"^(?:gateway|tws) finished\s*$"), lambda m, at, tz: LoopEnded(at=at)),
)


def classify(message: str, at: datetime | None, tz: tzinfo) -> AuthEvent | None:
    """A split line's message -> the event of the first rule that matches it, or None."""
    for pattern, build in _RULES:
        found = pattern.search(message)
        if found is not None:
            return build(found, at, tz)
    return None


def parse_line(line: str, *, tz: tzinfo = UTC) -> AuthEvent | None:
    """One log line -> its auth event, or None if the line says nothing about logging in.

    ``tz`` is the gateway's TIME_ZONE: IBC stamps its lines with local wall time and no zone,
    so that is how ``at`` becomes an aware time when Docker's UTC stamp is absent.
    Never raises, whatever the text.
    """
    try:
        split = split_line(line, tz)
        return classify(split.message, split.at, tz)
    except (ValueError, OverflowError, IndexError):
        # Defensive: a line that defeats the parser is a line without an event.
        return None


def is_error_header(split: Split) -> bool:
    """``Login error message:``, whose dialog text may come on the next line."""
    return split.message.lower().startswith("login error message")
