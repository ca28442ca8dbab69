"""What a change of the fleet file does to each gateway, how and when: the rollout planner. Pure.

:func:`supervisor.reconcile.plan` says *what* to do with each container; this module is the one
owner of the rest of the decision an operator cares about before a change: which parts of a
gateway's spec differ (never their values), whether that costs a full login (and so, on live, an
IB Key prompt), whether it waits for the fleet's ``runtime.update_window``, and in which order
gateways are replaced (one at a time, the canary first). ``ibfleet plan`` prints it; the
orchestrator carries it out.

Only the replacement of a *running* container whose spec changed is rolled out (one gateway at a
time, deferred to the window); creating a missing gateway, starting a stopped one or recreating
a dead one costs no running session, so it happens at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.config import GatewayConfig, TradingMode
from gateway.spec import LABEL_SPEC_PARTS, SPEC_PARTS, ContainerSpec, parse_parts
from plugins.config import StrategyConfig
from supervisor.reconcile import Action, ActionKind

__all__ = [
    "Change",
    "GatewayChange",
    "GatewayFacts",
    "RolloutPlan",
    "When",
    "Window",
    "WindowSpec",
    "fleet_facts",
    "is_rolling",
    "plan_rollout",
    "rollout_order",
    "window_at",
]


class Change(enum.Enum):
    """What happens to one gateway's container."""

    NONE = "none"  # running and matching
    CREATE = "create"  # no container yet
    RECREATE = "recreate"  # removed and created anew (a new spec, or a dead container)
    START = "start"  # the stopped container is started again
    REMOVE = "remove"  # an orphan or duplicate container goes
    WAIT = "wait"  # held (operator stop, backoff) or in transition: nothing now
    CONFLICT = "conflict"  # a container of no ibfleet fleet holds the name: never touched


_CHANGE_OF = {
    ActionKind.ADOPT: Change.NONE,
    ActionKind.CREATE: Change.CREATE,
    ActionKind.RECREATE: Change.RECREATE,
    ActionKind.START: Change.START,
    ActionKind.REMOVE: Change.REMOVE,
    ActionKind.WAIT: Change.WAIT,
    ActionKind.CONFLICT: Change.CONFLICT,
}
# Every new container life is a cold start of IBC: a full login, with no autorestart token.
_FULL_LOGIN = frozenset({Change.CREATE, Change.RECREATE, Change.START})


class When(enum.Enum):
    NOW = "now"
    WINDOW = "window"  # the next runtime.update_window (or `ibfleet apply`)
    NEVER = "never"  # nothing to do, or nothing ibfleet may do (conflict, held)


class WindowSpec(Protocol):
    """What :func:`window_at` needs of ``runtime.update_window`` (its pydantic model fits)."""

    @property
    def weekdays(self) -> frozenset[int]: ...
    @property
    def start(self) -> dt.time: ...
    @property
    def length(self) -> dt.timedelta: ...


@dataclass(frozen=True, slots=True)
class Window:
    """One opening of the update window: open now (``start <= now < end``) or the next one."""

    start: dt.datetime
    end: dt.datetime
    open: bool


def window_at(spec: WindowSpec, *, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> Window:
    """The opening of ``spec`` that contains ``now``, else the next one to come.

    Days and start are on the fleet's clock ``tz``; an opening may span midnight (or days), so
    the week before ``now`` is searched too.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz)
    best: Window | None = None
    for offset in range(-7, 9):
        day = local.date() + dt.timedelta(days=offset)
        if day.weekday() not in spec.weekdays:
            continue
        start = dt.datetime.combine(day, spec.start, tzinfo=tz)
        end = start + spec.length
        if start <= now < end:
            return Window(start=start, end=end, open=True)
        if start > now and (best is None or start < best.start):
            best = Window(start=start, end=end, open=False)
    if best is None:  # pragma: no cover - weekdays is never empty (validated)
        raise ValueError("the update window has no days")
    return best


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    """What the planner needs to know of a gateway besides its spec."""

    name: str
    account: str = ""
    live: bool = False
    #: Its logins wait for a second factor (IB Key on live; the simulator's 2FA users).
    second_factor: bool = False
    #: Strategies whose first (primary) gateway this is: replaced last, so they move once.
    primary_for: tuple[str, ...] = ()
    #: Strategies that name it at all (primary or failover).
    used_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayChange:
    """One gateway's line of the plan."""

    gateway: str
    change: Change
    reason: str
    #: Part -> changed? (None: unknown, the running container predates per-part labels).
    parts: Mapping[str, bool | None] = field(default_factory=dict)
    full_login: bool = False
    second_factor: bool = False
    live: bool = False
    when: When = When.NEVER
    at: dt.datetime | None = None  # when ``when`` is WINDOW: the window's next opening
    rolling: bool = False  # a running session is replaced: one at a time, moved off first
    position: int | None = None  # 0 for the canary, then the rolling order
    account: str = ""

    @property
    def changed_parts(self) -> list[str]:
        return [p for p in SPEC_PARTS if self.parts.get(p)]

    def to_json(self) -> dict[str, object]:
        return {
            "gateway": self.gateway,
            "change": self.change.value,
            "reason": self.reason,
            "changed": {p: self.parts.get(p) for p in SPEC_PARTS} if self.parts else {},
            "recreate": self.change is Change.RECREATE,
            "full_login": self.full_login,
            "needs_2fa": self.full_login and self.second_factor,
            "live": self.live,
            "when": self.when.value,
            "at": self.at.isoformat() if self.at is not None else None,
            "rolling": self.rolling,
            "canary": self.position == 0,
            "position": self.position,
            "account": self.account,
        }


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Every gateway's change, the rolling order and the window it waits for."""

    gateways: tuple[GatewayChange, ...]
    window: Window | None = None

    @property
    def changes_anything(self) -> bool:
        return any(g.when is not When.NEVER for g in self.gateways)

    @property
    def rolling(self) -> list[GatewayChange]:
        """The replacements of running gateways, in the order they are carried out."""
        rolling = [g for g in self.gateways if g.rolling]
        return sorted(rolling, key=lambda g: g.position if g.position is not None else 0)

    @property
    def waiting(self) -> list[GatewayChange]:
        return [g for g in self.gateways if g.when is When.WINDOW]

    def of(self, gateway: str) -> GatewayChange | None:
        for line in self.gateways:
            if line.gateway == gateway:
                return line
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "changes": self.changes_anything,
            "window": None
            if self.window is None
            else {
                "start": self.window.start.isoformat(),
                "end": self.window.end.isoformat(),
                "open": self.window.open,
            },
            "gateways": [g.to_json() for g in self.gateways],
        }


def is_rolling(action: Action) -> bool:
    """A running container whose spec changed: its replacement costs a live session."""
    return (
        action.kind is ActionKind.RECREATE
        and action.container is not None
        and action.container.is_alive
    )


def _parts_changed(action: Action, spec: ContainerSpec | None) -> dict[str, bool | None]:
    if spec is None or action.container is None:
        return {}
    new = spec.parts
    old = parse_parts(action.container.labels.get(LABEL_SPEC_PARTS))
    out: dict[str, bool | None] = {}
    for part in SPEC_PARTS:
        if part in new and part in old:
            out[part] = new[part] != old[part]
        else:
            out[part] = None
    if action.container.name != spec.name:
        out["settings"] = True
    drifted = action.container.spec_hash != spec.spec_hash
    if drifted and not any(out.values()) and all(v is not None for v in out.values()):
        # Same parts, different hash: a part this version of ibfleet does not label.
        out["settings"] = True
    return out


def rollout_order(
    gateways: Iterable[str], facts: Mapping[str, GatewayFacts], *, first: Collection[str] = ()
) -> list[str]:
    """The order running gateways are replaced in, one at a time; the first is the canary.

    ``first`` (the simulator's broker) goes before everything that depends on it. Then the
    gateways no strategy starts on, then those that are some strategy's primary: a strategy
    moves off its primary once, onto a failover already replaced, and is not moved again.
    Ties go by name, so a plan reads the same every time.
    """

    def key(name: str) -> tuple[int, int, int, str]:
        fact = facts.get(name, GatewayFacts(name=name))
        return (0 if name in first else 1, len(fact.primary_for), len(fact.used_by), name)

    return sorted(gateways, key=key)


def fleet_facts(
    gateways: Iterable[GatewayConfig],
    strategies: Iterable[StrategyConfig] = (),
    *,
    simulated_second_factor: Collection[str] = (),
    simulated: bool = False,
) -> dict[str, GatewayFacts]:
    """Each gateway's facts from the fleet file: its account, live or not, whether a login
    asks for a second factor (IB Key on a live account; on the simulator, its 2FA users)."""
    enabled = [s for s in strategies if s.enabled]
    out: dict[str, GatewayFacts] = {}
    for gw in gateways:
        live = gw.mode is TradingMode.LIVE
        second = gw.name in simulated_second_factor if simulated else live
        out[gw.name] = GatewayFacts(
            name=gw.name,
            account=gw.account,
            live=live,
            second_factor=second,
            primary_for=tuple(s.name for s in enabled if s.gateways[:1] == [gw.name]),
            used_by=tuple(s.name for s in enabled if gw.name in s.gateways),
        )
    return out


def plan_rollout(
    actions: Sequence[Action],
    *,
    facts: Mapping[str, GatewayFacts],
    now: dt.datetime,
    window: WindowSpec | None = None,
    tz: zoneinfo.ZoneInfo | None = None,
    now_anyway: Collection[str] = (),
    first: Collection[str] = (),
) -> RolloutPlan:
    """Each gateway's change, whether it costs a full login, and when it happens.

    ``actions`` is :func:`supervisor.reconcile.plan`'s answer. A rolling replacement that needs
    a full login waits for ``window`` (on ``tz``'s clock) unless the window is open or the
    gateway is in ``now_anyway`` (``ibfleet apply``); everything else happens now.
    """
    opening = None
    if window is not None:
        opening = window_at(window, tz=tz or zoneinfo.ZoneInfo("UTC"), now=now)
    by_gateway: dict[str, list[Action]] = {}
    for action in actions:
        by_gateway.setdefault(action.gateway, []).append(action)
    rolling = [g for g, acts in by_gateway.items() if any(is_rolling(a) for a in acts)]
    order = {name: i for i, name in enumerate(rollout_order(rolling, facts, first=first))}
    lines: list[GatewayChange] = []
    for gateway in sorted(by_gateway, key=lambda g: (order.get(g, len(order)), g)):
        lines.append(
            _line(gateway, by_gateway[gateway], facts.get(gateway), order, opening, now_anyway)
        )
    return RolloutPlan(gateways=tuple(lines), window=opening)


def _line(
    gateway: str,
    actions: list[Action],
    fact: GatewayFacts | None,
    order: Mapping[str, int],
    opening: Window | None,
    now_anyway: Collection[str],
) -> GatewayChange:
    fact = fact or GatewayFacts(name=gateway)
    # The gateway's main action: the one about its spec, not the removal of a duplicate.
    main = next((a for a in actions if a.spec is not None), actions[0])
    change = _CHANGE_OF[main.kind]
    if main.kind is ActionKind.REMOVE and any(a.kind is ActionKind.REMOVE for a in actions):
        change = Change.REMOVE
    full_login = change in _FULL_LOGIN
    rolling = is_rolling(main)
    when = When.NOW if change not in (Change.NONE, Change.WAIT, Change.CONFLICT) else When.NEVER
    if len(actions) > 1 and change is Change.NONE:
        when = When.NOW  # a duplicate container goes; the gateway itself is left
    at = None
    if rolling and opening is not None and not opening.open and gateway not in now_anyway:
        when, at = When.WINDOW, opening.start
    reason = main.reason
    if len(actions) > 1:
        reason += f"; {len(actions) - 1} duplicate container(s) removed"
    return GatewayChange(
        gateway=gateway,
        change=change,
        reason=reason,
        parts=_parts_changed(main, main.spec) if main.kind is ActionKind.RECREATE else {},
        full_login=full_login,
        second_factor=fact.second_factor,
        live=fact.live,
        when=when,
        at=at,
        rolling=rolling,
        position=order.get(gateway),
        account=fact.account,
    )
