"""What operators see of a rollout (``ibfleet status``, the API, the status page) and what
``ibfleet apply`` asks of the orchestrator.

The orchestrator owns the rollout (its last plan, the gateway being replaced, a failed
replacement that blocks the rest); this module only reads it into the API's views and turns an
apply request into :meth:`supervisor.orchestrator.Orchestrator.apply`, refusing with a reason
what cannot be applied.
"""

from __future__ import annotations

import datetime as dt

from supervisor.api_views import (
    ApplyRequest,
    ApplyResult,
    PendingChange,
    ReplacementView,
    RolloutView,
)
from supervisor.orchestrator import Orchestrator
from supervisor.rolling import Replacement
from supervisor.rollout import GatewayChange, When

__all__ = ["NotYet", "apply", "pending", "rollout"]

#: How many of the latest replacements the rollout view lists.
_RECENT = 20


class NotYet(RuntimeError):
    """The supervisor has not compared the fleet file with the runtime yet (try again)."""


def _status(orch: Orchestrator, line: GatewayChange) -> str:
    if orch.replacing == line.gateway:
        return "replacing"
    if orch.blocked is not None:
        return "blocked"
    return "waiting" if line.when is When.WINDOW else "due"


def pending(orch: Orchestrator) -> dict[str, PendingChange]:
    """Each gateway's replacement not carried out yet, by gateway (none: the gateway matches)."""
    plan = orch.plan
    if plan is None:
        return {}
    out: dict[str, PendingChange] = {}
    for line in plan.rolling:
        out[line.gateway] = PendingChange(
            gateway=line.gateway,
            change=line.change.value,
            changed=line.changed_parts,
            full_login=line.full_login,
            needs_2fa=line.full_login and line.second_factor,
            when=line.when.value,
            at=line.at,
            canary=line.position == 0,
            status=_status(orch, line),
        )
    return out


def _replacement(result: Replacement) -> ReplacementView:
    return ReplacementView(
        gateway=result.gateway,
        outcome=result.outcome.value,
        detail=result.detail,
        canary=result.canary,
        at=result.at,
        seconds=round(result.seconds, 3),
    )


def rollout(orch: Orchestrator, now: dt.datetime) -> RolloutView:
    plan = orch.plan
    window = plan.window if plan is not None else None
    return RolloutView(
        at=now,
        replacing=orch.replacing,
        blocked=_replacement(orch.blocked) if orch.blocked is not None else None,
        window_start=window.start if window is not None else None,
        window_open=window.open if window is not None else False,
        pending=list(pending(orch).values()),
        replacements=[_replacement(r) for r in orch.replacements[-_RECENT:]],
    )


def apply(orch: Orchestrator, request: ApplyRequest, now: dt.datetime) -> ApplyResult:
    """Carry out the plan: lift a failed canary's block, and send ``request.gateways`` (or, with
    ``now``, every gateway) now even outside the update window.

    Raises :class:`NotYet` before the first reconcile pass and ValueError when there is
    nothing to apply (or a named gateway has no pending change).
    """
    if orch.plan is None:
        raise NotYet("the supervisor has not compared the fleet with the runtime yet: try again")
    waiting = pending(orch)
    blocked = orch.blocked
    idle = [g for g in request.gateways if g not in waiting]
    if idle:
        raise ValueError(
            f"nothing to apply for {', '.join(idle)}: it runs the fleet file's spec "
            "(`ibfleet plan` lists what would change)"
        )
    if not waiting and blocked is None:
        raise ValueError("nothing to apply: every gateway runs the fleet file's spec")
    orch.apply(request.gateways, now=request.now)
    if request.gateways:
        detail = f"replacing {', '.join(request.gateways)} now, one at a time"
    elif request.now:
        detail = f"replacing {len(waiting)} gateway(s) now, one at a time, canary first"
    else:
        later = [c for c in waiting.values() if c.when == When.WINDOW.value]
        detail = f"{len(waiting) - len(later)} replacement(s) due now"
        if later and later[0].at is not None:
            detail += (
                f"; {len(later)} wait for the update window at {later[0].at.isoformat()} "
                "(--now carries them out now)"
            )
    if blocked is not None:
        detail = f"retrying after the failure of {blocked.gateway}; " + detail
    if orch.replacing is not None:
        detail += f" (after the replacement of {orch.replacing} under way)"
    return ApplyResult(
        accepted=True,
        detail=detail,
        unblocked=blocked.gateway if blocked is not None else None,
        rollout=rollout(orch, now),
    )
