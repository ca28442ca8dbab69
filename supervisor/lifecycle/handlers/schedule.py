"""Schedule inputs: the daily auto-restart, IB's reset windows, the weekly re-authentication."""

from gateway.authlog import RelaunchKind
from supervisor.lifecycle import alerts
from supervisor.lifecycle.events import (
    DailyRestartExpected,
    ResetWindowEntered,
    ResetWindowLeft,
    WeeklyReauthDue,
)
from supervisor.lifecycle.states import (
    State,
)
from supervisor.lifecycle.step import (
    Step,
    settle,
)


def on_daily_expected(step: Step, _: DailyRestartExpected) -> None:
    # session -> session: the Gateway's AutoRestartTime is now; nothing is sent (IBC
    # restarts it by itself), and the API drop that follows is read as that relaunch.
    step.update(
        relaunch_expected_until=step.now + step.policy.restart_command_delay,
        expected_relaunch=RelaunchKind.AUTO_RESTART,
    )


def on_window_entered(step: Step, event: ResetWindowEntered) -> None:
    step.update(in_window=True, window_ended_at=None, window_until=event.until)
    if step.state is State.DEGRADED:
        # DEGRADED -> RESET_WINDOW when the window explains every reason.
        settle(step)


def on_window_left(step: Step, _: ResetWindowLeft) -> None:
    if not step.status.in_window:
        return
    # The grace clock starts; Tick pages if the gateway is not ready when it runs out.
    step.update(in_window=False, window_ended_at=step.now)


def on_weekly_reauth(step: Step, event: WeeklyReauthDue) -> None:
    # Warn ahead: the first start after Sunday 01:00 ET needs a full IB Key login.
    step.update(reauth_at=event.at)
    step.alert(alerts.reauth_ahead(step.status, event.at))
