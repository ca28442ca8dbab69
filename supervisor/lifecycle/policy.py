"""Deadlines, budgets and who owns the 2FA-timeout restart: the machine's parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from gateway.config import TwoFactorTimeoutAction
from supervisor.budget import BackoffPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecyclePolicy:
    """Deadlines and budgets; the wiring maps settings onto this."""

    heartbeat_deadline: timedelta = timedelta(seconds=30)
    slow_heartbeat: timedelta = timedelta(seconds=5)
    twofa_timeout: timedelta = timedelta(seconds=180)  # IB's own limit for IB Key
    login_timeout: timedelta = timedelta(minutes=5)
    ready_grace_after_window: timedelta = timedelta(minutes=10)
    stall_soft_restart_after: timedelta = timedelta(minutes=2)
    # A stall (missed heartbeats, a dropped API socket) gates orders at once but pages only
    # when it lasts this long: one slow second on a busy host is not worth waking anyone.
    stall_page_after: timedelta = timedelta(seconds=5)
    restart_deadline: timedelta = timedelta(minutes=3)
    restart_budget: int = 5
    restart_window: timedelta = timedelta(hours=1)
    login_budget: int = 6
    login_window: timedelta = timedelta(hours=1)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    # Who restarts after a 2FA timeout, exactly one mechanism (IBC's user guide): RESTART, IBC
    # does (relogin on, --on2fatimeout=restart) and the machine only waits and counts logins;
    # EXIT, the supervisor does, after a backoff or, with ``twofa_retry_at_once``, at once
    # (within the budgets).
    twofa_timeout_action: TwoFactorTimeoutAction = TwoFactorTimeoutAction.EXIT
    twofa_retry_at_once: bool = False
    # A token relaunch (daily auto-restart, RESTART): from the API drop to a probe answer.
    token_relaunch_bound: timedelta = timedelta(minutes=3)
    # RESTART restarts at the next minute (RestartTask.java): up to ~60 s, plus the shutdown.
    restart_command_delay: timedelta = timedelta(seconds=75)
    # A cold relaunch (weekly ColdRestartTime): a full login, on live a 2FA prompt too.
    cold_relaunch_bound: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        for name in (
            "token_relaunch_bound",
            "restart_command_delay",
            "cold_relaunch_bound",
            "heartbeat_deadline",
            "twofa_timeout",
            "login_timeout",
            "stall_soft_restart_after",
            "restart_deadline",
            "restart_window",
            "login_window",
        ):
            value = getattr(self, name)
            if value <= timedelta(0):
                raise ValueError(f"lifecycle policy {name} must be positive, got {value}")
        if self.restart_budget < 1 or self.login_budget < 1:
            raise ValueError(
                "lifecycle policy restart_budget and login_budget must be >= 1, got "
                f"{self.restart_budget} and {self.login_budget}"
            )
