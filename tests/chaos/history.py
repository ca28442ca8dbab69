"""What a chaos run saw: a timeline of entries and the records read once the faults healed.

Pure data. The runner fills it from the real parts (the schedule's own actions, the webhook's
received alerts, the supervisor's journal, the broker's order record and executions, the
gateways' logs); :mod:`tests.chaos.invariants` judges it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor.notify import REPEAT_NOTE

__all__ = ["Entry", "Fault", "History", "Page", "render_around"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened, from one source, at one time (UTC)."""

    at: dt.datetime
    source: str  # chaos | webhook | journal | broker | runner
    kind: str
    gateway: str | None = None
    detail: str = ""

    def line(self) -> str:
        where = f" [{self.gateway}]" if self.gateway else ""
        return f"{self.at:%H:%M:%S.%f}"[:-3] + f" {self.source:<7} {self.kind}{where} {self.detail}"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault as it was injected: when it began and healed, and the gateways it touched."""

    index: int
    kind: str
    start: dt.datetime
    end: dt.datetime
    gateways: tuple[str, ...]
    planned: bool = False
    describe: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    """One alert the webhook received: a page (``resolved`` False) or a resolved notice."""

    at: dt.datetime
    title: str
    kind: str  # apprise's notify type: info | success | warning | failure
    body: str = ""

    @property
    def resolved(self) -> bool:
        return self.title.startswith("Resolved: ")

    @property
    def repeat(self) -> bool:
        """Sent again after a supervisor restart cut its delivery short, and saying so."""
        return self.body.startswith(REPEAT_NOTE)

    @property
    def owner(self) -> str:
        """Whose incident it is: the title's ``<owner>: `` prefix (a gateway, a strategy)."""
        title = self.title.removeprefix("Resolved: ")
        head, sep, _ = title.partition(": ")
        return head if sep else title


@dataclass
class History:
    """The whole run: the timeline, the faults, the pages and the final records."""

    seed: int
    entries: list[Entry] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    #: The broker's record once healed: every order it ever received (``/orders``).
    broker_orders: list[dict[str, Any]] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)
    #: The journal's intents: ``key``, ``strategy``, ``status``, ``filled``, ``perm_id``.
    intents: list[dict[str, Any]] = field(default_factory=list)
    #: The supervisor's view once healed (``None``: its API never answered).
    gateways: list[dict[str, Any]] | None = None
    strategies: list[dict[str, Any]] | None = None
    #: Each strategy's configured gateways, in order.
    strategy_gateways: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Password logins IB saw per username (IBC's ``Login attempt`` lines), and the budget.
    logins: Mapping[str, Sequence[dt.datetime]] = field(default_factory=dict)
    login_budget: Mapping[str, int] = field(default_factory=dict)
    login_window: dt.timedelta = dt.timedelta(hours=1)
    #: IB's reset windows over the run, (start, end) in UTC.
    reset_windows: Sequence[tuple[dt.datetime, dt.datetime]] = ()
    #: Title parts of the problems that are incidents of their own, apart from their owner's
    #: other problems (the alert policy's standalone problems: a 2FA prompt, a re-auth notice).
    standalone: tuple[str, ...] = ("approve the IB Key login", "weekly IB re-authentication")
    #: When the last fault healed; and when the final records were read.
    healed_at: dt.datetime | None = None
    checked_at: dt.datetime | None = None

    def incident_of(self, page: Page) -> str:
        """Which incident a page belongs to: its owner's, or a standalone problem's own."""
        alone = next((part for part in self.standalone if part in page.title), None)
        return page.owner if alone is None else f"{page.owner} / {alone}"

    def timeline(self) -> list[Entry]:
        """Every entry, the faults' and pages' included, in time order."""
        merged = list(self.entries)
        for f in self.faults:
            merged.append(Entry(f.start, "chaos", f"begin {f.kind}", _one(f.gateways), f.describe))
            merged.append(Entry(f.end, "chaos", f"heal {f.kind}", _one(f.gateways), f"#{f.index}"))
        merged.extend(Entry(p.at, "webhook", p.kind, p.owner, p.title) for p in self.pages)
        return sorted(merged, key=lambda e: e.at)


def _one(gateways: tuple[str, ...]) -> str | None:
    return gateways[0] if len(gateways) == 1 else None


def render_around(history: History, at: dt.datetime | None, *, width: int = 12) -> str:
    """The timeline's ``width`` entries either side of ``at`` (its end when ``at`` is None)."""
    timeline = history.timeline()
    if not timeline:
        return "(the history is empty)"
    if at is None:
        middle = len(timeline) - 1
    else:
        middle = next((i for i, e in enumerate(timeline) if e.at >= at), len(timeline) - 1)
    lo, hi = max(0, middle - width), min(len(timeline), middle + width + 1)
    lines = [("-> " if i == middle else "   ") + timeline[i].line() for i in range(lo, hi)]
    return "\n".join(lines)
