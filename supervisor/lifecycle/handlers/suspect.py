"""Log lines held while the probe sees the session healthy, and their replay.

IBC's log is untrusted text: a line alone never ends a session the probe sees answering; it is
held here and replayed only when the probe loses the API within its bound.
"""

from collections.abc import Callable
from datetime import datetime

from supervisor.lifecycle.events import (
    Event,
    ExistingSessionDetected,
    LockedOut,
    LoginAttempt,
    TwoFactorInitiated,
)
from supervisor.lifecycle.policy import LifecyclePolicy
from supervisor.lifecycle.reasons import (
    STALL_REASONS,
)
from supervisor.lifecycle.states import (
    SESSION_STATES,
)
from supervisor.lifecycle.status import GatewayStatus
from supervisor.lifecycle.step import (
    Step,
)


def probe_healthy(status: GatewayStatus, now: datetime, policy: LifecyclePolicy) -> bool:
    """The session is up and the probe's last answer is fresh: the API is demonstrably alive."""
    last = status.last_heartbeat
    return (
        status.state in SESSION_STATES
        and status.api_connected
        and last is not None
        and now - last <= policy.heartbeat_deadline
        and not status.degraded_reasons & STALL_REASONS
    )


# Log events held while the probe sees the session healthy, by name, rebuilt on replay.
SUSPECT_EVENTS: dict[str, Callable[[str], Event]] = {
    "LoginAttempt": lambda _: LoginAttempt(1),
    "TwoFactorInitiated": lambda _: TwoFactorInitiated(),
    "ExistingSessionDetected": lambda _: ExistingSessionDetected(),
    "LockedOut": lambda detail: LockedOut(message=detail),
}


def held_as_suspect(step: Step, event: Event, detail: str = "") -> bool:
    """Hold a log line that would end a session the probe sees healthy; True when held.

    IBC's log is untrusted text: anything in the container (or a forged line) can print
    ``Login attempt`` or a 2FA prompt. Only the probe losing the API confirms it (the line is
    then replayed); until then the session, the gate and the login budget stay as they are.
    """
    if not probe_healthy(step.status, step.now, step.policy):
        return False
    step.update(
        suspect=type(event).__name__,
        suspect_detail=detail,
        # The probe sees a loss within one deadline (a miss, a drop, or an overdue answer at
        # the next Tick after it): twice that bounds the wait for it.
        suspect_until=step.now + 2 * step.policy.heartbeat_deadline,
    )
    return True


def replay_suspect(status: GatewayStatus, now: datetime) -> Event | None:
    """The held log event to replay now that the probe lost the API (None: none, or stale)."""
    until = status.suspect_until
    if status.suspect is None or until is None or now >= until:
        return None
    make = SUSPECT_EVENTS.get(status.suspect)
    return None if make is None else make(status.suspect_detail)
