"""The reconcile planner: desired container specs vs observed containers -> actions. Pure.

It decides and never acts (the orchestrator does), so every rule is testable with plain values.
The one hard rule: a container without this fleet's ``io.ibfleet.fleet`` label is never touched,
even when its name is the one a gateway of this fleet needs; that is reported as a conflict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.runtime import STARTABLE_STATES, ContainerState, ObservedContainer
from gateway.spec import ContainerSpec

__all__ = ["PREVIOUS_SUFFIX", "Action", "ActionKind", "PlanError", "plan", "previous_name"]

#: A rollout keeps the replaced container, stopped, under its name plus this until the new one
#: is ready, so a failed canary goes back to exactly what ran (image, files and all).
PREVIOUS_SUFFIX = "-previous"


def previous_name(name: str) -> str:
    return name + PREVIOUS_SUFFIX


class PlanError(ValueError):
    """The desired specs are inconsistent; the message names the gateway."""


class ActionKind(enum.Enum):
    REMOVE = "remove"  # an orphan or a duplicate of this fleet: stop and remove it
    RECREATE = "recreate"  # spec drift or a dead container: remove, create, start
    CREATE = "create"  # no container: create and start
    START = "start"  # exists, stopped, should run
    ADOPT = "adopt"  # running and matching: leave untouched
    CONFLICT = "conflict"  # a container this fleet does not own holds the name: never touch it
    WAIT = "wait"  # held (operator stop, backoff) or in transition: nothing now

    @property
    def changes_something(self) -> bool:
        return self in _MUTATING


_MUTATING = frozenset({ActionKind.REMOVE, ActionKind.RECREATE, ActionKind.CREATE, ActionKind.START})
# Removals first so that names and host ports are free before anything is created.
_ORDER = {kind: index for index, kind in enumerate(ActionKind)}


@dataclass(frozen=True, slots=True)
class Action:
    """One decision about one gateway (or one orphan container)."""

    kind: ActionKind
    gateway: str
    reason: str
    spec: ContainerSpec | None = None
    container: ObservedContainer | None = None

    @property
    def starts_container(self) -> bool:
        return self.kind in (ActionKind.CREATE, ActionKind.START, ActionKind.RECREATE)


def _check_desired(desired: Sequence[ContainerSpec], fleet: str) -> dict[str, ContainerSpec]:
    by_gateway: dict[str, ContainerSpec] = {}
    names: set[str] = set()
    for index, spec in enumerate(desired):
        if spec.fleet != fleet:
            raise PlanError(
                f"desired[{index}] (gateway {spec.gateway!r}) belongs to fleet {spec.fleet!r}, "
                f"not {fleet!r}"
            )
        if spec.gateway in by_gateway:
            raise PlanError(f"desired[{index}]: gateway {spec.gateway!r} appears twice")
        if spec.name in names:
            raise PlanError(f"desired[{index}]: container name {spec.name!r} appears twice")
        by_gateway[spec.gateway] = spec
        names.add(spec.name)
    return by_gateway


def _rank(container: ObservedContainer, spec: ContainerSpec) -> tuple[int, int, int, str]:
    # Prefer the container that already matches, then a live one, then the right name.
    return (
        0 if container.spec_hash == spec.spec_hash else 1,
        0 if container.is_alive else 1,
        0 if container.name == spec.name else 1,
        container.id,
    )


def _plan_gateway(
    spec: ContainerSpec, candidates: list[ObservedContainer], *, held: bool
) -> list[Action]:
    gw = spec.gateway
    kept = [c for c in candidates if c.name == previous_name(spec.name)]
    candidates = [c for c in candidates if c.name != previous_name(spec.name)]
    actions = _plan_current(spec, candidates, held=held)
    settled = any(a.kind is ActionKind.ADOPT and a.container is not None for a in actions)
    for copy in kept:
        if settled and not copy.is_alive:
            # The replacement runs on the new spec: the rollback copy is no longer needed.
            actions.append(
                Action(ActionKind.REMOVE, gw, "previous container of a rollout", container=copy)
            )
        # Otherwise a rollout is under way (or was cut short): the copy is left for it.
    return actions


def _plan_current(
    spec: ContainerSpec, candidates: list[ObservedContainer], *, held: bool
) -> list[Action]:
    gw = spec.gateway
    if not candidates:
        if held:
            return [Action(ActionKind.WAIT, gw, "held; no container", spec=spec)]
        return [Action(ActionKind.CREATE, gw, "no container", spec=spec)]
    ordered = sorted(candidates, key=lambda c: _rank(c, spec))
    primary, extras = ordered[0], ordered[1:]
    actions = [
        Action(ActionKind.REMOVE, gw, "duplicate container for this gateway", container=extra)
        for extra in extras
    ]
    drifted = primary.spec_hash != spec.spec_hash or primary.name != spec.name
    state = primary.state
    if state is ContainerState.REMOVING or state is ContainerState.UNKNOWN:
        actions.append(Action(ActionKind.WAIT, gw, f"container {state.value}", spec, primary))
    elif primary.is_alive and (held or not drifted):
        # A held gateway that is somehow running is left as it is: hold means hands off.
        actions.append(Action(ActionKind.ADOPT, gw, "running and matching", spec, primary))
    elif held:
        actions.append(Action(ActionKind.WAIT, gw, f"held; container {state.value}", spec, primary))
    elif drifted:
        actions.append(Action(ActionKind.RECREATE, gw, "spec changed", spec, primary))
    elif state is ContainerState.DEAD:
        actions.append(Action(ActionKind.RECREATE, gw, "container dead", spec, primary))
    elif state in STARTABLE_STATES:
        actions.append(Action(ActionKind.START, gw, f"container {state.value}", spec, primary))
    else:  # pragma: no cover - every state is handled above; kept for new enum members
        actions.append(Action(ActionKind.WAIT, gw, f"container {state.value}", spec, primary))
    return actions


def plan(
    desired: Sequence[ContainerSpec],
    observed: Iterable[ObservedContainer],
    *,
    fleet: str,
    hold: frozenset[str] = frozenset(),
) -> list[Action]:
    """What to do so that ``observed`` becomes ``desired``, removals first.

    ``hold`` names gateways that must not be created or started now (operator-stopped, in
    backoff, retry budget spent); they are reported as WAIT, or ADOPT when still running.
    """
    by_gateway = _check_desired(desired, fleet)
    wanted_names = {spec.name: spec for spec in by_gateway.values()}
    owned: dict[str, list[ObservedContainer]] = {}
    actions: list[Action] = []
    conflicted: set[str] = set()
    for container in observed:
        if container.fleet != fleet:
            spec = wanted_names.get(container.name)
            if spec is not None:
                owner = container.fleet or "no ibfleet label"
                actions.append(
                    Action(
                        ActionKind.CONFLICT,
                        spec.gateway,
                        f"name {container.name!r} is held by a container not of this fleet "
                        f"({owner})",
                        spec=spec,
                        container=container,
                    )
                )
                conflicted.add(spec.gateway)
            continue  # not ours: never planned for, whatever its name
        gateway = container.gateway
        if gateway is None or gateway not in by_gateway:
            actions.append(
                Action(
                    ActionKind.REMOVE,
                    gateway or container.name,
                    "orphan: no desired gateway",
                    container=container,
                )
            )
            continue
        owned.setdefault(gateway, []).append(container)
    for gateway, spec in by_gateway.items():
        if gateway in conflicted:
            # Creating would fail on the name; other containers of the gateway are left alone.
            continue
        actions.extend(_plan_gateway(spec, owned.get(gateway, []), held=gateway in hold))
    actions.sort(key=lambda a: (_ORDER[a.kind], a.gateway, a.container.id if a.container else ""))
    return actions
