"""``plugins.testing``: test a strategy in pytest against the in-process simulator.

A strategy author's test, start to end::

    from plugins import api
    from plugins.testing import StrategyHarness

    async def test_it_buys_the_dip(tmp_path):
        async with StrategyHarness.start(MyStrategy, params={"symbol": "AAPL"},
                                         prices={"AAPL": 100.0}, workdir=tmp_path) as h:
            await h.replay("AAPL", [100.0, 99.0, 98.0])    # each price seen before the next
            await h.until(lambda: h.broker_orders(), what="an order at the broker")
            assert h.broker_orders()[0].action == "BUY"

What runs is what runs in production, minus the containers: the simulated IB (broker, order
matching, market data) and two simulated gateways on one paper account, reached over real TCP
by the real ib_async client; the real strategy host (rate limit, risk checks, durable intents
in a real SQLite journal, reconciliation, safe state, failover). Prices move only when the test
moves them (no random walk unless ``volatility`` is given), so a test is deterministic.

The harness is the one module of ``plugins`` that imports ``ibsim`` and the supervisor's
journal: it assembles the parts, as the supervisor does (an exception the import contract in
pyproject.toml names).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.leases import ClientIdLeases
from gateway.outage import Gate, OutageKind
from ibsim import auth
from ibsim.broker import BrokerConfig
from ibsim.fleet import GatewaySpec, SimFleet
from plugins import api
from plugins.config import StrategyConfig
from plugins.host import GatewayEndpoint, HostSettings, StrategyHost
from plugins.host.runner import Runner
from plugins.intents import belongs_to
from supervisor.journal import SqliteJournal

__all__ = ["ACCOUNT", "Alert", "BrokerOrderView", "StrategyHarness", "refs_sent_twice"]

ACCOUNT = "DU9000001"
PRIMARY, FAILOVER = "primary", "failover"
# The simulated login server's password for the harness users: not a secret, nothing real.
SIM_PASSWORD = "sim-password"  # noqa: S105


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert the host raised (what the operator would have been paged with)."""

    key: str
    severity: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class BrokerOrderView:
    """An order as the simulated IB holds it: the truth, whatever the host believes."""

    order_ref: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    status: str
    filled: float
    avg_fill_price: float
    parent_id: int
    oca_group: str
    gateway: str
    #: IB's orderId (a bracket's exits carry their entry's as ``parent_id``).
    order_id: int = 0
    #: Why its status changed, oldest first: ``(status, note)`` as the simulated IB wrote it
    #: (``"OCA group ... filled"``, ``"cancelled by <gateway>/<client id>"``, ...).
    history: tuple[tuple[str, str], ...] = ()

    @property
    def working(self) -> bool:
        return self.status not in ("Filled", "Cancelled", "ApiCancelled", "Inactive")


@dataclass
class _Alerts:
    raised: list[Alert] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        self.raised.append(Alert(key, severity, title, body))

    def resolve(self, key: str) -> None:
        self.resolved.append(key)


def _plugin_path(strategy: type[api.Strategy] | str) -> str:
    if isinstance(strategy, str):
        return strategy
    if "<locals>" in strategy.__qualname__:
        raise ValueError(
            f"strategy {strategy.__qualname__}: define it at module level (the host loads it "
            "by module:Class, as the fleet file names it)"
        )
    return f"{strategy.__module__}:{strategy.__qualname__}"


class StrategyHarness:
    """One strategy on the in-process simulator, with the host's real order path.

    Made with :meth:`start`. ``h.sim`` is the :class:`ibsim.fleet.SimFleet`, ``h.host`` the
    :class:`plugins.host.StrategyHost`, ``h.strategy`` the running strategy instance.
    """

    def __init__(
        self, sim: SimFleet, host: StrategyHost, journal: SqliteJournal, alerts: _Alerts, name: str
    ) -> None:
        self.sim = sim
        self.host = host
        self.journal = journal
        self.name = name
        self._alerts = alerts

    # -- construction ----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        strategy: type[api.Strategy] | str,
        *,
        params: Mapping[str, Any] | None = None,
        name: str = "under-test",
        prices: Mapping[str, float] | None = None,
        workdir: Path | None = None,
        config: Mapping[str, Any] | None = None,
        volatility: float = 0.0,
        tick_rate: float = 20.0,
    ) -> AsyncIterator[StrategyHarness]:
        """Start the simulator (two gateways, one account), the host and the strategy.

        ``config`` is merged into the strategy's fleet-file entry (``limits``, ``safe_state``,
        ...), validated as the fleet file is. ``workdir`` holds the journal (a temporary
        directory when omitted). The strategy has reconciled and run ``on_start`` on return.
        """
        entry: dict[str, Any] = {
            "name": name,
            "plugin": _plugin_path(strategy),
            "gateways": [PRIMARY, FAILOVER],
            "client_id": 11,
            "params": dict(params or {}),
        }
        entry.update(config or {})
        cfg = StrategyConfig.model_validate(entry)
        with contextlib.ExitStack() as stack:
            where = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            async with SimFleet.start(
                gateways=[
                    GatewaySpec(name=PRIMARY, username="harness-a"),
                    GatewaySpec(name=FAILOVER, username="harness-b"),
                ],
                users=[
                    auth.User(username=u, password=SIM_PASSWORD, accounts=(ACCOUNT,))
                    for u in ("harness-a", "harness-b")
                ],
                control_port=None,
                tick_rate=tick_rate,
                broker_config=BrokerConfig(volatility=volatility),
            ) as sim:
                for symbol, price in (prices or {}).items():
                    sim.set_price(symbol, price)
                journal = SqliteJournal(where / "journal.sqlite")
                alerts = _Alerts()
                leases = ClientIdLeases(start=1, end=50, probe_id=1)
                host = StrategyHost(
                    strategies=[cfg],
                    endpoints={
                        gw: GatewayEndpoint(
                            name=gw, host="127.0.0.1", port=port, account=ACCOUNT, leases=leases
                        )
                        for gw, port in zip((PRIMARY, FAILOVER), sim.ports, strict=True)
                    },
                    store=journal,
                    alerts=alerts,
                    settings=HostSettings(connect_timeout=2.0, request_timeout=5.0),
                )
                harness = cls(sim, host, journal, alerts, name)
                try:
                    await host.start()
                    await harness.settle()
                    yield harness
                finally:
                    await host.stop()
                    journal.close()

    # -- moving the market -----------------------------------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        """Move a price now; resting orders that cross it fill at once."""
        self.sim.set_price(symbol, price)

    async def replay(self, symbol: str, prices: Iterable[float], *, timeout: float = 10.0) -> None:
        """Move ``symbol`` through ``prices``; the strategy has seen each (and its hooks have
        run) before the next is set. Bars: replay their closes."""
        for price in prices:
            self.set_price(symbol, price)
            await self.until(
                functools.partial(self._seen, symbol, price),
                timeout=timeout,
                what=f"the strategy seeing {symbol} at {price}",
            )
            await self.settle(timeout=timeout)

    def _seen(self, symbol: str, price: float) -> bool:
        for instrument, contract in self.runner.data.qualified.items():
            if instrument.symbol == symbol:
                last = self.runner.data.last.get(contract.conId)
                return last is not None and abs(last - price) <= 1e-9 + abs(price) * 1e-9
        return False

    # -- waiting ---------------------------------------------------------------------------

    async def until(
        self, predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` is truthy, at most ``timeout`` seconds (then fail,
        naming ``what``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            await asyncio.sleep(0.01)

    async def settle(self, *, timeout: float = 10.0) -> None:
        """Wait until the strategy's queued hooks have run and the journal is written."""
        try:
            await asyncio.wait_for(self.runner.inbox.join(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"strategy {self.name}: hooks still running after {timeout:g}s"
            ) from None
        await self.host.settle()

    # -- what happened ---------------------------------------------------------------------

    @property
    def runner(self) -> Runner:
        return self.host.runners[self.name]

    @property
    def strategy(self) -> api.Strategy:
        instance = self.runner.strategy
        if instance is None:
            raise AssertionError(f"strategy {self.name} has no running instance")
        return instance

    @property
    def ctx(self) -> api.Context:
        return self.runner.ctx

    @property
    def state(self) -> str:
        """The strategy's state as ``ibfleet strategies`` shows it (running, halted, ...)."""
        return self.runner.run.state.value

    @property
    def alerts(self) -> list[Alert]:
        return list(self._alerts.raised)

    def open_orders(self) -> list[api.OrderView]:
        """The strategy's working orders, as the host books them."""
        return self.ctx.open_orders()

    def broker_orders(self, *, working_only: bool = False) -> list[BrokerOrderView]:
        """Every order the strategy's sessions sent, as the simulated IB holds it."""
        views = [
            BrokerOrderView(
                order_ref=o.order_ref,
                action=o.action,
                quantity=o.total_quantity,
                order_type=o.order_type,
                limit_price=o.lmt_price,
                aux_price=o.aux_price,
                status=str(getattr(o.status, "value", o.status)),
                filled=o.filled,
                avg_fill_price=o.avg_fill_price,
                parent_id=o.parent_id,
                oca_group=o.oca_group,
                gateway=o.gateway,
                order_id=o.order_id,
                history=tuple((change.status, change.note) for change in o.history),
            )
            for o in self.sim.broker.orders.values()
            if belongs_to(o.order_ref, self.name)
        ]
        return [v for v in views if v.working] if working_only else views

    def broker_position(self, symbol: str) -> float:
        """The account's position in ``symbol`` at the simulated IB."""
        spec = self.sim.broker.symbols.by_symbol(symbol)
        if spec is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        account = self.sim.broker.accounts.get(ACCOUNT)
        position = account.positions.get(spec.con_id) if account is not None else None
        return position.quantity if position is not None else 0.0

    def order_refs_sent(self) -> dict[str, int]:
        """How many orders IB received per orderRef: more than one is a duplicate."""
        counts: dict[str, int] = {}
        for view in self.broker_orders():
            counts[view.order_ref] = counts.get(view.order_ref, 0) + 1
        return counts

    # -- outages ---------------------------------------------------------------------------

    async def lose_gateway(self, which: str = PRIMARY) -> None:
        """The gateway's process dies (as a crashed container): its sessions drop at once and
        the supervisor's gate says LOST, so the strategy's safe state and failover run."""
        self.host.on_gate(which, Gate(open=False, kind=OutageKind.LOST, reason=f"{which} lost"))
        await self.sim.gateway(which).stop()

    def gateway_back(self, which: str = PRIMARY) -> None:
        """The supervisor reports the gateway ready again (its process must be running)."""
        self.host.on_gate(which, Gate(open=True))

    async def start_gateway(self, which: str = PRIMARY) -> None:
        """Start a stopped gateway again and log it in, then open its gate."""
        await self.sim.login(which)
        self.gateway_back(which)


def refs_sent_twice(counts: Mapping[str, int]) -> Sequence[str]:
    """The orderRefs IB received more than once (each is a duplicated order)."""
    return sorted(ref for ref, n in counts.items() if n > 1)
