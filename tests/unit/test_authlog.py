"""The auth-log parser on IBC's real strings, and the follower that ignores earlier runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import authlog, codes
from gateway.authlog import (
    AuthLogFollower,
    ExistingSessionOutcome,
    LoginPhase,
)
from gateway.codes import IbcExit
from ibsim import ibclog

AT = datetime(2024, 6, 12, 15, 0, 1, 250000, tzinfo=UTC)


def ibc(message: str, at: datetime = AT) -> str:
    return ibclog.format_line(message, at=at)


def docker(line: str, at: datetime) -> str:
    """What ``docker logs --timestamps`` prints: RFC 3339 nanoseconds in UTC, then the line."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    return f"{stamp} {line}"


class TestParseSimulatorConstants:
    """Every event the simulator prints (from ibclog) parses to the right event."""

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            (
                ibclog.starting_session(timeout_seconds=60),
                authlog.SessionStarting(at=AT, dialog_timeout_seconds=60, restarting=False),
            ),
            (
                ibclog.RESTARTING_SESSION,
                authlog.SessionStarting(at=AT, dialog_timeout_seconds=None, restarting=True),
            ),
            (ibclog.login_attempt(2), authlog.LoginAttempt(at=AT, number=2)),
            (ibclog.SECOND_FACTOR_INITIATED, authlog.TwoFactorInitiated(at=AT)),
            (ibclog.LOGIN_FRAME_BECAME_2FA, authlog.TwoFactorInitiated(at=AT)),
            (ibclog.CLOSING_AFTER_2FA, authlog.TwoFactorTimedOut(at=AT)),
            (ibclog.CLOSING_AFTER_2FA_OLD, authlog.TwoFactorTimedOut(at=AT)),
            (ibclog.RELOGIN_AFTER_2FA_TIMEOUT, authlog.TwoFactorReloginScheduled(at=AT)),
            (ibclog.LOGIN_COMPLETED, authlog.LoggedIn(at=AT, configured=False)),
            (ibclog.CONFIGURATION_TASKS_COMPLETED, authlog.LoggedIn(at=AT, configured=True)),
            (
                ibclog.EXISTING_SESSION_MANUAL,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.USER_MUST_CHOOSE
                ),
            ),
            (
                ibclog.EXISTING_SESSION_SECONDARY,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.THIS_SESSION_ENDS
                ),
            ),
            (
                ibclog.EXISTING_SESSION_OTHER_IS_PRIMARY,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.THIS_SESSION_ENDS
                ),
            ),
            (
                ibclog.EXISTING_SESSION_PRIMARYOVERRIDE_YIELDS,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.THIS_SESSION_ENDS
                ),
            ),
            (
                ibclog.EXISTING_SESSION_CONTINUE_UNKNOWN,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.THIS_SESSION_CONTINUES
                ),
            ),
            (
                ibclog.EXISTING_SESSION_PRIMARY_KEEPS,
                authlog.ExistingSessionDetected(
                    at=AT, outcome=ExistingSessionOutcome.THIS_SESSION_CONTINUES
                ),
            ),
            (
                ibclog.TRADING_LOGIN_HANDOFF,
                authlog.ExistingSessionDetected(at=AT, outcome=ExistingSessionOutcome.DETECTED),
            ),
            (
                ibclog.detected_dialog(ibclog.DIALOG_EXISTING_SESSION),
                authlog.ExistingSessionDetected(at=AT, outcome=ExistingSessionOutcome.DETECTED),
            ),
            (
                ibclog.detected_dialog(ibclog.DIALOG_RELOGIN_REQUIRED),
                authlog.ReloginRequired(at=AT),
            ),
            (ibclog.LOGIN_FAILED, authlog.LoginFailed(at=AT, message=None)),
            (
                ibclog.too_many_failed_attempts(minutes=4, seconds=47),
                authlog.TooManyFailedAttempts(at=AT, wait_seconds=287),
            ),
            (
                ibclog.too_many_failed_attempts(minutes=0, seconds=53),
                authlog.TooManyFailedAttempts(at=AT, wait_seconds=53),
            ),
            (ibclog.COLD_RESTART_IN_PROGRESS, authlog.ColdRestart(at=AT)),
            (
                ibclog.will_relogin_at(
                    AT.replace(tzinfo=None) + timedelta(minutes=5), login_number=3
                ),
                authlog.WillReloginAt(at=AT, when=AT + timedelta(minutes=5), login_number=3),
            ),
            (
                ibclog.exiting_with_code(1111),
                authlog.IbcExiting(
                    at=AT, code=1111, ibc_exit=IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT
                ),
            ),
            (
                "Login has completed: exiting via [File, Close] menu",
                authlog.Stopping(at=AT, was_logged_in=True),
            ),
            (ibclog.LOGIN_NOT_COMPLETED_EXITING, authlog.Stopping(at=AT, was_logged_in=False)),
        ],
    )
    def test_ibc_line(self, message: str, expected: authlog.AuthEvent) -> None:
        assert authlog.parse_line(ibc(message)) == expected

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            (
                ibclog.autorestart_found("/home/ibgateway/Jts/abcdef/autorestart"),
                authlog.AutorestartFound(at=None, path="/home/ibgateway/Jts/abcdef/autorestart"),
            ),
            (ibclog.AUTORESTART_NOT_FOUND, authlog.AutorestartNotFound(at=None)),
            (
                ibclog.exit_status(1111),
                authlog.ExitStatus(
                    at=None, status=87, ibc_exit=IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT
                ),
            ),
            (
                ibclog.exit_status(1112),
                authlog.ExitStatus(
                    at=None, status=88, ibc_exit=IbcExit.LOGIN_DIALOG_DISPLAY_TIMED_OUT
                ),
            ),
            (ibclog.exit_status(137), authlog.ExitStatus(at=None, status=137, ibc_exit=None)),
            (ibclog.RESTART_SHORTLY, authlog.RestartShortly(at=None, cold=False)),
            (ibclog.COLD_RESTART_SHORTLY, authlog.RestartShortly(at=None, cold=True)),
        ],
    )
    def test_start_script_line(self, line: str, expected: authlog.AuthEvent) -> None:
        assert authlog.parse_line(line) == expected

    def test_format_line_matches_ibc_layout(self) -> None:
        assert ibc("Login attempt: 1") == "2024-06-12 15:00:01:250 IBC: Login attempt: 1"


class TestRealLines:
    """Lines as IBC and its users' logs print them, copied by hand, odd capitalisation included."""

    @pytest.mark.parametrize(
        ("line", "kind"),
        [
            ("2025-03-20 22:31:40:847 IBC: Login attempt: 1", authlog.LoginAttempt),
            (
                "ib-gateway-1  | 2025-03-20 22:31:43:459 IBC: "
                "Second Factor Authentication initiated",
                authlog.TwoFactorInitiated,
            ),
            (
                "2023-04-14 02:21:14:198 IBC: Detected dialog entitled: Existing session detected;"
                " event=Opened",
                authlog.ExistingSessionDetected,
            ),
            ("2023-04-14 02:25:00:001 IBC: LOGIN HAS COMPLETED", authlog.LoggedIn),
            ("2023-04-14 02:25:00:001 IBC: login has completed", authlog.LoggedIn),
            ("2017-01-09 06:45:01:001 IBController: Login has completed", authlog.LoggedIn),
            (
                "2024-01-05 09:00:00:000 IBC: IBC closing because login has not completed after"
                " Second Factor Authentication",
                authlog.TwoFactorTimedOut,
            ),
            (
                "2024-01-05 09:00:00:000 IBC: Too many failed login attempts. Please wait 53"
                " seconds before attempting to re-login again.",
                authlog.TooManyFailedAttempts,
            ),
            ("IBC returned exit status 87", authlog.ExitStatus),
            (
                "Autorestart file not found: full authentication will be required",
                authlog.AutorestartNotFound,
            ),
            (
                "2024-06-12T15:00:01.250123456Z 2024-06-12 17:00:01:250 IBC: Login has completed",
                authlog.LoggedIn,
            ),
        ],
    )
    def test_real_line(self, line: str, kind: type) -> None:
        assert isinstance(authlog.parse_line(line), kind)

    @pytest.mark.parametrize(
        "line",
        [
            "2025-03-20 22:31:40:757 IBC: detected frame entitled: IBKR Gateway; event=Activated",
            "2025-03-20 22:31:40:847 IBC: Setting password",
            "2025-03-20 22:31:40:764 IBC: Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT",
            "2024-01-05 09:00:00:000 IBC: Login has already completed - no need for IBC to exit",
            "2024-01-05 09:00:00:000 IBC: CommandServer started and is ready to accept commands",
            "Finding autorestart file",
            "",
            "   ",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ],
    )
    def test_lines_without_auth_meaning_give_none(self, line: str) -> None:
        assert authlog.parse_line(line) is None

    def test_login_error_message_on_the_same_line(self) -> None:
        event = authlog.parse_line(ibc("Login error message: Invalid username or password"))
        assert event == authlog.LoginFailed(at=AT, message="Invalid username or password")


class TestTimestamps:
    def test_ibc_wall_time_is_read_in_the_gateway_zone(self) -> None:
        zurich = ZoneInfo("Europe/Zurich")
        event = authlog.parse_line("2024-06-12 17:00:01:250 IBC: Login has completed", tz=zurich)
        assert event is not None and event.at == AT  # 17:00 CEST is 15:00 UTC

    def test_docker_stamp_wins_over_ibc_stamp(self) -> None:
        docker_at = datetime(2024, 6, 12, 15, 0, 2, 500000, tzinfo=UTC)
        event = authlog.parse_line(docker(ibc(ibclog.LOGIN_COMPLETED), docker_at))
        assert event is not None and event.at == docker_at

    def test_docker_stamp_dates_a_start_script_line(self) -> None:
        event = authlog.parse_line(docker(ibclog.RESTART_SHORTLY, AT))
        assert event == authlog.RestartShortly(at=AT, cold=False)

    def test_bad_date_in_prefix_gives_an_undated_event(self) -> None:
        event = authlog.parse_line("2024-13-45 99:99:99:999 IBC: Login has completed")
        assert event == authlog.LoggedIn(at=None, configured=False)


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    authlog.parse_line(text)


@settings(max_examples=200)
@given(
    st.sampled_from(
        [
            ibclog.LOGIN_COMPLETED,
            ibclog.SECOND_FACTOR_INITIATED,
            ibclog.login_attempt(7),
            ibclog.CLOSING_AFTER_2FA,
        ]
    ),
    st.text(max_size=40),
)
def test_prefixed_real_messages_with_junk_never_raise(message: str, junk: str) -> None:
    authlog.parse_line(ibc(message) + junk)
    authlog.parse_line(junk + ibc(message))
    follower = AuthLogFollower(started_at=AT)
    follower.feed(junk)
    follower.feed(ibc(message) + junk)


@given(st.lists(st.text(max_size=120), max_size=30))
def test_follower_never_raises(lines: list[str]) -> None:
    follower = AuthLogFollower(started_at=AT)
    for line in lines:
        follower.feed(line)
    follower.flush()


class TestFollower:
    START = datetime(2024, 6, 12, 15, 0, 0, tzinfo=UTC)

    def at(self, seconds: float) -> datetime:
        return self.START + timedelta(seconds=seconds)

    def test_stale_login_completed_before_restart_never_counts(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        assert follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(-30))) == []
        assert not follower.logged_in
        assert follower.phase is LoginPhase.UNKNOWN
        assert follower.events == []

    def test_full_2fa_login_story(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        lines = [
            ibc(ibclog.starting_session(timeout_seconds=60), self.at(1)),
            ibc(ibclog.login_attempt(1), self.at(2)),
            ibc(ibclog.SECOND_FACTOR_INITIATED, self.at(3)),
        ]
        for line in lines:
            follower.feed(line)
        assert follower.awaiting_2fa
        assert follower.login_attempts == 1
        follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(40)))
        assert follower.logged_in
        assert follower.phase is LoginPhase.LOGGED_IN
        assert len(follower.events) == 4

    def test_2fa_timeout_then_exit_status(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.SECOND_FACTOR_INITIATED, self.at(1)))
        follower.feed(ibc(ibclog.CLOSING_AFTER_2FA, self.at(240)))
        assert follower.phase is LoginPhase.FAILED
        assert follower.last_failure == "second factor authentication timed out"
        follower.feed(docker(ibclog.exit_status(1111), self.at(241)))
        assert follower.phase is LoginPhase.EXITED
        assert follower.last_exit_status == 87

    def test_reset_forgets_the_previous_run(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(5)))
        assert follower.logged_in
        restart = self.at(100)
        follower.reset(started_at=restart)
        assert not follower.logged_in and follower.events == []
        # The old run's lines replayed by a log read from the beginning are ignored.
        follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(5)))
        assert not follower.logged_in
        follower.feed(ibc(ibclog.login_attempt(1), self.at(101)))
        assert follower.phase is LoginPhase.LOGGING_IN

    def test_undated_lines_take_freshness_from_the_next_dated_line(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        # Script lines of an older run, then that run's stale IBC line: all dropped.
        assert follower.feed(ibclog.autorestart_found("/x/autorestart")) == []
        assert follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(-60))) == []
        assert follower.autorestart_found is None
        # The current run's script line is held until a fresh IBC line vouches for it.
        assert follower.feed(ibclog.AUTORESTART_NOT_FOUND) == []
        released = follower.feed(ibc(ibclog.login_attempt(1), self.at(2)))
        assert [type(e) for e in released] == [authlog.AutorestartNotFound, authlog.LoginAttempt]
        assert follower.autorestart_found is False
        # After a fresh dated line, undated lines pass at once.
        assert follower.feed(ibclog.RESTART_SHORTLY) == [
            authlog.RestartShortly(at=None, cold=False)
        ]

    def test_login_error_message_detail_on_next_line(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        assert follower.feed(ibc(ibclog.LOGIN_ERROR_MESSAGE, self.at(1))) == []
        [event] = follower.feed("Invalid username or password.")
        assert event == authlog.LoginFailed(at=self.at(1), message="Invalid username or password.")
        assert follower.phase is LoginPhase.FAILED
        assert follower.last_failure == "Invalid username or password."

    def test_login_error_message_without_detail_is_reported_by_the_next_ibc_line(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.LOGIN_ERROR_MESSAGE, self.at(1)))
        events = follower.feed(ibc(ibclog.COLD_RESTART_IN_PROGRESS, self.at(2)))
        assert [type(e) for e in events] == [authlog.LoginFailed, authlog.ColdRestart]
        assert follower.phase is LoginPhase.STOPPING

    def test_flush_reports_a_pending_error(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.LOGIN_ERROR_MESSAGE, self.at(1)))
        assert follower.flush() == [authlog.LoginFailed(at=self.at(1), message=None)]
        assert follower.flush() == []

    def test_lockout_phase(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.too_many_failed_attempts(minutes=1, seconds=5), self.at(1)))
        assert follower.phase is LoginPhase.LOCKED_OUT

    def test_existing_session_that_ends_this_one_is_a_failure(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.detected_dialog(ibclog.DIALOG_EXISTING_SESSION), self.at(1)))
        assert follower.phase is LoginPhase.EXISTING_SESSION
        follower.feed(ibc(ibclog.EXISTING_SESSION_SECONDARY, self.at(2)))
        assert follower.phase is LoginPhase.FAILED

    def test_displaced_session_leaves_logged_in(self) -> None:
        follower = AuthLogFollower(started_at=self.START)
        follower.feed(ibc(ibclog.LOGIN_COMPLETED, self.at(1)))
        follower.feed(ibc(ibclog.detected_dialog(ibclog.DIALOG_RELOGIN_REQUIRED), self.at(500)))
        assert not follower.logged_in
        assert follower.phase is LoginPhase.EXISTING_SESSION

    def test_line_a_millisecond_before_start_is_within_tolerance(self) -> None:
        start = datetime(2024, 6, 12, 15, 0, 0, 250999, tzinfo=UTC)
        follower = AuthLogFollower(started_at=start)
        # IBC truncates to milliseconds: 15:00:00:250 is the same moment as the start.
        follower.feed("2024-06-12 15:00:00:250 IBC: Login attempt: 1")
        assert follower.login_attempts == 1

    def test_naive_start_time_is_refused_with_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match="started_at"):
            AuthLogFollower(started_at=datetime(2024, 1, 1))


# --- IBC's relaunch sequences inside one container start -----------------------------------
#
# Each sequence is what IBC 3.24.1 prints, in order: the JVM's lines (``IBC: ...``, Utils.java)
# and ibcstart.sh's plain echoes, as ``docker logs --timestamps`` shows them. Strings come from
# ibsim.ibclog where it has them, else verbatim from IBC's source file named beside them.

# RestartTask.restart ("hh:mm a"), and ibcstart.sh's echoes after the token was found.
_SETTING_AUTO_RESTART = "Setting auto-restart time to 10:33 AM"  # RestartTask.java
_RESTART_VERB = "RestartTask: verb = RESTART"  # RestartTask.java
_AUTORESTART_OPTION = "AUTORESTART_OPTION is -Drestart=ntbalfmmgbjblhkdeedgnjkmmdnjfjgbhpabhcea"
_EXITING_VIA_CLOSE = "Login has completed: exiting via [File, Close] menu"  # StopTask.java
_COLD_SCHEDULED = "Gateway will be cold restarted at 2026/03/08 07:05"  # IbcTws.java
_NO_LOGIN_DIALOG = "IBC closing after TWS/Gateway failed to display login dialog"  # SessionMgr
_GATEWAY_FINISHED = "Gateway finished"  # ibcstart.sh: echo "$program finished"
_TOKEN = "/home/ibgateway/Jts/ntbalfmmgbjblhkdeedgnjkmmdnjfjgbhpabhcea/autorestart"

DAILY = [
    ibc(ibclog.LOGIN_COMPLETED),
    ibclog.exit_status(0),
    ibclog.FINDING_AUTORESTART,
    ibclog.autorestart_found(_TOKEN),
    _AUTORESTART_OPTION,
    ibclog.RESTART_SHORTLY,
    ibc(ibclog.RESTARTING_SESSION),
    ibc(ibclog.LOGIN_COMPLETED),
]
RESTART_COMMAND = [
    ibc(ibclog.LOGIN_COMPLETED),
    ibc(_RESTART_VERB),
    ibc(_SETTING_AUTO_RESTART),
    *DAILY[1:],
]
WEEKLY_COLD = [
    ibc(ibclog.LOGIN_COMPLETED),
    ibc(_COLD_SCHEDULED),
    ibc(_EXITING_VIA_CLOSE),
    ibclog.exit_status(0),
    ibclog.COLD_RESTART_SHORTLY,
    ibclog.RESTART_SHORTLY,
    ibc(ibclog.starting_session(timeout_seconds=60)),
    ibc(ibclog.login_attempt(1)),
    ibc(ibclog.LOGIN_COMPLETED),
]
LOGIN_FAILED_COLD = [
    ibc(ibclog.starting_session(timeout_seconds=60)),
    ibc(ibclog.login_attempt(1)),
    ibc(ibclog.LOGIN_FAILED),
    ibc(ibclog.COLD_RESTART_IN_PROGRESS),
    ibc(ibclog.LOGIN_NOT_COMPLETED_EXITING),
    ibclog.exit_status(0),
    ibclog.COLD_RESTART_SHORTLY,
    ibclog.RESTART_SHORTLY,
    ibc(ibclog.starting_session(timeout_seconds=60)),
    ibc(ibclog.login_attempt(1)),
]
NO_LOGIN_DIALOG = [
    ibc(ibclog.starting_session(timeout_seconds=60)),
    "!" * 79,
    ibc(_NO_LOGIN_DIALOG),
    "!" * 79,
    ibc(ibclog.exiting_with_code(1112)),
    ibclog.exit_status(1112),
    ibclog.RESTART_SHORTLY,
    ibc(ibclog.starting_session(timeout_seconds=60)),
]
TWOFA_EXIT_RELAUNCHED = [
    ibc(ibclog.starting_session(timeout_seconds=60)),
    ibc(ibclog.login_attempt(1)),
    ibc(ibclog.SECOND_FACTOR_INITIATED),
    ibc(ibclog.exit_if_not_completed(seconds=60)),
    ibc(ibclog.CLOSING_AFTER_2FA),
    ibc(ibclog.exiting_with_code(1111)),
    ibclog.exit_status(1111),
    ibclog.FINDING_AUTORESTART,
    ibclog.AUTORESTART_NOT_FOUND,
    ibclog.RESTART_SHORTLY,
    ibc(ibclog.starting_session(timeout_seconds=60)),
    ibc(ibclog.login_attempt(1)),
]
TWOFA_EXIT_ENDS = [*TWOFA_EXIT_RELAUNCHED[:9], _GATEWAY_FINISHED]


def _follow(lines: list[str]) -> AuthLogFollower:
    follower = AuthLogFollower(started_at=AT - timedelta(seconds=5))
    for i, line in enumerate(lines):
        follower.feed(docker(line, AT + timedelta(seconds=i)))
    return follower


class TestRelaunches:
    @pytest.mark.parametrize(
        ("lines", "kind"),
        [
            (DAILY, authlog.RelaunchKind.AUTO_RESTART),
            (RESTART_COMMAND, authlog.RelaunchKind.RESTART_COMMAND),
            (WEEKLY_COLD, authlog.RelaunchKind.WEEKLY_COLD),
            (LOGIN_FAILED_COLD, authlog.RelaunchKind.COLD_AFTER_FAILURE),
            (NO_LOGIN_DIALOG, authlog.RelaunchKind.NO_LOGIN_DIALOG),
            (TWOFA_EXIT_RELAUNCHED, authlog.RelaunchKind.TWOFA_EXIT),
        ],
        ids=["daily", "restart", "weekly-cold", "login-failed", "88", "87"],
    )
    def test_each_relaunch_is_named_by_its_lines(
        self, lines: list[str], kind: authlog.RelaunchKind
    ) -> None:
        follower = _follow(lines)
        assert [r.kind for r in follower.relaunches] == [kind]

    def test_planned_and_token_relaunches(self) -> None:
        K = authlog.RelaunchKind
        assert {k for k in K if k.planned} == {K.AUTO_RESTART, K.RESTART_COMMAND, K.WEEKLY_COLD}
        assert {k for k in K if k.token} == {K.AUTO_RESTART, K.RESTART_COMMAND}

    def test_the_relaunch_comes_after_the_lines_that_explain_it(self) -> None:
        follower = AuthLogFollower(started_at=AT - timedelta(seconds=5))
        out: list[authlog.AuthEvent] = []
        for i, line in enumerate(DAILY):
            out.extend(follower.feed(docker(line, AT + timedelta(seconds=i))))
        kinds = [type(e).__name__ for e in out]
        assert kinds.index("ExitStatus") < kinds.index("Relaunch") < kinds.index("SessionStarting")

    def test_a_loop_that_ends_is_no_relaunch(self) -> None:
        follower = _follow(TWOFA_EXIT_ENDS)
        assert follower.relaunches == []
        assert isinstance(follower.events[-1], authlog.LoopEnded)

    def test_the_first_token_search_at_the_containers_start_is_no_relaunch(self) -> None:
        follower = _follow(
            [
                ibclog.FINDING_AUTORESTART,
                ibclog.AUTORESTART_NOT_FOUND,
                ibc(ibclog.starting_session(timeout_seconds=60)),
            ]
        )
        assert follower.relaunches == []

    def test_a_relaunch_without_the_restart_shortly_line_is_closed_by_the_next_session(
        self,
    ) -> None:
        lines = [line for line in DAILY if line != ibclog.RESTART_SHORTLY]
        assert [r.kind for r in _follow(lines).relaunches] == [authlog.RelaunchKind.AUTO_RESTART]

    def test_an_exit_no_line_explains_is_unexplained(self) -> None:
        follower = _follow(
            [
                ibc(ibclog.LOGIN_COMPLETED),
                ibclog.exit_status(1),
                ibclog.COLD_RESTART_SHORTLY,
                ibclog.RESTART_SHORTLY,
            ]
        )
        assert [r.kind for r in follower.relaunches] == [authlog.RelaunchKind.UNEXPLAINED]

    def test_two_factor_lines_say_approved_and_not_answered(self) -> None:
        approved = authlog.parse_line(ibc(ibclog.exit_if_not_completed(seconds=60)))
        assert approved == authlog.TwoFactorApproved(at=AT, exit_in_seconds=60)
        waiting = authlog.parse_line(ibc(ibclog.RELOGIN_AFTER_2FA_NOT_REQUIRED))
        assert waiting == authlog.TwoFactorExpired(at=AT)
        scheduled = authlog.parse_line(ibc(_SETTING_AUTO_RESTART))
        assert isinstance(scheduled, authlog.RestartScheduled)
        assert scheduled.when is not None and (scheduled.when.hour, scheduled.when.minute) == (
            10,
            33,
        )

    def test_hostile_relaunch_text_is_bounded(self) -> None:
        # A flood of script lines never grows the follower without bound.
        follower = AuthLogFollower(started_at=AT - timedelta(seconds=5))
        for i in range(3000):
            follower.feed(docker(ibclog.exit_status(0), AT + timedelta(milliseconds=i)))
            follower.feed(docker(ibclog.RESTART_SHORTLY, AT + timedelta(milliseconds=i)))
        assert len(follower.events) <= 1000 and len(follower.relaunches) <= 1000


# -- untrusted text ---------------------------------------------------------------------------

FORGED = (
    "\x1b[31mApprove now\x1b[0m <!channel> <https://evil.example|IB Key> [tap](https://evil.example)"
    " @everyone\r\tend\u202e\u200b" + "x" * 5000
)


def _assert_inert(text: str, limit: int) -> None:
    assert len(text) <= limit
    assert not any(ord(c) < 32 or c in "\u202e\u200b\x7f" for c in text), repr(text)
    for live in ("<", ">", "](", "@everyone", "\x1b"):
        assert live not in text


def test_a_forged_dialog_line_is_passed_on_inert_and_capped() -> None:
    follower = AuthLogFollower(started_at=AT - timedelta(seconds=5))
    events = follower.feed(ibc("Login error message:"))
    events += follower.feed(FORGED)
    (failed,) = [e for e in events if isinstance(e, authlog.LoginFailed)]
    assert failed.message is not None
    _assert_inert(failed.message, 500)
    assert failed.message.startswith("Approve now \u2039!channel\u203a \u2039https://evil.example|")


def test_a_forged_inline_login_error_is_inert_too() -> None:
    event = authlog.parse_line(ibc("Login error message: " + FORGED))
    assert isinstance(event, authlog.LoginFailed) and event.message is not None
    _assert_inert(event.message, 500)


def test_a_forged_farm_name_is_short_and_plain() -> None:
    notice = codes.farm_of(2103, "Market data farm connection is broken:<!here>\x1b[2J" + "f" * 99)
    assert notice is not None
    _assert_inert(notice.name, 64)


def test_ib_said_quotes_and_inert_keeps_plain_text_alone() -> None:
    plain = "Unrecognized Username or Password."
    assert codes.inert(plain) == plain
    assert codes.ib_said('say "hi"') == "IB said: \"say 'hi'\""
    assert codes.defuse("line one\nline two") == "line one\nline two"
    with pytest.raises(ValueError, match="limit"):
        codes.inert("x", limit=0)


@settings(max_examples=200)
@given(st.text(max_size=400))
def test_inert_text_never_carries_controls_or_markup(text: str) -> None:
    _assert_inert(codes.inert(text, limit=120), 120)
