"""A gateway's lifecycle states and their named groups (the table's rows).

The groups are what the transition table speaks in: a handler names the groups it acts in, so a
reader sees at a glance which states an event matters to.
"""

from __future__ import annotations

import enum

__all__ = [
    "ALL_STATES",
    "LOGIN_STATES",
    "OPERATOR_STATES",
    "PAGEABLE_STATES",
    "PLANNED_OUTAGE_STATES",
    "READY_STATES",
    "RUNNING_STATES",
    "SESSION_STATES",
    "RestartKind",
    "State",
]


class State(enum.Enum):
    """Where one gateway is in its life."""

    ABSENT = "absent"  # no container known yet
    CREATING = "creating"  # create/start requested, container not started yet
    STARTING = "starting"  # container runs, IBC has not tried to log in yet
    LOGGING_IN = "logging_in"  # login in progress, or logged in and waiting for a probe answer
    AWAITING_2FA = "awaiting_2fa"  # IB pushed an IB Key notification; a human must approve
    COMPETING_SESSION = "competing_session"  # another session holds this username
    API_READY = "api_ready"  # logged in and the API answered a probe within the deadline
    DEGRADED = "degraded"  # session up but link lost, farm broken, permissions off, or stalled
    RESET_WINDOW = "reset_window"  # degraded inside an IB reset window: expected, pages nobody
    RESTARTING = "restarting"  # a restart (soft, hard, or IBC's own) is in progress
    BACKOFF = "backoff"  # container stopped after a failed login; waiting before retrying
    STOPPED = "stopped"  # stopped by an operator
    FATAL = "fatal"  # a budget is spent or the account is wrong: a human must act


ALL_STATES = frozenset(State)
READY_STATES = frozenset({State.API_READY})
# The IB session is up (logged in, API was answering) even if something is wrong with it.
SESSION_STATES = frozenset({State.API_READY, State.DEGRADED, State.RESET_WINDOW})
LOGIN_STATES = frozenset({State.LOGGING_IN, State.AWAITING_2FA, State.COMPETING_SESSION})
# The container is expected to be running.
RUNNING_STATES = frozenset({State.STARTING}) | LOGIN_STATES | SESSION_STATES
# Only an operator command leaves these.
OPERATOR_STATES = frozenset({State.STOPPED, State.FATAL})
# An outage in these states pages a human (RESET_WINDOW is an expected outage).
PAGEABLE_STATES = ALL_STATES - {State.ABSENT, State.STOPPED, State.RESET_WINDOW}
# Where an outage can still be the planned relaunch that began it (the Gateway logging back in).
PLANNED_OUTAGE_STATES = frozenset({State.RESTARTING, State.STARTING}) | LOGIN_STATES


class RestartKind(enum.Enum):
    """How the current restart was started, which decides how to escalate it."""

    SOFT = "soft"  # IBC command server RESTART: keeps the autorestart token
    HARD = "hard"  # container restart: forces a full login
    START = "start"  # container (re)created or started after a stop
    EXTERNAL = "external"  # IBC or the start script restarts by itself (cold restart, exit)
    # The orchestrator replaces the container with a new spec (a rollout): a full login, and
    # the rollout, not the lifecycle, decides what a death or a removal meanwhile means.
    REPLACE = "replace"
