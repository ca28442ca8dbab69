"""The simulated IB login server: credentials, 2FA, lockout, one session per username, tokens.

This is the part of IB's servers that decides whether a gateway's login succeeds. It is pure
and synchronous: the broker calls it, keeps the results, and drops the API clients of any
session it reports as displaced. Time comes from an injected clock returning aware UTC.

The rules it models, each from IB's or IBC's behaviour:

* A login checks the password; a wrong one counts as a failure. ``max_failures`` consecutive
  failures lock the username for ``lockout`` ("Too many failed login attempts").
* A user with ``twofa_required`` must approve a push on the phone within ``twofa_timeout``
  (180 s at IB). A timeout or a denial counts as a failed login, as at IB.
* A gateway that logged in once holds a restart token (IBC's autorestart file). Presenting it
  skips 2FA, except that the first login after the weekly boundary (Sunday 01:00
  America/New_York) needs full authentication again.
* One session per username. A second login is resolved by IBC's ExistingSessionDetectedAction
  of both sides, as IBC's config.ini documents it (see :func:`resolve_existing_session`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from gateway.config import ExistingSessionAction, MarketDataEntitlement, TradingMode

NEW_YORK = ZoneInfo("America/New_York")
# IB expires restart tokens weekly: the first login after Sunday 01:00 New York time needs 2FA.
WEEKLY_REAUTH_WEEKDAY = 6  # Sunday, as datetime.weekday() counts
WEEKLY_REAUTH_TIME = time(1, 0)


def parse_existing_session_action(text: str) -> ExistingSessionAction:
    """Read IBC's ExistingSessionDetectedAction as IBC does: case-insensitive, and an unknown
    value means secondary (IBC logs "has an invalid value ... assuming 'secondary'")."""
    try:
        return ExistingSessionAction(text.strip().lower())
    except ValueError:
        return ExistingSessionAction.SECONDARY


class FailReason(enum.Enum):
    """Why a login did not produce a session."""

    BAD_CREDENTIALS = "bad_credentials"
    TWOFA_TIMED_OUT = "twofa_timed_out"
    TWOFA_DENIED = "twofa_denied"
    REJECTED = "rejected"  # fault injection: the server refuses every login
    SUPERSEDED = "superseded"  # a newer login for the same username replaced a pending 2FA


class Resolution(enum.Enum):
    """How a clash with an existing session of the same username ended."""

    NEW_SESSION_WINS = "new_session_wins"  # the existing session is displaced
    EXISTING_SESSION_WINS = "existing_session_wins"  # the new login terminates
    USER_MUST_CHOOSE = "user_must_choose"  # a 'manual' side shows the dialog; nothing moves


@dataclass(frozen=True)
class User:
    """One IB username as the simulated server knows it. The password never appears in repr."""

    username: str
    password: str = field(repr=False)
    accounts: tuple[str, ...]
    mode: TradingMode = TradingMode.PAPER  # paper usernames are separate at IB
    twofa_required: bool = False
    market_data: MarketDataEntitlement = MarketDataEntitlement.REALTIME


@dataclass(frozen=True)
class AuthorityConfig:
    """The server's login policy; defaults are IB's observed values."""

    twofa_timeout: timedelta = timedelta(seconds=180)
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.twofa_timeout <= timedelta(0):
            raise ValueError(
                f"AuthorityConfig.twofa_timeout must be positive: {self.twofa_timeout}"
            )
        if self.max_failures < 1:
            raise ValueError(f"AuthorityConfig.max_failures must be >= 1: {self.max_failures}")
        if self.lockout < timedelta(0):
            raise ValueError(f"AuthorityConfig.lockout must not be negative: {self.lockout}")


@dataclass(frozen=True)
class Session:
    """One logged-in IB session: what the broker hands to the gateway's API clients."""

    session_id: str
    username: str
    gateway: str
    accounts: tuple[str, ...]
    mode: TradingMode
    market_data: MarketDataEntitlement
    started_at: datetime
    existing_session_action: ExistingSessionAction


class LoginKind(enum.Enum):
    """The outcome of a login step, for callers that prefer a switch over isinstance (the
    broker port carries it over the wire too)."""

    LOGGED_IN = "logged_in"
    AWAITING_2FA = "awaiting_2fa"
    FAILED = "failed"
    LOCKED_OUT = "locked_out"
    EXISTING_SESSION = "existing_session"


@dataclass(frozen=True)
class LoggedIn:
    """The login produced a session; ``displaced`` is a session the broker must now drop."""

    session: Session
    used_token: bool
    displaced: Session | None = None
    kind: LoginKind = field(default=LoginKind.LOGGED_IN, init=False)


@dataclass(frozen=True)
class Awaiting2FA:
    """A push went to the phone; the login completes on approval before ``deadline``."""

    username: str
    gateway: str
    deadline: datetime
    reason: str  # why 2FA is needed: "no_token", "weekly_reauth" or "token_unknown"
    kind: LoginKind = field(default=LoginKind.AWAITING_2FA, init=False)


@dataclass(frozen=True)
class Failed:
    """The login failed; ``failures`` is the consecutive failure count now on the username."""

    username: str
    gateway: str
    reason: FailReason
    failures: int
    kind: LoginKind = field(default=LoginKind.FAILED, init=False)


@dataclass(frozen=True)
class LockedOut:
    """Too many failed login attempts: no login is even checked until ``until``."""

    username: str
    gateway: str
    until: datetime
    failures: int
    kind: LoginKind = field(default=LoginKind.LOCKED_OUT, init=False)


@dataclass(frozen=True)
class ExistingSession:
    """The username already has a session and the new login did not take it over."""

    username: str
    gateway: str
    existing: Session
    resolution: Resolution
    kind: LoginKind = field(default=LoginKind.EXISTING_SESSION, init=False)


LoginStep = LoggedIn | Awaiting2FA | Failed | LockedOut | ExistingSession


def resolve_existing_session(
    *, existing: ExistingSessionAction, new: ExistingSessionAction
) -> Resolution:
    """Who keeps the session when ``new`` logs in while ``existing`` holds it.

    Follows IBC's config.ini text and ExistingSessionDetectedDialogHandler's scenarios: a new
    'secondary' session never overrides anything (scenario 2); a new 'manual' session shows
    the dialog to its user (scenario 1); otherwise the new session continues (scenario 3) and
    the existing side decides: 'primary' keeps its session and the newcomer ends (5 then 4),
    'primaryoverride' and 'secondary' give way (6, 2), 'manual' waits for its user (1).
    """
    if new is ExistingSessionAction.SECONDARY:
        return Resolution.EXISTING_SESSION_WINS
    if new is ExistingSessionAction.MANUAL:
        return Resolution.USER_MUST_CHOOSE
    if existing is ExistingSessionAction.PRIMARY:
        return Resolution.EXISTING_SESSION_WINS
    if existing is ExistingSessionAction.MANUAL:
        return Resolution.USER_MUST_CHOOSE
    return Resolution.NEW_SESSION_WINS


def last_weekly_boundary(now: datetime, *, zone: tzinfo = NEW_YORK) -> datetime:
    """The most recent Sunday 01:00 New York time at or before ``now`` (aware, in UTC).

    Computed on the New York wall clock, so it stays at 01:00 local across DST changes.
    """
    if now.tzinfo is None:
        raise ValueError(f"last_weekly_boundary needs an aware datetime, got naive {now!r}")
    local = now.astimezone(zone)
    days_back = (local.weekday() - WEEKLY_REAUTH_WEEKDAY) % 7
    candidate_date = local.date() - timedelta(days=days_back)
    candidate = datetime.combine(candidate_date, WEEKLY_REAUTH_TIME, tzinfo=zone)
    if candidate > local:
        candidate = datetime.combine(
            candidate_date - timedelta(days=7), WEEKLY_REAUTH_TIME, tzinfo=zone
        )
    return candidate.astimezone(now.tzinfo)


@dataclass
class _Pending:
    """A login waiting for the phone."""

    username: str
    gateway: str
    deadline: datetime
    action: ExistingSessionAction
    reason: str


@dataclass
class _FailureState:
    count: int = 0
    locked_until: datetime | None = None


def _counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"s{next(numbers)}"


class LoginAuthority:
    """IB's login server for the simulator: synchronous, deterministic under a fake clock."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        users: tuple[User, ...] | list[User] = (),
        config: AuthorityConfig | None = None,
        new_session_id: Callable[[], str] | None = None,
    ) -> None:
        self._now = now
        self._config = config or AuthorityConfig()
        self._new_session_id = new_session_id or _counter_ids()
        self._users: dict[str, User] = {}
        self._sessions: dict[str, Session] = {}  # by username: one session per username
        self._pending: dict[str, _Pending] = {}  # by username
        self._failures: dict[str, _FailureState] = {}
        self._tokens: dict[tuple[str, str], datetime] = {}  # (username, gateway) -> issued at
        self.reject_all = False
        for user in users:
            self.add_user(user)

    # --- users and queries -------------------------------------------------------------------

    def add_user(self, user: User) -> None:
        """Register a username; a duplicate is a configuration error, not an overwrite."""
        if user.username in self._users:
            raise ValueError(f"LoginAuthority: user {user.username!r} is already registered")
        self._users[user.username] = user

    def user(self, username: str) -> User | None:
        return self._users.get(username)

    def session_of(self, username: str) -> Session | None:
        return self._sessions.get(username)

    def sessions(self) -> tuple[Session, ...]:
        return tuple(self._sessions.values())

    def pending_2fa(self, username: str) -> Awaiting2FA | None:
        pending = self._pending.get(username)
        if pending is None:
            return None
        return Awaiting2FA(
            username=pending.username,
            gateway=pending.gateway,
            deadline=pending.deadline,
            reason=pending.reason,
        )

    def failures(self, username: str) -> int:
        return self._failures.get(username, _FailureState()).count

    def locked_until(self, username: str) -> datetime | None:
        state = self._failures.get(username)
        if state is None or state.locked_until is None:
            return None
        return state.locked_until if state.locked_until > self._now() else None

    def has_token(self, *, username: str, gateway: str) -> bool:
        return (username, gateway) in self._tokens

    # --- the login flow ----------------------------------------------------------------------

    def begin_login(
        self,
        *,
        username: str,
        password: str,
        gateway: str,
        presents_token: bool = False,
        existing_session_action: ExistingSessionAction = ExistingSessionAction.MANUAL,
    ) -> LoginStep:
        """One login attempt by ``gateway``'s IBC; returns the next step of the login."""
        now = self._now()
        self._expire_pending(now)
        state = self._failures.setdefault(username, _FailureState())

        # A locked username is refused before the password is even looked at.
        if state.locked_until is not None:
            if now < state.locked_until:
                return LockedOut(
                    username=username,
                    gateway=gateway,
                    until=state.locked_until,
                    failures=state.count,
                )
            # The lockout has run out: the username starts again with a clean count.
            state.locked_until = None
            state.count = 0

        # Fault injection: the server refuses every login without counting it against the user.
        if self.reject_all:
            return Failed(
                username=username,
                gateway=gateway,
                reason=FailReason.REJECTED,
                failures=state.count,
            )

        user = self._users.get(username)
        if user is None or user.password != password:
            # Wrong password or unknown username look the same to the client, as at IB.
            return self._fail(username=username, gateway=gateway, reason=FailReason.BAD_CREDENTIALS)

        # A new attempt replaces any login still waiting on the phone for this username.
        self._pending.pop(username, None)

        why = self._token_state(
            username=username, gateway=gateway, presents_token=presents_token, now=now
        )
        if user.twofa_required and why != "valid":
            # Credentials are good; the push goes to the phone and the clock starts.
            deadline = now + self._config.twofa_timeout
            self._pending[username] = _Pending(
                username=username,
                gateway=gateway,
                deadline=deadline,
                action=existing_session_action,
                reason=why,
            )
            return Awaiting2FA(username=username, gateway=gateway, deadline=deadline, reason=why)

        # Authenticated (no 2FA needed): only a clash with an existing session can stop it now.
        return self._open_session(
            user=user,
            gateway=gateway,
            action=existing_session_action,
            used_token=why == "valid",
            now=now,
        )

    def approve_2fa(self, username: str) -> LoginStep | None:
        """The phone approves the pending push; None if nothing is pending for ``username``."""
        now = self._now()
        expired = self._expire_pending(now)
        for step in expired:
            if step.username == username:
                # The approval came after the deadline: the login had already failed.
                return step
        pending = self._pending.pop(username, None)
        if pending is None:
            return None
        user = self._users[username]
        # 2FA done: the session opens unless an existing session keeps it.
        return self._open_session(
            user=user, gateway=pending.gateway, action=pending.action, used_token=False, now=now
        )

    def deny_2fa(self, username: str) -> Failed | LockedOut | None:
        """The phone denies the push: a failed login, as at IB. None if nothing is pending."""
        now = self._now()
        self._expire_pending(now)
        pending = self._pending.pop(username, None)
        if pending is None:
            return None
        return self._fail(
            username=username, gateway=pending.gateway, reason=FailReason.TWOFA_DENIED
        )

    def poll(self) -> list[Failed | LockedOut]:
        """Time out pending 2FA prompts whose deadline has passed; returns their failures."""
        return self._expire_pending(self._now())

    def logout(self, session_id: str) -> Session | None:
        """End a session (gateway shut down or restarting); its token stays with the gateway."""
        for username, session in list(self._sessions.items()):
            if session.session_id == session_id:
                del self._sessions[username]
                return session
        return None

    def revoke_token(self, *, username: str, gateway: str) -> bool:
        """Forget a gateway's restart token (its autorestart file was lost)."""
        return self._tokens.pop((username, gateway), None) is not None

    def clear_lockout(self, username: str) -> None:
        """Operator action on the simulated server: unlock a username and reset its count."""
        self._failures.pop(username, None)

    # --- internals ---------------------------------------------------------------------------

    def _token_state(
        self, *, username: str, gateway: str, presents_token: bool, now: datetime
    ) -> str:
        """ "valid" if the gateway's restart token lets it skip 2FA, else why not."""
        if not presents_token:
            return "no_token"
        issued = self._tokens.get((username, gateway))
        if issued is None:
            # The gateway claims a token the server never issued to it.
            return "token_unknown"
        if issued < last_weekly_boundary(now):
            # The token predates the last Sunday 01:00 ET boundary: full authentication again.
            return "weekly_reauth"
        return "valid"

    def _open_session(
        self,
        *,
        user: User,
        gateway: str,
        action: ExistingSessionAction,
        used_token: bool,
        now: datetime,
    ) -> LoggedIn | ExistingSession:
        displaced: Session | None = None
        existing = self._sessions.get(user.username)
        if existing is not None and existing.gateway == gateway:
            # The same gateway logging in again (a restart): its old session simply ends.
            displaced = existing
        elif existing is not None:
            resolution = resolve_existing_session(
                existing=existing.existing_session_action, new=action
            )
            if resolution is not Resolution.NEW_SESSION_WINS:
                # The existing session keeps the username (or a human must choose).
                return ExistingSession(
                    username=user.username,
                    gateway=gateway,
                    existing=existing,
                    resolution=resolution,
                )
            # The new session takes over; the broker must drop the old one's API clients.
            displaced = existing
        session = Session(
            session_id=self._new_session_id(),
            username=user.username,
            gateway=gateway,
            accounts=user.accounts,
            mode=user.mode,
            market_data=user.market_data,
            started_at=now,
            existing_session_action=action,
        )
        self._sessions[user.username] = session
        # A successful login clears the failure count and (re)issues the gateway's token.
        self._failures.pop(user.username, None)
        if not used_token or (user.username, gateway) not in self._tokens:
            self._tokens[(user.username, gateway)] = now
        return LoggedIn(session=session, used_token=used_token, displaced=displaced)

    def _fail(self, *, username: str, gateway: str, reason: FailReason) -> Failed | LockedOut:
        state = self._failures.setdefault(username, _FailureState())
        state.count += 1
        if state.count >= self._config.max_failures:
            # The failure that reaches the limit locks the username for the lockout period.
            state.locked_until = self._now() + self._config.lockout
            return LockedOut(
                username=username, gateway=gateway, until=state.locked_until, failures=state.count
            )
        return Failed(username=username, gateway=gateway, reason=reason, failures=state.count)

    def _expire_pending(self, now: datetime) -> list[Failed | LockedOut]:
        results: list[Failed | LockedOut] = []
        for username, pending in list(self._pending.items()):
            if now >= pending.deadline:
                # Nobody approved in time: IB counts the 2FA timeout as a failed login.
                del self._pending[username]
                results.append(
                    self._fail(
                        username=username,
                        gateway=pending.gateway,
                        reason=FailReason.TWOFA_TIMED_OUT,
                    )
                )
        return results
