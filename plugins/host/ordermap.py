"""From a strategy's :class:`~plugins.api.OrderSpec` to the ``ib_async`` ``Order`` IB gets, and
from an ``Order`` to the record the journal keeps of it.

IB's words: ``orderType`` MKT, LMT, STP, STP LMT, TRAIL; ``lmtPrice`` the limit, ``auxPrice``
the stop (or a trailing stop's amount), ``trailingPercent`` and ``trailStopPrice`` for trailing
stops; ``tif`` DAY/GTC/IOC; ``outsideRth``. A bracket is three orders linked at IB: the exits
carry the entry's ``parentId`` and share an ``ocaGroup`` (one fills, IB cancels the other), and
only the last of the three is transmitted, so IB activates all three together or none.
"""

from __future__ import annotations

from typing import Any

from ib_async import Order

from plugins import api

__all__ = [
    "BRACKET_OCA_TYPE",
    "bracket_orders",
    "link_bracket",
    "order_for",
    "order_record",
    "unset",
]

#: ocaType 1: cancel the other orders of the group (with block) when one fills.
BRACKET_OCA_TYPE = 1
_UNSET = Order().lmtPrice  # ib_async's UNSET_DOUBLE: a price not given


def unset(value: float | None) -> bool:
    """True for a price field IB should treat as not given."""
    return value is None or value == _UNSET


def order_for(spec: api.OrderSpec, account: str) -> Order:
    """The IB order for ``spec`` (no orderId or orderRef yet: the send gives them)."""
    order = Order(
        action=spec.side.value,
        totalQuantity=spec.quantity,
        orderType=spec.type.value,
        tif=spec.tif.value,
        account=account,
        outsideRth=spec.outside_rth,
    )
    kind = spec.type
    if kind in (api.OrderType.LIMIT, api.OrderType.STOP_LIMIT):
        assert spec.limit_price is not None
        order.lmtPrice = spec.limit_price
    if kind in (api.OrderType.STOP, api.OrderType.STOP_LIMIT):
        assert spec.stop_price is not None
        order.auxPrice = spec.stop_price
    if kind is api.OrderType.TRAILING_STOP:
        if spec.trail_amount is not None:
            order.auxPrice = spec.trail_amount
        else:
            assert spec.trail_percent is not None
            order.trailingPercent = spec.trail_percent
        if spec.stop_price is not None:
            order.trailStopPrice = spec.stop_price
    return order


def bracket_orders(
    entry: api.OrderSpec, *, take_profit: float, stop_loss: float, account: str
) -> tuple[Order, Order, Order]:
    """Entry, take-profit limit and stop-loss stop; the caller links ids and the OCA group
    (:func:`link_bracket` needs the entry's orderId and key first)."""
    exit_side = api.Side.SELL if entry.side is api.Side.BUY else api.Side.BUY
    tif, rth = entry.tif, entry.outside_rth
    tp = api.OrderSpec(
        entry.instrument, exit_side, entry.quantity, take_profit, tif, outside_rth=rth
    )
    sl = api.OrderSpec(
        entry.instrument, exit_side, entry.quantity, tif=tif, stop_price=stop_loss, outside_rth=rth
    )
    parent = order_for(entry, account)
    children = order_for(tp, account), order_for(sl, account)
    parent.transmit = False
    children[0].transmit = False
    children[1].transmit = True  # the last one sent releases the whole group at IB
    return parent, children[0], children[1]


def link_bracket(parent: Order, children: tuple[Order, Order]) -> None:
    """Children under the parent's orderId, in one OCA group named after its key."""
    for child in children:
        child.parentId = parent.orderId
        child.ocaGroup = parent.orderRef
        child.ocaType = BRACKET_OCA_TYPE


def order_record(order: Order, *, purpose: str) -> dict[str, Any]:
    """What the journal keeps of an order: enough to rebuild the strategy's view of it."""
    record: dict[str, Any] = {
        "action": order.action,
        "totalQuantity": order.totalQuantity,
        "orderType": order.orderType,
        "tif": order.tif,
        "purpose": purpose,
    }
    for name in ("lmtPrice", "auxPrice", "trailingPercent", "trailStopPrice"):
        value = getattr(order, name)
        if not unset(value):
            record[name] = value
    if order.outsideRth:
        record["outsideRth"] = True
    if order.parentId:
        record["parentId"] = order.parentId
    if order.ocaGroup:
        record["ocaGroup"] = order.ocaGroup
    return record
