"""One strategy's working orders, positions and the executions it has booked.

Positions and execution ids survive restarts in the strategy's kv store under ``_host``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ib_async import Contract, Trade

from plugins import api
from plugins.intents import IntentState, parent_of
from plugins.risk import RiskBook

__all__ = ["HOST_KV", "BookedOrder", "OrderBook"]


class KvRecords(Protocol):
    """Where the book keeps its record (:class:`plugins.host.kvcache.StrategyKv`)."""

    def get(self, name: str) -> Any | None: ...

    def set(self, name: str, value: Any) -> None: ...


HOST_KV = "_host"  # the host's own record in the strategy's kv store (positions, exec ids)
_EXECS_KEPT = 2000


@dataclass
class BookedOrder:
    """A working order of the strategy, as the host knows it."""

    key: str
    instrument: api.Instrument
    side: api.Side
    quantity: float
    limit_price: float | None
    con_id: int
    gateway: str
    status: IntentState = IntentState.PENDING_SEND
    filled: float = 0.0
    trade: Trade | None = None
    order_type: api.OrderType = api.OrderType.LIMIT
    stop_price: float | None = None
    #: A bracket exit's entry key (its sibling is the other exit: one cancels the other).
    parent: str | None = None

    def view(self) -> api.OrderView:
        return api.OrderView(
            key=self.key,
            instrument=self.instrument,
            side=self.side,
            quantity=self.quantity,
            limit_price=self.limit_price,
            status=self.status,
            filled=self.filled,
            gateway=self.gateway,
            order_type=self.order_type,
            stop_price=self.stop_price,
            parent=self.parent,
        )


class OrderBook:
    """Working orders (never terminal ones: risk checks walk them), positions per conId, the
    contracts and instruments seen, and the intents reconciliation could not find at IB."""

    def __init__(self, name: str, kv: KvRecords) -> None:
        self.name = name
        self._kv = kv
        self.orders: dict[str, BookedOrder] = {}
        self.positions: dict[int, float] = {}
        self.contracts: dict[int, Contract] = {}
        self.instruments: dict[int, api.Instrument] = {}
        self.seen_execs: list[str] = []
        self.unknown: set[str] = set()

    def load(self) -> None:
        """Positions and execution ids of earlier runs, from the strategy's records."""
        record = self._kv.get(HOST_KV) or {}
        self.positions = {int(k): float(v) for k, v in record.get("positions", {}).items()}
        self.seen_execs = list(record.get("execs", []))

    def save(self, *, now: Any = None) -> None:
        record = {
            "positions": {str(k): v for k, v in self.positions.items() if v != 0},
            "execs": self.seen_execs[-_EXECS_KEPT:],
        }
        self._kv.set(HOST_KV, record)

    def book_execution(self, exec_id: str, contract: Contract, side: str, shares: float) -> bool:
        """Add an execution to the position once; False when it was booked before."""
        if exec_id in self.seen_execs:
            return False
        self.seen_execs.append(exec_id)
        signed = float(shares) if side == "BOT" else -float(shares)
        con_id = contract.conId
        self.positions[con_id] = self.positions.get(con_id, 0.0) + signed
        self.contracts.setdefault(con_id, contract)
        return True

    def working(self) -> list[BookedOrder]:
        return [o for o in self.orders.values() if not o.status.terminal]

    def mine(self, key: str) -> BookedOrder:
        order = self.orders.get(key)
        if order is None or order.status.terminal:
            raise api.OrderRefused(
                api.RefusalReason.UNKNOWN_ORDER, f"strategy {self.name}: no open order {key!r}"
            )
        return order

    def drop_finished(self) -> None:
        for key in [k for k, o in self.orders.items() if o.status.terminal]:
            del self.orders[key]

    def risk_book(self, con_id: int) -> RiskBook:
        working = self.working()
        same = [o for o in working if o.con_id == con_id]
        # A bracket's two exits cancel each other: at most one of them can fill.
        exits: dict[str, float] = {}
        for o in same:
            if o.parent is not None:
                left = o.side.sign * (o.quantity - o.filled)
                exits[o.parent] = max(exits.get(o.parent, 0.0), left, key=abs)
        plain = [o for o in same if o.parent is None]
        return RiskBook(
            position=self.positions.get(con_id, 0.0),
            open_buy_quantity=sum(o.quantity - o.filled for o in plain if o.side is api.Side.BUY)
            + sum(q for q in exits.values() if q > 0),
            open_sell_quantity=sum(o.quantity - o.filled for o in plain if o.side is api.Side.SELL)
            + sum(-q for q in exits.values() if q < 0),
            open_orders=len(working),
        )

    def instrument_of(self, contract: Contract) -> api.Instrument:
        return self.instruments.get(contract.conId) or api.Instrument(contract.symbol)

    def position_of(self, instrument: api.Instrument, qualified: Contract | None) -> float:
        if qualified is not None:
            return self.positions.get(qualified.conId, 0.0)
        for con_id, known in self.instruments.items():
            if known == instrument:
                return self.positions.get(con_id, 0.0)
        return 0.0

    def flat(self) -> bool:
        return not any(abs(q) > 1e-9 for q in self.positions.values())

    def from_record(self, record: Any) -> BookedOrder:
        """A working order rebuilt from a journal intent (after a restart or failover)."""
        contract = record.contract
        order = record.order
        con_id = int(contract.get("conId") or 0)
        instrument = self.instruments.get(con_id) or api.Instrument(
            symbol=str(contract.get("symbol", "")),
            sec_type=str(contract.get("secType", "STK")),
            exchange=str(contract.get("exchange", "SMART")),
            currency=str(contract.get("currency", "USD")),
        )
        limit = order.get("lmtPrice")
        stop = order.get("auxPrice") if order.get("orderType") in ("STP", "STP LMT") else None
        return BookedOrder(
            key=record.key,
            instrument=instrument,
            side=api.Side(order.get("action", "BUY")),
            quantity=float(order.get("totalQuantity", 0.0)),
            limit_price=float(limit) if limit is not None else None,
            con_id=con_id,
            gateway=record.gateway,
            status=record.status,
            filled=record.filled,
            order_type=api.OrderType(order.get("orderType", "LMT" if limit is not None else "MKT")),
            stop_price=float(stop) if stop is not None else None,
            parent=parent_of(record.key),
        )
