"""The simulated IB login server: every transition, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import ExistingSessionAction, MarketDataEntitlement, TradingMode
from ibsim import auth
from ibsim.auth import (
    AuthorityConfig,
    Awaiting2FA,
    ExistingSession,
    Failed,
    FailReason,
    LockedOut,
    LoggedIn,
    LoginAuthority,
    LoginKind,
    Resolution,
    User,
)

ESA = ExistingSessionAction
# A Wednesday, far from the weekly boundary.
WEDNESDAY = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def live_user(**overrides: object) -> User:
    fields: dict[str, object] = {
        "username": "alice",
        "password": "s3cret",
        "accounts": ("U1234567",),
        "mode": TradingMode.LIVE,
        "twofa_required": True,
        "market_data": MarketDataEntitlement.REALTIME,
    }
    fields.update(overrides)
    return User(**fields)  # type: ignore[arg-type]


def paper_user() -> User:
    return User(username="paperbob", password="pw", accounts=("DU111",), twofa_required=False)


def make(
    start: datetime = WEDNESDAY, config: AuthorityConfig | None = None
) -> tuple[LoginAuthority, FakeClock]:
    clock = FakeClock(start)
    authority = LoginAuthority(now=clock, users=[live_user(), paper_user()], config=config)
    return authority, clock


def login_fully(authority: LoginAuthority, gateway: str = "gw1", **kw: object) -> LoggedIn:
    step = authority.begin_login(username="alice", password="s3cret", gateway=gateway, **kw)  # type: ignore[arg-type]
    assert isinstance(step, Awaiting2FA)
    approved = authority.approve_2fa("alice")
    assert isinstance(approved, LoggedIn)
    return approved


class TestCredentials:
    def test_paper_user_without_2fa_logs_in_at_once(self) -> None:
        authority, clock = make()
        step = authority.begin_login(username="paperbob", password="pw", gateway="paper1")
        assert isinstance(step, LoggedIn)
        assert step.kind is LoginKind.LOGGED_IN
        assert step.session.accounts == ("DU111",)
        assert step.session.started_at == clock.now
        assert authority.session_of("paperbob") == step.session

    def test_wrong_password_fails_and_counts(self) -> None:
        authority, _ = make()
        first = authority.begin_login(username="alice", password="nope", gateway="gw1")
        second = authority.begin_login(username="alice", password="nope", gateway="gw1")
        assert isinstance(first, Failed) and isinstance(second, Failed)
        assert first.reason is FailReason.BAD_CREDENTIALS
        assert (first.failures, second.failures) == (1, 2)
        assert authority.session_of("alice") is None

    def test_unknown_user_fails_like_a_bad_password(self) -> None:
        authority, _ = make()
        step = authority.begin_login(username="mallory", password="x", gateway="gw1")
        assert isinstance(step, Failed)
        assert step.reason is FailReason.BAD_CREDENTIALS

    def test_password_is_not_in_repr(self) -> None:
        assert "s3cret" not in repr(live_user())

    def test_duplicate_user_is_rejected_with_its_name(self) -> None:
        authority, _ = make()
        with pytest.raises(ValueError, match="alice"):
            authority.add_user(live_user())

    def test_success_clears_the_failure_count(self) -> None:
        authority, _ = make()
        authority.begin_login(username="alice", password="nope", gateway="gw1")
        login_fully(authority)
        assert authority.failures("alice") == 0


class TestLockout:
    def test_reaching_max_failures_locks_the_username(self) -> None:
        authority, clock = make(
            config=AuthorityConfig(max_failures=3, lockout=timedelta(minutes=10))
        )
        steps = [
            authority.begin_login(username="alice", password="bad", gateway="gw1") for _ in range(3)
        ]
        assert [s.kind for s in steps] == [LoginKind.FAILED, LoginKind.FAILED, LoginKind.LOCKED_OUT]
        locked = steps[-1]
        assert isinstance(locked, LockedOut)
        assert locked.until == clock.now + timedelta(minutes=10)
        assert authority.locked_until("alice") == locked.until

    def test_locked_username_refuses_even_the_right_password(self) -> None:
        authority, _ = make(config=AuthorityConfig(max_failures=1))
        authority.begin_login(username="alice", password="bad", gateway="gw1")
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, LockedOut)
        assert step.failures == 1  # refused attempts during a lockout do not add up

    def test_lockout_expires_and_the_count_starts_again(self) -> None:
        authority, clock = make(
            config=AuthorityConfig(max_failures=1, lockout=timedelta(minutes=5))
        )
        authority.begin_login(username="alice", password="bad", gateway="gw1")
        clock.advance(timedelta(minutes=5))
        assert authority.locked_until("alice") is None
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)
        assert authority.failures("alice") == 0

    def test_clear_lockout_unlocks_at_once(self) -> None:
        authority, _ = make(config=AuthorityConfig(max_failures=1))
        authority.begin_login(username="alice", password="bad", gateway="gw1")
        authority.clear_lockout("alice")
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)

    @pytest.mark.parametrize(
        "bad",
        [
            {"twofa_timeout": timedelta(0)},
            {"max_failures": 0},
            {"lockout": timedelta(seconds=-1)},
        ],
    )
    def test_bad_config_is_named_in_the_error(self, bad: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=next(iter(bad))):
            AuthorityConfig(**bad)  # type: ignore[arg-type]


class TestTwoFactor:
    def test_live_login_waits_for_the_phone_with_180s_deadline(self) -> None:
        authority, clock = make()
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)
        assert step.deadline == clock.now + timedelta(seconds=180)
        assert step.reason == "no_token"
        assert authority.pending_2fa("alice") is not None
        assert authority.session_of("alice") is None

    def test_deadline_is_configurable(self) -> None:
        authority, clock = make(config=AuthorityConfig(twofa_timeout=timedelta(seconds=30)))
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)
        assert step.deadline == clock.now + timedelta(seconds=30)

    def test_approval_in_time_opens_the_session(self) -> None:
        authority, clock = make()
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=179))
        step = authority.approve_2fa("alice")
        assert isinstance(step, LoggedIn)
        assert step.session.gateway == "gw1"
        assert step.used_token is False
        assert authority.pending_2fa("alice") is None

    def test_poll_times_out_the_prompt_as_a_failed_login(self) -> None:
        authority, clock = make()
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=179))
        assert authority.poll() == []
        clock.advance(timedelta(seconds=1))
        [timed_out] = authority.poll()
        assert isinstance(timed_out, Failed)
        assert timed_out.reason is FailReason.TWOFA_TIMED_OUT
        assert timed_out.failures == 1
        assert authority.pending_2fa("alice") is None

    def test_late_approval_reports_the_timeout_not_a_session(self) -> None:
        authority, clock = make()
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=200))
        step = authority.approve_2fa("alice")
        assert isinstance(step, Failed)
        assert step.reason is FailReason.TWOFA_TIMED_OUT
        assert authority.session_of("alice") is None

    def test_repeated_2fa_timeouts_lock_the_account(self) -> None:
        authority, clock = make(config=AuthorityConfig(max_failures=2))
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=180))
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=180))
        [step] = authority.poll()
        assert isinstance(step, LockedOut)

    def test_denial_is_a_failed_login(self) -> None:
        authority, _ = make()
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        step = authority.deny_2fa("alice")
        assert isinstance(step, Failed)
        assert step.reason is FailReason.TWOFA_DENIED
        assert authority.failures("alice") == 1

    def test_approve_or_deny_without_a_prompt_returns_none(self) -> None:
        authority, _ = make()
        assert authority.approve_2fa("alice") is None
        assert authority.deny_2fa("alice") is None

    def test_new_attempt_replaces_a_pending_prompt(self) -> None:
        authority, clock = make()
        authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        clock.advance(timedelta(seconds=100))
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)
        pending = authority.pending_2fa("alice")
        assert pending is not None and pending.deadline == clock.now + timedelta(seconds=180)
        clock.advance(timedelta(seconds=100))
        assert authority.poll() == []  # the first prompt's deadline no longer applies


class TestRestartToken:
    def test_token_skips_2fa_on_relogin(self) -> None:
        authority, clock = make()
        first = login_fully(authority)
        assert authority.has_token(username="alice", gateway="gw1")
        authority.logout(first.session.session_id)
        clock.advance(timedelta(hours=20))
        step = authority.begin_login(
            username="alice", password="s3cret", gateway="gw1", presents_token=True
        )
        assert isinstance(step, LoggedIn)
        assert step.used_token is True

    def test_without_presenting_the_token_2fa_is_needed(self) -> None:
        authority, _ = make()
        first = login_fully(authority)
        authority.logout(first.session.session_id)
        step = authority.begin_login(username="alice", password="s3cret", gateway="gw1")
        assert isinstance(step, Awaiting2FA)
        assert step.reason == "no_token"

    def test_token_belongs_to_the_gateway_that_earned_it(self) -> None:
        authority, _ = make()
        first = login_fully(authority, gateway="gw1")
        authority.logout(first.session.session_id)
        step = authority.begin_login(
            username="alice", password="s3cret", gateway="gw2", presents_token=True
        )
        assert isinstance(step, Awaiting2FA)
        assert step.reason == "token_unknown"

    def test_revoked_token_forces_2fa(self) -> None:
        authority, _ = make()
        first = login_fully(authority)
        authority.logout(first.session.session_id)
        assert authority.revoke_token(username="alice", gateway="gw1") is True
        step = authority.begin_login(
            username="alice", password="s3cret", gateway="gw1", presents_token=True
        )
        assert isinstance(step, Awaiting2FA)

    def test_first_login_after_sunday_0100_new_york_needs_2fa(self) -> None:
        # Saturday 2024-06-15 12:00 New York (EDT, UTC-4) = 16:00 UTC.
        authority, clock = make(start=datetime(2024, 6, 15, 16, 0, tzinfo=UTC))
        first = login_fully(authority)
        authority.logout(first.session.session_id)
        # Sunday 00:59 EDT = 04:59 UTC: still before the boundary, the token works.
        clock.now = datetime(2024, 6, 16, 4, 59, tzinfo=UTC)
        step = authority.begin_login(
            username="alice", password="s3cret", gateway="gw1", presents_token=True
        )
        assert isinstance(step, LoggedIn)
        authority.logout(step.session.session_id)
        # Sunday 01:00 EDT = 05:00 UTC: the weekly boundary.
        clock.now = datetime(2024, 6, 16, 5, 0, tzinfo=UTC)
        step2 = authority.begin_login(
            username="alice", password="s3cret", gateway="gw1", presents_token=True
        )
        assert isinstance(step2, Awaiting2FA)
        assert step2.reason == "weekly_reauth"
        # After that one full login the fresh token works again.
        assert isinstance(authority.approve_2fa("alice"), LoggedIn)
        again = authority.session_of("alice")
        assert again is not None
        authority.logout(again.session_id)
        clock.advance(timedelta(hours=1))
        step3 = authority.begin_login(
            username="alice", password="s3cret", gateway="gw1", presents_token=True
        )
        assert isinstance(step3, LoggedIn) and step3.used_token

    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            # Summer (EDT): Sunday 01:00 New York is 05:00 UTC.
            (datetime(2024, 6, 16, 5, 0, tzinfo=UTC), datetime(2024, 6, 16, 5, 0, tzinfo=UTC)),
            (datetime(2024, 6, 16, 4, 59, tzinfo=UTC), datetime(2024, 6, 9, 5, 0, tzinfo=UTC)),
            (datetime(2024, 6, 19, 12, 0, tzinfo=UTC), datetime(2024, 6, 16, 5, 0, tzinfo=UTC)),
            # Winter (EST): Sunday 01:00 New York is 06:00 UTC.
            (datetime(2024, 1, 10, 0, 0, tzinfo=UTC), datetime(2024, 1, 7, 6, 0, tzinfo=UTC)),
            # The Sunday DST starts (2024-03-10): 01:00 EST still exists, 06:00 UTC.
            (datetime(2024, 3, 10, 7, 0, tzinfo=UTC), datetime(2024, 3, 10, 6, 0, tzinfo=UTC)),
        ],
    )
    def test_last_weekly_boundary(self, now: datetime, expected: datetime) -> None:
        assert auth.last_weekly_boundary(now) == expected

    def test_last_weekly_boundary_refuses_naive_time(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            auth.last_weekly_boundary(datetime(2024, 1, 1))


class TestExistingSession:
    @pytest.mark.parametrize(
        ("existing", "new", "expected"),
        [
            (ESA.PRIMARY, ESA.PRIMARY, Resolution.EXISTING_SESSION_WINS),
            (ESA.PRIMARY, ESA.PRIMARY_OVERRIDE, Resolution.EXISTING_SESSION_WINS),
            (ESA.PRIMARY_OVERRIDE, ESA.PRIMARY_OVERRIDE, Resolution.NEW_SESSION_WINS),
            (ESA.PRIMARY_OVERRIDE, ESA.PRIMARY, Resolution.NEW_SESSION_WINS),
            (ESA.SECONDARY, ESA.PRIMARY, Resolution.NEW_SESSION_WINS),
            (ESA.PRIMARY_OVERRIDE, ESA.SECONDARY, Resolution.EXISTING_SESSION_WINS),
            (ESA.SECONDARY, ESA.SECONDARY, Resolution.EXISTING_SESSION_WINS),
            (ESA.MANUAL, ESA.PRIMARY, Resolution.USER_MUST_CHOOSE),
            (ESA.PRIMARY, ESA.MANUAL, Resolution.USER_MUST_CHOOSE),
        ],
    )
    def test_resolution_follows_ibc_documentation(
        self, existing: ESA, new: ESA, expected: Resolution
    ) -> None:
        assert auth.resolve_existing_session(existing=existing, new=new) is expected

    def test_primaryoverride_newcomer_displaces_the_old_session(self) -> None:
        authority, _ = make()
        old = login_fully(authority, gateway="gw1", existing_session_action=ESA.PRIMARY_OVERRIDE)
        authority.begin_login(
            username="alice",
            password="s3cret",
            gateway="gw2",
            existing_session_action=ESA.PRIMARY_OVERRIDE,
        )
        step = authority.approve_2fa("alice")
        assert isinstance(step, LoggedIn)
        assert step.displaced == old.session
        current = authority.session_of("alice")
        assert current is not None and current.gateway == "gw2"

    def test_primary_keeps_its_session_against_a_newcomer(self) -> None:
        authority, _ = make()
        old = login_fully(authority, gateway="gw1", existing_session_action=ESA.PRIMARY)
        authority.begin_login(
            username="alice",
            password="s3cret",
            gateway="gw2",
            existing_session_action=ESA.PRIMARY_OVERRIDE,
        )
        step = authority.approve_2fa("alice")
        assert isinstance(step, ExistingSession)
        assert step.kind is LoginKind.EXISTING_SESSION
        assert step.resolution is Resolution.EXISTING_SESSION_WINS
        assert step.existing == old.session
        assert authority.session_of("alice") == old.session

    def test_clash_without_2fa_resolves_in_begin_login(self) -> None:
        authority, _ = make()
        authority.begin_login(
            username="paperbob", password="pw", gateway="p1", existing_session_action=ESA.SECONDARY
        )
        step = authority.begin_login(
            username="paperbob", password="pw", gateway="p2", existing_session_action=ESA.PRIMARY
        )
        assert isinstance(step, LoggedIn)
        assert step.displaced is not None and step.displaced.gateway == "p1"

    def test_same_gateway_relogin_replaces_its_own_session(self) -> None:
        authority, _ = make()
        first = authority.begin_login(username="paperbob", password="pw", gateway="p1")
        second = authority.begin_login(username="paperbob", password="pw", gateway="p1")
        assert isinstance(first, LoggedIn) and isinstance(second, LoggedIn)
        assert second.displaced == first.session
        assert len(authority.sessions()) == 1

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("PrimaryOverride", ESA.PRIMARY_OVERRIDE),
            (" manual ", ESA.MANUAL),
            ("bogus", ESA.SECONDARY),
        ],
    )
    def test_setting_parses_like_ibc(self, text: str, expected: ESA) -> None:
        assert auth.parse_existing_session_action(text) is expected


class TestLogoutAndFaults:
    def test_logout_ends_the_session_once(self) -> None:
        authority, _ = make()
        step = authority.begin_login(username="paperbob", password="pw", gateway="p1")
        assert isinstance(step, LoggedIn)
        assert authority.logout(step.session.session_id) == step.session
        assert authority.session_of("paperbob") is None
        assert authority.logout(step.session.session_id) is None

    def test_reject_all_refuses_without_counting(self) -> None:
        authority, _ = make()
        authority.reject_all = True
        step = authority.begin_login(username="paperbob", password="pw", gateway="p1")
        assert isinstance(step, Failed)
        assert step.reason is FailReason.REJECTED
        assert authority.failures("paperbob") == 0
        authority.reject_all = False
        assert isinstance(
            authority.begin_login(username="paperbob", password="pw", gateway="p1"), LoggedIn
        )

    def test_session_ids_are_unique(self) -> None:
        authority, _ = make()
        ids = set()
        for _ in range(5):
            step = authority.begin_login(username="paperbob", password="pw", gateway="p1")
            assert isinstance(step, LoggedIn)
            ids.add(step.session.session_id)
        assert len(ids) == 5
