"""API requests about instruments and prices: contract details, symbol search, market rules,
market data lines (and their entitlement), the market data type. History is in
:mod:`ibsim.api.historical`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ibsim import history, messages, sessions
from ibsim.codec import FieldReader
from ibsim.contracts import ContractSpec
from ibsim.messages import In, Out

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession, Handler


@dataclass(slots=True)
class Subscription:
    """One market-data line of a client."""

    req_id: int
    spec: ContractSpec
    delayed: bool
    snapshot: bool
    high: float = 0.0  # the session's high and low so far (ticks 6/7 when they move)
    low: float = 0.0


async def _contract_details(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqContractDetails")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    specs = await s.contracts(q)
    if not specs:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    now = await s.gw.broker.now()
    for spec in specs:
        hours = (
            sessions.trading_hours(spec, now, rth=False),
            sessions.trading_hours(spec, now, rth=True),
        )
        rule = MARKET_RULES.get(spec.min_tick, 26)
        s.send(
            messages.contract_details(
                req_id, spec, server_version=s.version, hours=hours, market_rule=rule
            )
        )
    s.send([Out.CONTRACT_DATA_END, 1, req_id])


async def _mkt_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMktData")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    if q.sec_type == "BAG":
        r.skip(r.int("comboLegs") * 4, "comboLeg")
    if r.bool("deltaNeutralContract"):
        r.skip(3, "deltaNeutralContract")
    r.str("genericTickList")
    snapshot = r.bool("snapshot")
    spec = await s.resolve(q)
    if spec is None:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    entitlement = s.gw.market_data
    if entitlement == "none":
        s.send_error(
            req_id,
            354,
            "Requested market data is not subscribed.Delayed market data is not available.",
        )
        return
    # As at IB: a user with the subscription gets live data whatever type was asked for (type 3
    # means "delayed where live is not permitted"); one without it gets delayed data only if it
    # asked for delayed (3 or 4), and error 354 otherwise.
    delayed = entitlement == "delayed"
    if delayed and s.md_type not in (3, 4):
        s.send_error(
            req_id,
            354,
            "Requested market data is not subscribed. Delayed market data is available.",
        )
        return
    if entitlement == "delayed":
        s.send_error(
            req_id,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
        )
    s.send([Out.MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1])
    sub = Subscription(req_id=req_id, spec=spec, delayed=delayed, snapshot=snapshot)
    await s.first_ticks(sub)
    if snapshot:
        s.send([Out.TICK_SNAPSHOT_END, 1, req_id])
        return
    s.subscriptions[req_id] = sub
    s.ensure_ticker()


async def _cancel_mkt_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="cancelMktData")
    r.skip(2, "msgId/version")
    s.subscriptions.pop(r.int("reqId"), None)


async def _market_data_type(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMarketDataType")
    r.skip(2, "msgId/version")
    s.md_type = r.int("marketDataType", 1)


def day_stats(spec: ContractSpec, price: float, now: datetime) -> tuple[float, float, float]:
    """(high, low, previous close) of the current session, consistent with the daily bars
    reqHistoricalData answers at this price."""
    what = "MIDPOINT" if spec.sec_type == "CASH" else "TRADES"
    try:
        daily = history.bars(
            spec, end=now, duration="2 D", bar_size="1 day", what_to_show=what, rth=True, last=price
        )
    except history.HistoryError:
        daily = []
    if len(daily) < 2:
        return price, price, price
    today, before = daily[-1], daily[-2]
    return max(today.high, price), min(today.low, price), before.close


# marketRuleIds as contract details give them, by minimum tick (IB's ids for these grids).
MARKET_RULES = {0.01: 26, 0.00005: 239, 0.005: 240, 0.25: 32}


async def _market_rule(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMarketRule")
    r.str("msgId")
    rule_id = r.int("marketRuleId")
    ticks = [tick for tick, rule in MARKET_RULES.items() if rule == rule_id]
    # An unknown rule id: IB's answer is an empty rule, which ends ib_async's wait too.
    s.send([Out.MARKET_RULE, rule_id, len(ticks), *[v for t in ticks for v in (0, t)]])


async def _matching_symbols(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMatchingSymbols")
    r.str("msgId")
    req_id = r.int("reqId")
    pattern = r.str("pattern")
    found = await s.gw.broker.contracts(query={"pattern": pattern})
    s.remember(found)
    body: list[object] = []
    for spec in found:
        derivatives = ["CFD", "OPT", "IOPT", "WAR"] if spec.sec_type == "STK" else []
        body += [
            spec.con_id,
            spec.symbol,
            spec.sec_type,
            spec.primary_exchange or spec.exchange,
            spec.currency,
            len(derivatives),
            *derivatives,
        ]
        if s.version >= 176:
            body += [spec.long_name, ""]
    s.send([Out.SYMBOL_SAMPLES, req_id, len(found), *body])


HANDLERS: dict[int, Handler] = {
    In.REQ_CONTRACT_DATA: _contract_details,
    In.REQ_MKT_DATA: _mkt_data,
    In.CANCEL_MKT_DATA: _cancel_mkt_data,
    In.REQ_MARKET_DATA_TYPE: _market_data_type,
    In.REQ_MATCHING_SYMBOLS: _matching_symbols,
    In.REQ_MARKET_RULE: _market_rule,
}
