"""The invariants a chaos run must keep, judged over its whole history: history in, violations out.

Pure (no I/O, no clock): every function reads a :class:`~tests.chaos.history.History` and returns
the :class:`Violation` s it finds, each with the time of the entry that broke the rule so the
report can show the history around it.

- ``duplicate-order-ref``: no orderRef reached the broker twice.
- ``intent-unresolved``: every journalled intent is resolved to what the broker shows (the same
  status family and fill; an intent the broker never received is cancelled or rejected, not
  left pending, sent, working or unknown).
- ``unknown-order``: no order at the broker that the journal does not know.
- ``not-healed``: once the faults healed, every gateway is ready and every strategy runs on a
  gateway of its list.
- ``incident-pages``: every incident opened one page (a later one only if its severity rose,
  or if it is marked as a possible repeat sent again after a supervisor restart cut its
  delivery short) and got one resolved notice.
- ``quiet-window``: nothing paged inside an IB reset window, nor for a planned restart alone.
- ``login-budget``: password logins per username never above its budget in any window.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from plugins.intents import IntentState
from tests.chaos.history import History, Page, render_around

__all__ = ["CHECKS", "EXCUSE_LAG", "PLANNED_SLACK", "Violation", "check", "report"]

#: A page this long after an unplanned fault healed is still that fault's (a login's 2FA
#: prompt after a kill, a failed login's backoff, a grace period).
EXCUSE_LAG = dt.timedelta(seconds=60)
#: A planned restart's quiet period goes on this long after the runner saw it done.
PLANNED_SLACK = dt.timedelta(seconds=30)

_RANK = {"info": 0, "success": 0, "warning": 1, "failure": 2}
_LIVE = frozenset({IntentState.PENDING_SEND, IntentState.SENT, IntentState.ACKED})


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which, what exactly, and when the entry that broke it happened."""

    invariant: str
    message: str
    at: dt.datetime | None = None


def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def duplicate_refs(history: History) -> list[Violation]:
    seen: Counter[str] = Counter()
    out = []
    for order in sorted(history.broker_orders, key=lambda o: str(o.get("created_at", ""))):
        ref = str(order["order_ref"])
        seen[ref] += 1
        if seen[ref] == 2:
            out.append(
                Violation(
                    "duplicate-order-ref",
                    f"orderRef {ref} reached the broker twice (perm_id {order['perm_id']} "
                    f"on {order.get('gateway')})",
                    _ts(order.get("created_at")),
                )
            )
    return out


def _family(state: IntentState) -> str:
    return "live" if state in _LIVE else state.value


def intents_resolved(history: History) -> list[Violation]:
    by_ref: dict[str, dict[str, Any]] = {}
    for order in history.broker_orders:
        by_ref.setdefault(str(order["order_ref"]), order)
    filled: Counter[str] = Counter()
    for execution in history.executions:
        filled[str(execution["order_ref"])] += float(execution["shares"])
    out = []
    for intent in history.intents:
        key = str(intent["key"])
        status = IntentState(str(intent["status"]))
        at = _ts(intent.get("updated_at")) or _ts(intent.get("created_at"))
        order = by_ref.get(key)
        if order is None:
            if status not in (IntentState.CANCELLED, IntentState.REJECTED):
                out.append(
                    Violation(
                        "intent-unresolved",
                        f"intent {key} is {status.value} in the journal; the broker never "
                        "received it",
                        at,
                    )
                )
            continue
        broker = IntentState.from_ib(str(order["status"]))
        if _family(status) != _family(broker):
            out.append(
                Violation(
                    "intent-unresolved",
                    f"intent {key} is {status.value} in the journal; the broker shows "
                    f"{order['status']} (perm_id {order['perm_id']})",
                    at,
                )
            )
        shares = filled.get(key, float(order.get("filled", 0.0)))
        if abs(float(intent.get("filled", 0.0)) - shares) > 1e-9:
            out.append(
                Violation(
                    "intent-unresolved",
                    f"intent {key} has {intent.get('filled')} filled in the journal; the "
                    f"broker's executions say {shares:g}",
                    at,
                )
            )
    return out


def unknown_orders(history: History) -> list[Violation]:
    known = {str(i["key"]) for i in history.intents}
    out = []
    for order in history.broker_orders:
        ref = str(order["order_ref"])
        if ref in known:
            continue
        working = IntentState.from_ib(str(order["status"])).maybe_live
        out.append(
            Violation(
                "unknown-order",
                f"order {ref!r} (perm_id {order['perm_id']}, {order['status']}"
                f"{', live' if working else ''}) is at the broker; the journal has no intent",
                _ts(order.get("created_at")),
            )
        )
    return out


def healed(history: History) -> list[Violation]:
    at = history.checked_at
    if history.gateways is None or history.strategies is None:
        return [Violation("not-healed", "the supervisor's API did not answer after healing", at)]
    out = []
    for view in history.gateways:
        if view.get("state") != "API_READY" or not view.get("ready"):
            out.append(
                Violation(
                    "not-healed",
                    f"gateway {view.get('name')} is {view.get('state')} ({view.get('reason')}) "
                    "after the faults healed",
                    at,
                )
            )
    rows = {str(r.get("name")): r for r in history.strategies}
    for name, gateways in history.strategy_gateways.items():
        row = rows.get(name)
        if row is None:
            out.append(Violation("not-healed", f"strategy {name} is not listed", at))
        elif row.get("state") != "RUNNING" or row.get("gateway") not in gateways:
            out.append(
                Violation(
                    "not-healed",
                    f"strategy {name} is {row.get('state')} on {row.get('gateway')} after the "
                    f"faults healed (its gateways: {list(gateways)})",
                    at,
                )
            )
    return out


def _repeated(page: Page, first: Page | None, restarts: list[dt.datetime]) -> bool:
    """``page`` is ``first`` sent again, marked, by a supervisor started after ``first``."""
    return (
        first is not None
        and page.repeat
        and page.title == first.title
        and any(first.at < r <= page.at for r in restarts)
    )


def incident_pages(history: History) -> list[Violation]:
    restarts = [e.at for e in history.entries if e.kind == "supervisor-started"]
    last_resolved: dict[str, Page] = {}
    open_: dict[str, Page] = {}
    rank: dict[str, int] = {}
    out = []
    for page in sorted(history.pages, key=lambda p: p.at):
        owner = history.incident_of(page)
        if page.resolved:
            if owner not in open_ and _repeated(page, last_resolved.get(owner), restarts):
                continue  # a resolved notice sent again, marked, after a restart (as for pages)
            last_resolved[owner] = page
            if owner not in open_:
                out.append(
                    Violation(
                        "incident-pages",
                        f"a resolved notice for {owner} with no incident open: {page.title!r}",
                        page.at,
                    )
                )
            open_.pop(owner, None)
            continue
        if owner in open_:
            level = _RANK.get(page.kind, 1)
            if level > rank[owner]:
                rank[owner] = level  # the incident's severity rose: an update, not a page twice
                continue
            if _repeated(page, open_[owner], restarts):
                # At-least-once: a supervisor that died between sending a page and recording
                # it sends it again, marked as a possible repeat. Unmarked, or with no restart
                # in between, it is a page twice.
                continue
            out.append(
                Violation(
                    "incident-pages",
                    f"{owner} paged again while its incident was open: {page.title!r} (open "
                    f"since {open_[owner].at:%H:%M:%S} with {open_[owner].title!r})",
                    page.at,
                )
            )
            continue
        open_[owner] = page
        rank[owner] = _RANK.get(page.kind, 1)
    for owner, page in sorted(open_.items()):
        out.append(
            Violation(
                "incident-pages",
                f"{owner}'s incident {page.title!r} never got a resolved notice",
                page.at,
            )
        )
    return out


def quiet_windows(history: History) -> list[Violation]:
    planned = [f for f in history.faults if f.planned]
    # A supervisor stop is not an excuse: it is meant to page nobody.
    unplanned = [f for f in history.faults if not f.planned and not f.kind.startswith("supervisor")]
    out = []
    for page in history.pages:
        if page.resolved:
            continue
        for start, end in history.reset_windows:
            if start <= page.at < end:
                out.append(
                    Violation(
                        "quiet-window",
                        f"{page.title!r} was paged inside the IB reset window "
                        f"{start:%H:%M}-{end:%H:%M} UTC",
                        page.at,
                    )
                )
        owner = page.owner
        quiet = [f for f in planned if owner in f.gateways and _within(page.at, f, PLANNED_SLACK)]
        if not quiet:
            continue
        excused = any(owner in f.gateways and _within(page.at, f, EXCUSE_LAG) for f in unplanned)
        if not excused:
            out.append(
                Violation(
                    "quiet-window",
                    f"{page.title!r} was paged during a planned restart of {owner} "
                    f"(fault #{quiet[0].index}) with no other fault on it",
                    page.at,
                )
            )
    return out


def _within(at: dt.datetime, fault: Any, lag: dt.timedelta) -> bool:
    return bool(fault.start <= at <= fault.end + lag)


def login_budget(history: History) -> list[Violation]:
    out = []
    window = history.login_window
    for username, times in sorted(history.logins.items()):
        budget = history.login_budget.get(username)
        if budget is None:
            continue
        ordered = sorted(times)
        for i, first in enumerate(ordered):
            inside = [t for t in ordered[i:] if t < first + window]
            if len(inside) > budget:
                out.append(
                    Violation(
                        "login-budget",
                        f"{len(inside)} password logins for {username} within "
                        f"{window} from {first:%H:%M:%S} (budget {budget})",
                        inside[budget],
                    )
                )
                break
    return out


CHECKS: tuple[Callable[[History], list[Violation]], ...] = (
    duplicate_refs,
    intents_resolved,
    unknown_orders,
    healed,
    incident_pages,
    quiet_windows,
    login_budget,
)


def check(history: History) -> list[Violation]:
    """Every violation of every invariant, in time order (undated ones last)."""
    found = [v for rule in CHECKS for v in rule(history)]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda v: v.at or far)


def report(history: History, violations: Iterable[Violation], *, width: int = 12) -> str:
    """What a failing run prints: the seed, each violation and the history around it."""
    listed = list(violations)
    head = f"chaos seed {history.seed}: {len(listed)} violation(s); replay: IBFLEET_CHAOS_SEED=" + (
        f"{history.seed}"
    )
    parts = [head]
    by_rule: defaultdict[str, int] = defaultdict(int)
    for v in listed:
        by_rule[v.invariant] += 1
        when = f" at {v.at:%H:%M:%S.%f}"[:-3] if v.at else ""
        parts.append(f"\n[{v.invariant}]{when}: {v.message}")
        parts.append(render_around(history, v.at, width=width))
    if listed:
        parts.append("\nby invariant: " + ", ".join(f"{k}={n}" for k, n in sorted(by_rule.items())))
    return "\n".join(parts)
