"""A bracket placed through the host survives a ``docker kill`` of its primary gateway's
container: simulator containers on the real engine (a broker and two gateways on one paper
account), the supervisor in this process hosting a bracket strategy, and the broker's record
(the control API's ``/orders``, every order it ever received) as the truth.

After the kill, on the broker's record: every leg's orderRef arrived exactly once; no leg
works without its group (no exit without its entry's position, no entry without both exits);
the safe-state policy did what the guide says (``hold``: the legs stay working and close by
OCA later; ``cancel``: all three are cancelled through the failover gateway's session); and
the strategy carries on on the failover gateway. The in-process twin of these tests is
tests/integration/plugins/test_brackets.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from plugins.host import SafeStatePath
from tests.integration.realday import (
    ACCOUNT,
    DONE,
    MIDDAY,
    DayFleet,
    GatewayPlan,
    MovableClock,
    StrategyPlan,
)
from tests.integration.smtp import WebhookSink
from tests.integration.test_real_day import hook
from tests.waiting import until

__all__ = ["hook"]  # the webhook receiver fixture, shared with the real day's tests

NAME = "brk"
GATEWAYS = ("gw-a", "gw-b")
#: The shipped breakout with exits far enough that the simulator's drift never reaches them
#: during a test (its daily volatility, in real time: a few hundredths of a per cent a minute).
BREAKOUT = {
    "symbol": "AAPL",
    "window": 3,
    "quantity": 2,
    "target": 0.05,
    "risk": 0.05,
    "breakeven": 0,
}


class BracketFleet(DayFleet):
    """The real day's fleet with a bracket strategy instead of the resting order."""

    def __init__(self, *, plugin: str, params: dict[str, Any], **kw: Any) -> None:
        self.plugin, self.params = plugin, params
        super().__init__(**kw)

    def _fleet_text(self, hook: WebhookSink) -> str:
        data = yaml.safe_load(super()._fleet_text(hook))
        [entry] = data["strategies"]
        entry.update(
            name=NAME,
            plugin=self.plugin,
            params=self.params,
            # BracketOnce's stop is 20 % under the market on purpose.
            limits={"price_collar_pct": None},
        )
        return yaml.safe_dump(data, sort_keys=False)

    async def strategy_row(self) -> dict[str, Any]:
        rows = await self.api("/api/v1/strategies")
        found: dict[str, Any] = next(r for r in rows if r["name"] == NAME)
        return found

    async def price(self, symbol: str) -> float:
        return float((await self.broker.get("/prices"))[symbol])

    async def set_price(self, symbol: str, price: float) -> None:
        async with httpx.AsyncClient(base_url=self.broker.url, timeout=10) as c:
            response = await c.put(f"/prices/{symbol}", json={"price": price})
        assert response.status_code == 200, response.text

    async def position(self, symbol: str) -> float:
        rows = await self.broker.get("/positions")
        return sum(r["quantity"] for r in rows if r["account"] == ACCOUNT and r["symbol"] == symbol)

    async def mine(self) -> list[dict[str, Any]]:
        return [o for o in await self.broker.orders() if o["order_ref"].startswith(f"{NAME}-")]


@pytest.fixture
async def make_fleet(
    docker_client: docker.DockerClient, sim_image: str, tmp_path: Path, hook: WebhookSink
) -> AsyncIterator[Callable[..., BracketFleet]]:
    made: list[BracketFleet] = []

    def make(**kw: Any) -> BracketFleet:
        fleet = BracketFleet(
            docker_client=docker_client,
            image=sim_image,
            workdir=tmp_path,
            hook=hook,
            gateways=tuple(GatewayPlan(g) for g in GATEWAYS),
            **kw,
        )
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        try:
            await fleet.stop()
        finally:
            await asyncio.to_thread(fleet.cleanup)


# -- the broker's record, judged -----------------------------------------------------------


def brackets(orders: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The broker's orders grouped by bracket: entry orderRef -> {"entry"|"tp"|"sl": order}."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for order in orders:
        ref = order["order_ref"]
        base, _, leg = ref.rpartition(".")
        if leg in ("tp", "sl"):
            groups.setdefault(base, {})[leg] = order
        else:
            groups.setdefault(ref, {})["entry"] = order
    return groups


def sent_twice(orders: list[dict[str, Any]]) -> list[str]:
    return sorted(ref for ref, n in Counter(o["order_ref"] for o in orders).items() if n > 1)


def orphans(orders: list[dict[str, Any]]) -> list[str]:
    """Every way a bracket at the broker is broken: a leg missing or unlinked, an exit
    working without its entry's fill, a working entry without both exits, an exit working
    after its sibling filled."""
    found: list[str] = []
    for ref, legs in brackets(orders).items():
        if set(legs) != {"entry", "tp", "sl"}:
            found.append(f"{ref}: legs {sorted(legs)} reached the broker, not all three")
            continue
        entry, tp, sl = legs["entry"], legs["tp"], legs["sl"]
        working = {k: v["status"] not in DONE for k, v in legs.items()}
        if not (tp["parent_perm_id"] == sl["parent_perm_id"] == entry["perm_id"]):
            found.append(f"{ref}: the exits are not children of the entry")
        if not (tp["oca_group"] == sl["oca_group"] != ""):
            found.append(f"{ref}: the exits are not in one OCA group")
        for name in ("tp", "sl"):
            if working[name] and entry["status"] != "Filled" and not working["entry"]:
                found.append(f"{ref}.{name} works without its entry ({entry['status']})")
        if working["entry"] and not (working["tp"] and working["sl"]):
            found.append(f"{ref}: the entry works without both exits")
        if (working["tp"] and sl["status"] == "Filled") or (
            working["sl"] and tp["status"] == "Filled"
        ):
            found.append(f"{ref}: an exit works after its sibling filled")
    return found


def notes(order: dict[str, Any]) -> list[str]:
    return [change["note"] for change in order["history"]]


async def one_bracket(fleet: BracketFleet, *, entry_filled: bool) -> dict[str, dict[str, Any]]:
    """Wait for the strategy's first bracket at the broker, all three legs transmitted."""

    async def ready() -> dict[str, dict[str, Any]] | None:
        groups = brackets(await fleet.mine())
        if len(groups) != 1:
            return None
        [legs] = groups.values()
        if set(legs) != {"entry", "tp", "sl"}:
            return None
        if entry_filled != (legs["entry"]["status"] == "Filled"):
            return None
        return legs if all(o["status"] not in ("PendingSubmit",) for o in legs.values()) else None

    try:
        legs: dict[str, dict[str, Any]] = await until(
            ready, 60, what="the strategy's bracket at the broker", step=0.2
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nstrategy: {await fleet.strategy_row()}\n"
            f"broker orders: {await fleet.mine()}\n{await fleet.diagnosis()}"
        ) from None
    return legs


async def started(fleet: BracketFleet) -> tuple[str, str]:
    """The gateway the strategy trades on (its primary unless that was slow to come up), and
    the one it fails over to."""

    async def running() -> str | None:
        row = await fleet.strategy_row()
        return row["gateway"] if row["state"] == "RUNNING" and row["gateway"] else None

    first: str = await until(running, 90, what="the strategy running", step=0.2)
    return first, next(g for g in GATEWAYS if g != first)


async def failed_over(fleet: BracketFleet, to: str) -> dict[str, Any]:
    async def there() -> dict[str, Any] | None:
        row = await fleet.strategy_row()
        ok = row["state"] == "RUNNING" and row["gateway"] == to and row["failovers"] == 1
        return row if ok else None

    row: dict[str, Any] = await until(there, 90, what=f"the strategy running on {to}", step=0.2)
    return row


# ---------------------------------------------------------------------------------------------


@pytest.mark.docker
async def test_held_bracket_survives_a_primary_kill_and_closes_by_oca_through_the_failover(
    make_fleet: Callable[..., BracketFleet],
) -> None:
    fleet = make_fleet(
        plugin="breakout",
        params=BREAKOUT,
        strategy=StrategyPlan(gateways=GATEWAYS, on_disconnect="hold", grace="2s"),
    )
    await fleet.start(MovableClock(MIDDAY))
    await fleet.until_ready()
    first, other = await started(fleet)
    assert fleet.running is not None and fleet.running.host is not None
    runner = fleet.running.host.runners[NAME]
    await until(
        lambda: len(getattr(runner.strategy, "prices", ())) == BREAKOUT["window"],
        60,
        what="the breakout's window full",
    )
    # A new high (the drift alone makes one too, sooner or later): the breakout enters.
    await fleet.set_price("AAPL", round(await fleet.price("AAPL") * 1.003, 2))
    legs = await one_bracket(fleet, entry_filled=True)
    assert {o["gateway"] for o in legs.values()} == {first}
    assert legs["tp"]["status"] not in DONE and legs["sl"]["status"] not in DONE
    assert await fleet.position("AAPL") == 2
    assert orphans(await fleet.mine()) == []

    await fleet.kill(first)
    await failed_over(fleet, other)
    host = fleet.running.host if fleet.running else None
    assert host is not None
    [run] = host.safe_state_runs(NAME)
    assert run.path is SafeStatePath.NOTHING  # hold: nothing was cancelled

    record = await fleet.mine()
    assert sent_twice(record) == [] and len(record) == 3, record
    assert orphans(record) == [], record
    held = brackets(record)[legs["entry"]["order_ref"]]
    assert held["tp"]["status"] not in DONE and held["sl"]["status"] not in DONE, held
    assert not any(n.startswith("cancelled by") for o in record for n in notes(o)), record
    assert await fleet.position("AAPL") == 2

    # The market goes through the take-profit: IB fills it and cancels the stop (OCA); the
    # strategy, now on the failover gateway, sees the bracket end and enters the next one.
    await fleet.set_price("AAPL", round(legs["tp"]["lmt_price"] * 1.01, 2))

    async def closed_and_again() -> list[dict[str, Any]] | None:
        orders = await fleet.mine()
        groups = brackets(orders)
        old = groups[legs["entry"]["order_ref"]]
        if old["tp"]["status"] != "Filled" or old["sl"]["status"] != "Cancelled":
            return None
        new = [g for ref, g in groups.items() if ref != legs["entry"]["order_ref"]]
        if not new or set(new[0]) != {"entry", "tp", "sl"}:
            return None
        return orders

    record = await until(
        closed_and_again, 60, what="the take-profit filled and a new bracket", step=0.2
    )
    old = brackets(record)[legs["entry"]["order_ref"]]
    assert any("OCA group" in n for n in notes(old["sl"])), old["sl"]
    new = [g for ref, g in brackets(record).items() if ref != legs["entry"]["order_ref"]]
    assert len(new) == 1 and {o["gateway"] for o in new[0].values()} == {other}, new
    assert sent_twice(record) == [], record
    assert orphans(record) == [], record
    row = await fleet.strategy_row()
    assert row["gateway"] == other and row["state"] == "RUNNING", row


@pytest.mark.docker
async def test_cancelled_bracket_of_a_killed_primary_is_cancelled_leg_by_leg_through_the_failover(
    make_fleet: Callable[..., BracketFleet],
) -> None:
    fleet = make_fleet(
        # An entry 10 % under the market: all three legs stay working until the kill.
        plugin="tests.integration.plugins.strategies:BracketOnce",
        params={},
        strategy=StrategyPlan(gateways=GATEWAYS, on_disconnect="cancel", grace="2s"),
    )
    await fleet.start(MovableClock(MIDDAY))
    await fleet.until_ready()
    first, other = await started(fleet)
    legs = await one_bracket(fleet, entry_filled=False)
    assert [legs[k]["status"] for k in ("entry", "tp", "sl")] == [
        "Submitted",
        "PreSubmitted",
        "PreSubmitted",
    ]
    assert orphans(await fleet.mine()) == []

    await fleet.kill(first)

    async def all_cancelled() -> list[dict[str, Any]] | None:
        orders = await fleet.mine()
        return orders if all(o["status"] == "Cancelled" for o in orders) else None

    record = await until(all_cancelled, 60, what="the three legs cancelled", step=0.2)
    await failed_over(fleet, other)
    assert sent_twice(record) == [] and len(record) == 3, record
    assert orphans(record) == [], record
    for order in record:
        # Through the failover gateway's session: the primary's container was dead.
        assert any(n.startswith(f"cancelled by {other}/") for n in notes(order)), order
    host = fleet.running.host if fleet.running else None
    assert host is not None
    [run] = host.safe_state_runs(NAME)
    assert run.path is SafeStatePath.FAILOVER_GATEWAY
    assert set(run.cancelled) == {o["order_ref"] for o in record}
    assert await fleet.position("AAPL") == 0


def _order(ref: str, status: str, *, perm: int, parent: int = 0, oca: str = "") -> dict[str, Any]:
    return {
        "order_ref": ref,
        "status": status,
        "perm_id": perm,
        "parent_perm_id": parent,
        "oca_group": oca,
    }


def _bracket(entry: str, tp: str, sl: str, *, oca: str = "K") -> list[dict[str, Any]]:
    return [
        _order("s-K", entry, perm=1),
        _order("s-K.tp", tp, perm=2, parent=1, oca=oca),
        _order("s-K.sl", sl, perm=3, parent=1, oca=oca),
    ]


def test_the_judge_of_the_broker_record_finds_each_broken_bracket() -> None:
    # Whole groups: working, held after the entry filled, closed by OCA, all cancelled.
    for whole in (
        ("Submitted", "PreSubmitted", "PreSubmitted"),
        ("Filled", "Submitted", "PreSubmitted"),
        ("Filled", "Filled", "Cancelled"),
        ("Cancelled", "Cancelled", "Cancelled"),
    ):
        assert orphans(_bracket(*whole)) == [], whole
    broken = {
        ("Cancelled", "Submitted", "PreSubmitted"): "works without its entry",
        ("Submitted", "Cancelled", "PreSubmitted"): "without both exits",
        ("Filled", "Filled", "PreSubmitted"): "after its sibling filled",
    }
    for legs, why in broken.items():
        found = orphans(_bracket(*legs))
        assert found and all(why in f or "works without" in f for f in found), (legs, found)
    assert "one OCA group" in orphans(_bracket("Submitted", "Submitted", "Submitted", oca=""))[0]
    assert "not all three" in orphans(_bracket("Submitted", "Submitted", "Submitted")[:2])[0]
    twice = [*_bracket("Filled", "Submitted", "Submitted"), _order("s-K.sl", "Submitted", perm=4)]
    assert sent_twice(twice) == ["s-K.sl"]
