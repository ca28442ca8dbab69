"""API requests about orders: open and completed orders, executions, placing (and what-if),
cancelling, the global cancel."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ibsim import messages
from ibsim.broker import BrokerOrder, OrderRequest, OrderState, Reject, WhatIf
from ibsim.codec import FieldReader
from ibsim.contracts import ContractSpec
from ibsim.messages import In, Out
from ibsim.orderdesk import order_from_request

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession, Handler


def _send_open(s: ApiSession, order: BrokerOrder) -> None:
    s.watching.add(order.perm_id)
    s.send(messages.open_order(order, server_version=s.version))
    s.send(messages.order_status(order))


async def _open_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.open_orders(accounts=s.accounts):
        mine = order.gateway == s.gw.name and order.client_id == s.client_id
        if mine or s.client_id == 0:
            _send_open(s, order)
    s.send([Out.OPEN_ORDER_END, 1])


async def _all_open_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.open_orders(accounts=s.accounts):
        _send_open(s, order)
    s.send([Out.OPEN_ORDER_END, 1])


async def _auto_open_orders(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAutoOpenOrders")
    r.skip(2, "msgId/version")
    s.auto_open = r.bool("bAutoBind")


async def _completed_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.completed_orders(accounts=s.accounts):
        s.send(messages.completed_order(order, server_version=s.version))
    s.send([Out.COMPLETED_ORDERS_END])


async def _executions(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqExecutions")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    client_id = r.opt_str("clientId")
    account = r.opt_str("acctCode")
    since = r.opt_str("time")
    symbol = r.opt_str("symbol")
    sec_type = r.opt_str("secType")
    exchange = r.opt_str("exchange")
    side = r.opt_str("side")
    after: datetime | None = None
    if since:
        with contextlib.suppress(ValueError):
            after = datetime.strptime(since[:17].replace("-", " "), "%Y%m%d %H:%M:%S").replace(
                tzinfo=UTC
            )
    sent = []
    for ex in await s.gw.broker.executions(accounts=s.accounts):
        order_spec = await s.contract_of(ex.con_id)
        if order_spec is None:
            continue
        if client_id not in ("", "0") and str(ex.client_id) != client_id:
            continue
        if account and ex.account != account:
            continue
        if after is not None and ex.time < after:
            continue
        if symbol and order_spec.symbol != symbol.upper():
            continue
        if sec_type and order_spec.sec_type != sec_type.upper():
            continue
        if exchange and order_spec.exchange != exchange.upper():
            continue
        if side and not _side_matches(side, ex.side):
            continue
        s.send(messages.exec_details(req_id, ex, order_spec, server_version=s.version))
        sent.append(ex)
    s.send([Out.EXECUTION_DATA_END, 1, req_id])
    for ex in sent:
        s.send(messages.commission_report(ex))


def _side_matches(wanted: str, side: str) -> bool:
    wanted = wanted.upper()
    return (
        side == wanted
        or (wanted == "BUY" and side == "BOT")
        or (wanted == "SELL" and side == "SLD")
    )


def _order_stub(request: OrderRequest, spec: ContractSpec, s: ApiSession) -> BrokerOrder:
    """A BrokerOrder-shaped view of a what-if request, for the openOrder layout."""
    assert s.client_id is not None
    return order_from_request(
        request,
        perm_id=0,
        gateway=s.gw.name,
        client_id=s.client_id,
        account=request.account or (s.accounts[0] if s.accounts else ""),
        contract=spec,
        parent_perm_id=0,
        status=OrderState.PRE_SUBMITTED,
        now=datetime.now(UTC),
    )


async def _place_order(s: ApiSession, fields: list[str]) -> None:
    request = messages.parse_place_order(fields, server_version=s.version)
    assert s.client_id is not None
    if s.gw.config.read_only:
        s.send_error(
            request.order_id,
            321,
            "Error validating request.-'bN' : cause - "
            "The API interface is currently in Read-Only mode.",
        )
        return
    if request.what_if:
        result = await s.gw.broker.what_if(request=request, accounts=s.accounts)
        if isinstance(result, Reject):
            s.send_error(request.order_id, result.code, result.message)
            return
        assert isinstance(result, WhatIf)
        specs = await s.gw.broker.contracts(
            query={
                "con_id": request.con_id,
                "symbol": request.symbol,
                "sec_type": request.sec_type,
                "currency": request.currency,
                "exchange": request.exchange,
                "local_symbol": request.local_symbol,
            }
        )
        stub = _order_stub(request, specs[0], s)
        s.send(messages.open_order(stub, server_version=s.version, what_if=result))
        return
    placed = await s.gw.broker.place_order(
        gateway=s.gw.name, client_id=s.client_id, request=request, accounts=s.accounts
    )
    if isinstance(placed, Reject):
        s.send_error(request.order_id, placed.code, placed.message)
    else:
        s.remember([placed.contract])


async def _cancel_order(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="cancelOrder")
    r.skip(2, "msgId/version")
    order_id = r.int("orderId")
    assert s.client_id is not None
    result = await s.gw.broker.cancel_order(
        gateway=s.gw.name, client_id=s.client_id, order_id=order_id, accounts=s.accounts
    )
    if isinstance(result, Reject):
        s.send_error(order_id, result.code, result.message)
    elif result.perm_id not in s.watching and not (
        result.gateway == s.gw.name and result.client_id == s.client_id
    ):
        # The canceller learnt of this order elsewhere; tell it the outcome too.
        s.watching.add(result.perm_id)
        s.send(messages.order_status(result))


async def _global_cancel(s: ApiSession, fields: list[str]) -> None:
    await s.gw.broker.global_cancel(accounts=s.accounts)


HANDLERS: dict[int, Handler] = {
    In.REQ_OPEN_ORDERS: _open_orders,
    In.REQ_ALL_OPEN_ORDERS: _all_open_orders,
    In.REQ_AUTO_OPEN_ORDERS: _auto_open_orders,
    In.REQ_COMPLETED_ORDERS: _completed_orders,
    In.REQ_EXECUTIONS: _executions,
    In.PLACE_ORDER: _place_order,
    In.CANCEL_ORDER: _cancel_order,
    In.REQ_GLOBAL_CANCEL: _global_cancel,
}
