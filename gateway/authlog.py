"""Container log line -> typed auth event, and a follower that trusts only the current run.

A gateway's login story is told by IBC's console lines (``yyyy-MM-dd HH:mm:ss:SSS IBC: ...``)
and by its start script's plain lines. :func:`parse_line` reads one line (with or without
the timestamp ``docker logs --timestamps`` puts in front) into an event or None; it never
raises. :class:`AuthLogFollower` reads lines in order and drops every line from before the
container's current start, so a stale "Login has completed" can never report a login.

Matching is case-insensitive because IBC's capitalisation changed across versions; the exact
strings are IBC 3.24.1's (``src/ibcalpha/ibc/*.java``, ``resources/scripts/ibcstart.sh``), which
:mod:`ibsim.ibclog` prints. Pure: no I/O, time comes in with the lines.

Inside a container IBC's start script relaunches the Gateway JVM in a loop, so one container
start holds many JVM runs. :class:`AuthLogFollower` reads each relaunch by what the lines of the
ending run and the script's decision say (:class:`Relaunch`, :class:`RelaunchKind`), never by
the clock: a daily auto-restart and a RESTART are token relaunches (no login), a weekly
``ColdRestartTime`` and a failed login are cold ones (a full login), 1112 and 1111 have their own.

Every text an event carries from a line (IB's dialog text, a path) is untrusted and passed on
inert (:func:`gateway.codes.inert`): no escapes or controls, no chat markup, capped.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo

from gateway.codes import IbcExit, ibc_exit_from_status, inert

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


class ExistingSessionOutcome(enum.Enum):
    """What IBC did about another session of the same username."""

    DETECTED = "detected"  # the dialog appeared; IBC has not decided yet
    USER_MUST_CHOOSE = "user_must_choose"  # manual: nothing happens until a human acts
    THIS_SESSION_ENDS = "this_session_ends"
    THIS_SESSION_CONTINUES = "this_session_continues"


@dataclass(frozen=True)
class SessionStarting:
    """IBC began a session (first in its run, or again after an in-process restart)."""

    at: datetime | None
    dialog_timeout_seconds: int | None
    restarting: bool


@dataclass(frozen=True)
class LoginAttempt:
    at: datetime | None
    number: int


@dataclass(frozen=True)
class TwoFactorInitiated:
    """A 2FA prompt is on the user's phone."""

    at: datetime | None


@dataclass(frozen=True)
class TwoFactorTimedOut:
    """IBC is exiting because login did not complete after 2FA (exit code 1111 follows)."""

    at: datetime | None


@dataclass(frozen=True)
class TwoFactorReloginScheduled:
    """Nobody answered the 2FA prompt; IBC will try the login again in 5 s."""

    at: datetime | None


@dataclass(frozen=True)
class LoggedIn:
    """Login has completed (or IBC's configuration after login finished)."""

    at: datetime | None
    configured: bool  # True for "Configuration tasks completed", which comes later


@dataclass(frozen=True)
class ExistingSessionDetected:
    at: datetime | None
    outcome: ExistingSessionOutcome


@dataclass(frozen=True)
class ReloginRequired:
    """IB's "Re-login is required" dialog: another login displaced this session."""

    at: datetime | None


@dataclass(frozen=True)
class LoginFailed:
    """A login failed; ``message`` is IB's dialog text when the log carried it."""

    at: datetime | None
    message: str | None


@dataclass(frozen=True)
class TooManyFailedAttempts:
    """IB locked the username; ``wait_seconds`` is IB's stated wait when the line gave it."""

    at: datetime | None
    wait_seconds: int | None


@dataclass(frozen=True)
class ColdRestart:
    """IBC is stopping for a cold restart (after a failed login or a lost server)."""

    at: datetime | None


@dataclass(frozen=True)
class WillReloginAt:
    """IBC scheduled a login after a lockout; ``when`` is in the gateway's zone."""

    at: datetime | None
    when: datetime | None
    login_number: int | None


@dataclass(frozen=True)
class AutorestartFound:
    """The start script found the restart token: no 2FA is needed for this start."""

    at: datetime | None
    path: str


@dataclass(frozen=True)
class AutorestartNotFound:
    """The start script found no restart token: full authentication (2FA on live)."""

    at: datetime | None


@dataclass(frozen=True)
class Stopping:
    """IBC is shutting down (STOP command or a cold restart)."""

    at: datetime | None
    was_logged_in: bool


@dataclass(frozen=True)
class IbcExiting:
    """IBC halts the JVM with one of its own exit codes."""

    at: datetime | None
    code: int
    ibc_exit: IbcExit | None


@dataclass(frozen=True)
class ExitStatus:
    """The start script saw IBC exit; ``status`` is modulo 256 as a shell sees it."""

    at: datetime | None
    status: int
    ibc_exit: IbcExit | None


@dataclass(frozen=True)
class RestartShortly:
    """The start script will run IBC again (``cold`` means without the restart token)."""

    at: datetime | None
    cold: bool


@dataclass(frozen=True)
class RestartScheduled:
    """IBC accepted a RESTART: ``Setting auto-restart time to hh:mm AM`` (RestartTask.java).

    The Gateway restarts itself at that minute, up to about a minute later, with its token.
    """

    at: datetime | None
    when: time | None


@dataclass(frozen=True)
class TwoFactorApproved:
    """The 2FA prompt was answered in time; IBC exits after ``exit_in_seconds`` if the login
    still has not completed (LoginManager.java, relogin on): the user *did* approve."""

    at: datetime | None
    exit_in_seconds: int


@dataclass(frozen=True)
class TwoFactorExpired:
    """Nobody answered the 2FA prompt and IBC will not log in again (relogin off): it waits
    at the login dialog, with no exit (LoginManager.java)."""

    at: datetime | None


@dataclass(frozen=True)
class LoopEnded:
    """The start script's loop ended (``Gateway finished``): the container exits next."""

    at: datetime | None


class RelaunchKind(enum.Enum):
    """Why IBC's start script relaunched the Gateway JVM inside the running container."""

    #: The Gateway's own daily auto-restart (AutoRestartTime): relaunched with the token.
    AUTO_RESTART = "auto_restart"
    #: A command-server RESTART (``Setting auto-restart time to ...`` first): with the token.
    RESTART_COMMAND = "restart_command"
    #: The weekly ColdRestartTime: ``exiting via [File, Close] menu``, then a full login.
    WEEKLY_COLD = "weekly_cold"
    #: A cold restart after ``Login failed``, a login error or a lost server connection.
    COLD_AFTER_FAILURE = "cold_after_failure"
    #: Exit 1112 (88): the login dialog never appeared; always relaunched.
    NO_LOGIN_DIALOG = "no_login_dialog"
    #: Exit 1111 (87) with ``--on2fatimeout=restart``: 2FA approved, login never completed.
    TWOFA_EXIT = "twofa_exit"
    #: A relaunch no line of the ending run explains.
    UNEXPLAINED = "unexplained"

    @property
    def planned(self) -> bool:
        """Expected and bounded: the daily restart, a RESTART, the weekly cold restart."""
        return self in _PLANNED_RELAUNCHES

    @property
    def token(self) -> bool:
        """Relaunched with the autorestart token: no login, no 2FA."""
        return self in (RelaunchKind.AUTO_RESTART, RelaunchKind.RESTART_COMMAND)


_PLANNED_RELAUNCHES = frozenset(
    {RelaunchKind.AUTO_RESTART, RelaunchKind.RESTART_COMMAND, RelaunchKind.WEEKLY_COLD}
)


@dataclass(frozen=True)
class Relaunch:
    """The start script relaunches the JVM for ``kind`` (``status``: the ended run's exit)."""

    at: datetime | None
    kind: RelaunchKind
    status: int | None


AuthEvent = (
    RestartScheduled
    | TwoFactorApproved
    | TwoFactorExpired
    | LoopEnded
    | Relaunch
    | SessionStarting
    | LoginAttempt
    | TwoFactorInitiated
    | TwoFactorTimedOut
    | TwoFactorReloginScheduled
    | LoggedIn
    | ExistingSessionDetected
    | ReloginRequired
    | LoginFailed
    | TooManyFailedAttempts
    | ColdRestart
    | WillReloginAt
    | AutorestartFound
    | AutorestartNotFound
    | Stopping
    | IbcExiting
    | ExitStatus
    | RestartShortly
)


@dataclass(frozen=True)
class _Split:
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


def _split(line: str, tz: tzinfo) -> _Split:
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
        return _Split(at=at, from_ibc=False, message=text.strip())
    if at is None:
        try:
            local = datetime.strptime(ibc["stamp"], "%Y-%m-%d %H:%M:%S")
            millis = int((ibc["ms"] or "0").ljust(3, "0"))
            at = local.replace(microsecond=millis * 1000, tzinfo=tz)
        except ValueError:
            at = None
    return _Split(at=at, from_ibc=True, message=ibc["msg"].strip())


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
        lambda m, at, tz: LoginFailed(at=at, message=inert(m[1], limit=_MAX_DETAIL) or None),
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


def _match(message: str, at: datetime | None, tz: tzinfo) -> AuthEvent | None:
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
        split = _split(line, tz)
        return _match(split.message, split.at, tz)
    except (ValueError, OverflowError, IndexError):
        # Defensive: a line that defeats the parser is a line without an event.
        return None


def _is_error_header(split: _Split) -> bool:
    return split.message.lower().startswith("login error message")


_MAX_DETAIL = 500  # a failed login's dialog text is kept to this many characters
_MAX_EVENTS = 1000  # events and relaunches remembered per container start


@dataclass
class _JvmRun:
    """What one JVM run of IBC said, read to name the relaunch that ends it.

    ibcstart.sh decides after each exit: a ``COLDRESTART`` flag (``IBC will cold-restart
    shortly``), else the autorestart token (``autorestart file found``), else exit 1111 with
    ``--on2fatimeout=restart``; 1112 always relaunches; otherwise the loop ends. The reason for
    a cold flag is in the run's own lines: StopTask.java writes it for ColdRestartTime after
    ``exiting via [File, Close] menu``, and for the login-failure dialogs after their lines.
    """

    restart_scheduled: bool = False
    failure: bool = False
    closed_logged_in: bool = False
    exit_status: int | None = None
    decision: RelaunchKind | None = None

    def note(self, event: AuthEvent) -> bool:
        """Take one event; True when the script said it relaunches (the story is complete)."""
        if self.exit_status is None:
            if isinstance(event, RestartScheduled):
                self.restart_scheduled = True
            elif isinstance(event, LoginFailed | ColdRestart) or (
                isinstance(event, Stopping) and not event.was_logged_in
            ):
                self.failure = True
            elif isinstance(event, Stopping):
                self.closed_logged_in = True
            elif isinstance(event, ExitStatus):
                self.exit_status = event.status
                if ibc_exit_from_status(event.status) is IbcExit.LOGIN_DIALOG_DISPLAY_TIMED_OUT:
                    self.decision = RelaunchKind.NO_LOGIN_DIALOG
            return False
        if isinstance(event, AutorestartFound) and self.decision is None:
            self.decision = (
                RelaunchKind.RESTART_COMMAND
                if self.restart_scheduled
                else RelaunchKind.AUTO_RESTART
            )
        elif isinstance(event, AutorestartNotFound) and self.decision is None:
            if ibc_exit_from_status(self.exit_status) is IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT:
                self.decision = RelaunchKind.TWOFA_EXIT
        elif isinstance(event, RestartShortly) and event.cold:
            if self.failure:
                self.decision = RelaunchKind.COLD_AFTER_FAILURE
            elif self.closed_logged_in:
                self.decision = RelaunchKind.WEEKLY_COLD
            else:
                self.decision = RelaunchKind.UNEXPLAINED
        elif isinstance(event, RestartShortly):
            return True
        elif isinstance(event, LoopEnded):
            self.exit_status = None  # the loop ended: no relaunch to name
        return False

    def kind(self) -> RelaunchKind:
        return self.decision or RelaunchKind.UNEXPLAINED


class LoginPhase(enum.Enum):
    """Where the current run's login stands, as far as its log lines tell."""

    UNKNOWN = "unknown"  # no line since the start yet
    STARTING = "starting"
    LOGGING_IN = "logging_in"
    AWAITING_2FA = "awaiting_2fa"
    EXISTING_SESSION = "existing_session"
    LOGGED_IN = "logged_in"
    FAILED = "failed"
    LOCKED_OUT = "locked_out"
    STOPPING = "stopping"
    EXITED = "exited"


_MAX_HELD = 200  # undated events held while it is unknown whether they are fresh


class AuthLogFollower:
    """Reads a container's log lines in order and keeps only what the current run said.

    Reset it with the container's start time at each (re)start. A dated line before that time
    is stale and dropped. An undated line (the start script's plain echoes, when the logs were
    read without Docker's timestamps) takes its freshness from the dated lines around it: it
    is held until the next dated line, kept if that line is fresh and dropped if it is stale.
    Read Docker logs with ``timestamps=True`` and every line is dated.
    """

    def __init__(
        self,
        *,
        started_at: datetime,
        tz: tzinfo = UTC,
        tolerance: timedelta = timedelta(milliseconds=1),
    ) -> None:
        if started_at.tzinfo is None:
            raise ValueError(
                f"AuthLogFollower: started_at must be timezone-aware, got {started_at!r}"
            )
        self._tz = tz
        # IBC stamps have millisecond precision; Docker's start time has nanoseconds.
        self._tolerance = tolerance
        self.reset(started_at=started_at)

    def reset(self, *, started_at: datetime) -> None:
        """Forget everything: the container (re)started at ``started_at``."""
        if started_at.tzinfo is None:
            raise ValueError(
                f"AuthLogFollower.reset: started_at must be timezone-aware, got {started_at!r}"
            )
        self.started_at = started_at
        self.phase = LoginPhase.UNKNOWN
        self.login_attempts = 0
        self.autorestart_found: bool | None = None
        self.last_exit_status: int | None = None
        self.last_failure: str | None = None
        self.events: list[AuthEvent] = []
        self._fresh: bool | None = None  # freshness of the last dated line; None: none yet
        self._held: list[AuthEvent] = []
        self._error_detail_pending: LoginFailed | None = None
        self.relaunches: list[Relaunch] = []
        self._run = _JvmRun()

    @property
    def logged_in(self) -> bool:
        return self.phase is LoginPhase.LOGGED_IN

    @property
    def awaiting_2fa(self) -> bool:
        return self.phase is LoginPhase.AWAITING_2FA

    def feed(self, line: str) -> list[AuthEvent]:
        """Take the next line; returns the fresh events it (and any held lines) produced.

        A line that ends a relaunch's story also yields a :class:`Relaunch` after its own event.
        """
        try:
            split = _split(line, self._tz)
            event = _match(split.message, split.at, self._tz)
        except (ValueError, OverflowError, IndexError):
            return []
        out: list[AuthEvent] = []
        if split.at is not None:
            self._fresh = split.at >= self.started_at - self._tolerance
            held, self._held = self._held, []
            if self._fresh:
                # The undated lines before this fresh one belong to the current run.
                for h in held:
                    out.extend(self._accept(h))
            else:
                # A stale line: it and everything undated before it are from an older run.
                self._error_detail_pending = None
                return []

        # IBC prints a failed login's dialog text on the line after "Login error message:".
        if self._error_detail_pending is not None:
            pending, self._error_detail_pending = self._error_detail_pending, None
            if event is None and not split.from_ibc and split.message:
                detail = inert(split.message, limit=_MAX_DETAIL) or None
                out.extend(self._admit(replace(pending, message=detail)))
                return out
            out.extend(self._admit(pending))

        if isinstance(event, LoginFailed) and event.message is None and _is_error_header(split):
            # Wait one line for the dialog text before reporting the failure.
            self._error_detail_pending = event
        elif event is not None:
            out.extend(self._admit(event))
        return out

    def flush(self) -> list[AuthEvent]:
        """Report a failure still waiting for its detail line (e.g. at the end of a read)."""
        if self._error_detail_pending is None:
            return []
        pending, self._error_detail_pending = self._error_detail_pending, None
        return self._admit(pending)

    def _admit(self, event: AuthEvent) -> list[AuthEvent]:
        if event.at is not None or self._fresh:
            return self._accept(event)
        # Undated and nothing fresh seen yet: hold until a dated line decides.
        if len(self._held) < _MAX_HELD:
            self._held.append(event)
        return []

    def _accept(self, event: AuthEvent) -> list[AuthEvent]:
        out: list[AuthEvent] = []
        if isinstance(event, SessionStarting):
            # A new JVM run began without the script's "restart shortly" line: close the last.
            out.extend(self._relaunched(event.at))
        out.append(event)
        self.events.append(event)
        self._advance(event)
        if self._run.note(event):
            out.extend(self._relaunched(event.at))
        del self.events[:-_MAX_EVENTS]
        return out

    def _relaunched(self, at: datetime | None) -> list[AuthEvent]:
        run, self._run = self._run, _JvmRun()
        if run.exit_status is None:
            return []  # no JVM ended since the last relaunch: nothing to explain
        relaunch = Relaunch(at=at, kind=run.kind(), status=run.exit_status)
        self.relaunches.append(relaunch)
        del self.relaunches[:-_MAX_EVENTS]
        self.events.append(relaunch)
        return [relaunch]

    def _advance(self, event: AuthEvent) -> None:
        # Each event moves the phase as the real gateway's login moves; lines that only
        # inform (autorestart found, relogin scheduled) leave the phase alone.
        if isinstance(event, SessionStarting):
            self.phase = LoginPhase.STARTING
        elif isinstance(event, LoginAttempt):
            self.login_attempts = max(self.login_attempts, event.number)
            self.phase = LoginPhase.LOGGING_IN
        elif isinstance(event, TwoFactorInitiated):
            self.phase = LoginPhase.AWAITING_2FA
        elif isinstance(event, LoggedIn):
            self.phase = LoginPhase.LOGGED_IN
        elif isinstance(event, ExistingSessionDetected):
            if event.outcome is ExistingSessionOutcome.THIS_SESSION_ENDS:
                self.phase = LoginPhase.FAILED
                self.last_failure = "existing session kept by the other side"
            elif self.phase is not LoginPhase.LOGGED_IN:
                self.phase = LoginPhase.EXISTING_SESSION
        elif isinstance(event, ReloginRequired):
            self.phase = LoginPhase.EXISTING_SESSION
        elif isinstance(event, TwoFactorTimedOut):
            self.phase = LoginPhase.FAILED
            self.last_failure = "second factor authentication timed out"
        elif isinstance(event, LoginFailed):
            self.phase = LoginPhase.FAILED
            self.last_failure = event.message or "login failed"
        elif isinstance(event, TooManyFailedAttempts):
            self.phase = LoginPhase.LOCKED_OUT
            self.last_failure = "too many failed login attempts"
        elif isinstance(event, ColdRestart | Stopping):
            self.phase = LoginPhase.STOPPING
        elif isinstance(event, AutorestartFound):
            self.autorestart_found = True
        elif isinstance(event, AutorestartNotFound):
            self.autorestart_found = False
        elif isinstance(event, ExitStatus):
            self.last_exit_status = event.status
            self.phase = LoginPhase.EXITED
        elif isinstance(event, TwoFactorApproved):
            self.phase = LoginPhase.LOGGING_IN
        elif isinstance(event, LoopEnded):
            self.phase = LoginPhase.EXITED
