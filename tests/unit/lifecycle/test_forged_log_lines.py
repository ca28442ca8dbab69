"""Forged IBC log lines never end a session the probe sees healthy (issue 11, item 2).

Anything in the container can print to stdout, so ``Login attempt``, ``Login error``, a 2FA
prompt, ``Existing session detected`` or a lockout line on their own are only suspect: the
gateway stays API_READY with its gate open and its login budget untouched. The probe losing the
API within the heartbeat deadline confirms the line (it is then replayed); a probe that keeps
answering makes it stale.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from gateway import authlog
from supervisor import lifecycle as lc
from supervisor.lifecycle_inputs import from_auth_event
from tests.unit.lifecycle.driver import POLICY, USER, Driver, alerts, of_type

OK = lc.HeartbeatOk(rtt=timedelta(milliseconds=5))
STAMP = "2026-03-02 12:00:00:000"

# What a process in the container prints to pass for IBC (the follower reads stdout).
FORGED_LINES = {
    "login attempt": f"{STAMP} IBC: Login attempt: 1",
    "login error": f"{STAMP} IBC: Login error message: Invalid username or password",
    "2fa prompt": f"{STAMP} IBC: Second Factor Authentication initiated",
    "existing session": (
        f"{STAMP} IBC: Detected dialog entitled: Existing session detected; event=Opened"
    ),
    "lockout": (
        f"{STAMP} IBC: Too many failed login attempts. Please wait 53 seconds before "
        "attempting to re-login again."
    ),
}


def _events_of(line: str) -> list[lc.Event]:
    """The line through the real follower and the supervisor's mapping, as the service does."""
    follower = authlog.AuthLogFollower(started_at=Driver().now - timedelta(minutes=5))
    follower.feed(line)
    follower.feed(f"{STAMP} IBC: nothing more")  # a line after flushes one held for detail
    mapped = (from_auth_event(e) for e in follower.events)
    return [e for e in mapped if e is not None]


@pytest.mark.parametrize("line", list(FORGED_LINES.values()), ids=list(FORGED_LINES))
def test_a_forged_line_leaves_a_healthy_api_ready_gateway_ready(ready: Driver, line: str) -> None:
    events = _events_of(line)
    assert events, f"the follower should read {line!r} as a login event"
    gate_before = (ready.status.gate_open, ready.status.gate_kind)
    effects = ready.send(*events)
    assert ready.state is lc.State.API_READY
    assert effects == []  # no safe state, no gate change, no page, no login counted
    assert (ready.status.gate_open, ready.status.gate_kind) == gate_before
    assert ready.status.login_attempts == (ready.status.login_attempts[0],)


def test_a_flood_of_forged_login_lines_spends_no_login_budget(ready: Driver) -> None:
    for _ in range(POLICY.login_budget * 3):
        ready.advance(seconds=1)
        ready.send(lc.LoginAttempt(1), lc.LoginFailed("bad"), OK)
    assert ready.state is lc.State.API_READY
    assert len(ready.status.login_attempts) == 1  # the real login only
    assert not of_type(ready.effects[-100:], lc.StopContainer)


def test_a_forged_line_goes_stale_while_the_probe_keeps_answering(ready: Driver) -> None:
    ready.send(lc.TwoFactorInitiated())
    for _ in range(4):
        ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds() / 2)
        ready.send(OK, lc.Tick())
    assert ready.status.suspect is None
    # A drop long after is read as what it is (a stall), not as the old 2FA line.
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    assert not alerts(effects)


def test_the_probes_loss_confirms_a_held_2fa_prompt(ready: Driver) -> None:
    ready.send(lc.TwoFactorInitiated())
    ready.advance(seconds=2)
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.AWAITING_2FA
    assert [a.key for a in alerts(effects)] == [lc.alert_key("paper-a", "2fa")]
    assert of_type(effects, lc.TriggerSafeState)


def test_an_overdue_heartbeat_confirms_a_held_login_line(ready: Driver) -> None:
    ready.send(lc.LoginAttempt(1))
    ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds() - 1)
    assert ready.send(lc.Tick()) == []
    ready.advance(seconds=2)  # the probe's answer is now overdue, the line not yet stale
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.LOGGING_IN
    assert lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT) in effects


def test_a_held_lockout_is_fatal_only_after_the_probe_loses_the_api(ready: Driver) -> None:
    ready.send(lc.LockedOut("too many failed login attempts"))
    assert ready.state is lc.State.API_READY
    effects = ready.send(lc.HeartbeatMissed())
    assert ready.state is lc.State.FATAL
    assert lc.StopContainer() in effects


def test_log_lines_act_at_once_when_the_probe_does_not_see_the_session(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected())
    ready.send(lc.LoginAttempt(1))
    assert ready.state is lc.State.LOGGING_IN


def test_a_held_line_survives_the_journal(ready: Driver) -> None:
    ready.send(lc.LockedOut("too many"))
    again = lc.GatewayStatus.from_record(ready.status.to_record())
    assert again == ready.status
    assert again.suspect == "LockedOut" and again.suspect_detail == "too many"


def test_a_record_from_an_older_supervisor_loads_without_the_new_fields(ready: Driver) -> None:
    record = ready.status.to_record()
    for name in ("suspect", "suspect_detail", "suspect_until"):
        record.pop(name)
    record["restart_planned"] = True  # a field since removed is ignored
    assert lc.GatewayStatus.from_record(record) == ready.status


def test_the_follower_reads_timestamps_in_utc_for_these_lines() -> None:
    # Guard for the fixture above: the forged lines are fresh for a follower started before.
    assert _events_of(FORGED_LINES["login attempt"]) == [lc.LoginAttempt(1)]
    assert Driver().now.tzinfo is UTC
