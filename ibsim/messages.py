"""TWS API message ids, request parsers and reply encoders (server side). Pure.

Field orders follow the decoders of the installed ib_async 2.1 and ib_insync 0.9.86 clients
and /work/shared/reference/tws-protocol.md; each encoder names the version rules it obeys.
About 600 lines: one table of the protocol's layouts, read against the clients' decoders.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime

from ibsim.broker import Bar, BrokerOrder, Execution, OrderRequest, WhatIf
from ibsim.codec import UNSET_DOUBLE, FieldReader
from ibsim.contracts import ContractSpec

Fields = list[object]


class In(enum.IntEnum):
    """Client -> server message ids the simulator handles."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_POSITIONS_MULTI = 74
    CANCEL_POSITIONS_MULTI = 75
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99
    # market data, history and lookups (ibsim/api/market_data.py, historical.py, accounts.py)
    REQ_MATCHING_SYMBOLS = 81
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_MARKET_RULE = 91
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_HISTORICAL_TICKS = 96


class Out(enum.IntEnum):
    """Server -> client message ids the simulator sends."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    POSITION_MULTI = 71
    POSITION_MULTI_END = 72
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102
    RECEIVE_FA = 16
    SCANNER_PARAMETERS = 19
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    SOFT_DOLLAR_TIERS = 77
    FAMILY_CODES = 78
    SYMBOL_SAMPLES = 79
    MKT_DEPTH_EXCHANGES = 80
    NEWS_PROVIDERS = 85
    HISTORICAL_NEWS_END = 87
    HEAD_TIMESTAMP = 88
    MARKET_RULE = 93
    PNL = 94
    PNL_SINGLE = 95
    HISTORICAL_TICKS = 96
    HISTORICAL_TICKS_BID_ASK = 97
    HISTORICAL_TICKS_LAST = 98
    USER_INFO = 107


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


class ContractQuery:
    """The 12 contract fields every request carries (ib_async's contract formatter)."""

    __slots__ = (
        "con_id",
        "currency",
        "exchange",
        "last_trade_date",
        "local_symbol",
        "multiplier",
        "primary_exchange",
        "right",
        "sec_type",
        "strike",
        "symbol",
        "trading_class",
    )

    def __init__(self, reader: FieldReader) -> None:
        self.con_id = reader.int("conId")
        self.symbol = reader.str("symbol")
        self.sec_type = reader.str("secType")
        self.last_trade_date = reader.str("lastTradeDateOrContractMonth")
        self.strike = reader.float("strike")
        self.right = reader.str("right")
        self.multiplier = reader.str("multiplier")
        self.exchange = reader.str("exchange")
        self.primary_exchange = reader.str("primaryExchange")
        self.currency = reader.str("currency")
        self.local_symbol = reader.str("localSymbol")
        self.trading_class = reader.str("tradingClass")


def _opt_price(value: float) -> float | None:
    return None if value in (UNSET_DOUBLE, float("inf")) else value


def parse_place_order(fields: list[str], *, server_version: int) -> OrderRequest:
    """placeOrder (3): walk the fields up to whatIf; the rest does not change a fill."""
    r = FieldReader(fields, message="placeOrder")
    r.str("msgId")
    order_id = r.int("orderId")
    contract = ContractQuery(r)
    r.skip(2, "secIdType/secId")
    action = r.str("action")
    quantity = r.float("totalQuantity")
    order_type = r.str("orderType")
    lmt_raw = r.str("lmtPrice")
    aux_raw = r.str("auxPrice")
    tif = r.str("tif")
    oca_group = r.str("ocaGroup")
    account = r.str("account")
    r.skip(2, "openClose/origin")
    order_ref = r.str("orderRef")
    transmit = r.bool("transmit")
    parent_id = r.int("parentId")
    r.skip(3, "blockOrder..displaySize")
    trigger_method = r.int("triggerMethod")
    outside_rth = r.bool("outsideRth")
    r.skip(1, "hidden")
    if contract.sec_type == "BAG":
        legs = r.int("comboLegs")
        r.skip(legs * 8, "comboLeg")
        r.skip(r.int("orderComboLegs"), "orderComboLeg")
        r.skip(r.int("smartComboRoutingParams") * 2, "smartComboRoutingParam")
    r.skip(7, "''..faPercentage")
    if server_version < 177:
        r.skip(1, "faProfile")
    r.skip(4, "modelCode..exemptCode")
    oca_type = r.int("ocaType")
    r.skip(17, "rule80A..volatilityType")
    dn_type = r.str("deltaNeutralOrderType")
    r.skip(1, "deltaNeutralAuxPrice")
    if dn_type:
        r.skip(8, "deltaNeutral")
    r.skip(2, "continuousUpdate..referencePriceType")
    trail_stop_raw = r.str("trailStopPrice")
    trailing_percent_raw = r.str("trailingPercent")
    r.skip(2, "scaleInitLevelSize..scaleSubsLevelSize")
    increment = r.float("scalePriceIncrement", UNSET_DOUBLE)
    if 0 < increment < UNSET_DOUBLE:
        r.skip(7, "scale")
    r.skip(3, "scaleTable..activeStopTime")
    if r.str("hedgeType"):
        r.skip(1, "hedgeParam")
    r.skip(4, "optOutSmartRouting..notHeld")
    if r.bool("deltaNeutralContract"):
        r.skip(3, "deltaNeutralContract")
    if r.str("algoStrategy"):
        r.skip(r.int("algoParams") * 2, "algoParam")
    r.skip(1, "algoId")
    what_if = r.bool("whatIf")

    def price(raw: str, name: str) -> float | None:
        if raw == "":
            return None
        return _opt_price(FieldReader([raw], message="placeOrder").float(name))

    return OrderRequest(
        order_id=order_id,
        con_id=contract.con_id,
        symbol=contract.symbol,
        sec_type=contract.sec_type,
        exchange=contract.exchange,
        currency=contract.currency,
        local_symbol=contract.local_symbol,
        last_trade_date=contract.last_trade_date,
        action=action.upper(),
        total_quantity=quantity,
        order_type=order_type.upper(),
        lmt_price=price(lmt_raw, "lmtPrice"),
        aux_price=price(aux_raw, "auxPrice"),
        tif=tif,
        oca_group=oca_group,
        oca_type=oca_type,
        account=account,
        order_ref=order_ref,
        transmit=transmit,
        parent_id=parent_id,
        what_if=what_if,
        trail_stop_price=price(trail_stop_raw, "trailStopPrice"),
        trailing_percent=price(trailing_percent_raw, "trailingPercent"),
        outside_rth=outside_rth,
        trigger_method=trigger_method,
    )


# ---------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------


def error(req_id: int, code: int, message: str, *, server_version: int) -> Fields:
    """err (4): >=166 carries advancedOrderRejectJson (mandatory, may be empty)."""
    fields: Fields = [Out.ERR_MSG, 2, req_id, code, message]
    if server_version >= 166:
        fields.append("")
    return fields


def _contract_short(spec: ContractSpec, *, with_exchange: bool = True) -> Fields:
    """conId..tradingClass as position/execDetails/openOrder carry them."""
    fields: Fields = [
        spec.con_id,
        spec.symbol,
        spec.sec_type,
        spec.last_trade_date,
        0.0,
        "",
        spec.multiplier,
    ]
    if with_exchange:
        fields.append(spec.exchange)
    fields += [spec.currency, spec.local_symbol, spec.trading_class]
    return fields


def contract_details(
    req_id: int,
    spec: ContractSpec,
    *,
    server_version: int,
    hours: tuple[str, str] = ("", ""),
    market_rule: int = 26,
) -> Fields:
    """contractData (10): <164 has a version field and mdSizeMultiplier; 163 adds one field.
    ``hours`` are (tradingHours, liquidHours) in IB's ``yyyymmdd:hhmm-yyyymmdd:hhmm`` form."""
    fields: Fields = [Out.CONTRACT_DATA]
    if server_version < 164:
        fields.append(8)
    fields += [
        req_id,
        spec.symbol,
        spec.sec_type,
        spec.last_trade_date,
        0.0,
        "",
        spec.exchange,
        spec.currency,
        spec.local_symbol,
        spec.market_name,
        spec.trading_class,
        spec.con_id,
        spec.min_tick,
    ]
    if server_version < 164:
        fields.append(1)  # mdSizeMultiplier
    fields += [
        spec.multiplier,
        "ACTIVETIM,AD,ALERT,ALLOC,AVGCOST,BASKET,DAY,GTC,LMT,MKT,STP,STPLMT,TRAIL,WHATIF",
        spec.valid_exchanges,
        1,
        0,
        spec.long_name,
        spec.primary_exchange,
        spec.last_trade_date[:6],
        spec.industry,
        "",
        "",
        spec.time_zone,
        hours[0],
        hours[1],
        "",
        "",
        0,  # evRule, evMultiplier, numSecIds
        1,
        "",
        "",
        ",".join([str(market_rule)] * len(spec.valid_exchanges.split(","))),
        spec.last_trade_date,
        "COMMON" if spec.sec_type == "STK" else "",
    ]
    if server_version == 163:
        fields.append(spec.size_increment)  # sizeMinTick
    if server_version >= 164:
        fields += [spec.min_size, spec.size_increment, spec.suggested_size_increment]
    return fields


def _opt(value: float | None) -> object:
    return "" if value is None else value


def _oca_type(order: BrokerOrder) -> int:
    """ocaType as IB echoes it: the client's, or 3 (IB's default) for a group without one."""
    if not order.oca_group:
        return 0
    return order.oca_type or 3


def _order_head(order: BrokerOrder) -> Fields:
    return [
        order.action,
        order.total_quantity,
        order.order_type,
        order.lmt_price if order.lmt_price is not None else UNSET_DOUBLE,
        order.aux_price if order.aux_price is not None else UNSET_DOUBLE,
        order.tif,
        order.oca_group,
        order.account,
        "O",
        0,
        order.order_ref,
    ]


def open_order(
    order: BrokerOrder,
    *,
    server_version: int,
    what_if: WhatIf | None = None,
    order_id: int | None = None,
) -> Fields:
    """openOrder (5): <177 carries faProfile; >=159/160/162/170 add trailing fields."""
    spec = order.contract
    fields: Fields = [Out.OPEN_ORDER, order.order_id if order_id is None else order_id]
    fields += _contract_short(spec)
    fields += _order_head(order)
    fields += [order.client_id, order.perm_id, int(order.outside_rth), 0, 0.0, "", "", "", "", ""]
    if server_version < 177:
        fields.append("")  # faProfile
    fields += [
        "",
        "",
        "",
        "",
        "",
        0,
        "",
        -1,  # modelCode..exemptCode (8 fields)
        0,
        "",
        "",
        "",
        "",
        "",
        0,  # auctionStrategy..stockRangeUpper, displaySize
        0,
        0,
        0,
        "",
        _oca_type(order),
        0,
        0,
        "",  # blockOrder..nbboPriceCap
        order.parent_id,
        order.trigger_method,
        "",
        0,
        "",
        "",  # parentId, triggerMethod, volatility, volatilityType, dnType, dnAux
        0,
        0,
        _opt(order.trail_stop_price),
        _opt(order.trailing_percent),
        "",
        "",
        "",  # continuousUpdate..basisPointsType, comboLegsDescrip
        0,
        0,
        0,  # comboLegs, orderComboLegs, smartComboRoutingParams
        "",
        "",
        "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        0,
        "",
        "",
        0,
        0,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dnc
        "",  # algoStrategy
        0,
        1 if what_if else 0,  # solicited, whatIf
    ]
    if what_if is not None:
        fields += [
            "PreSubmitted",
            what_if.init_margin_before,
            what_if.maint_margin_before,
            what_if.equity_with_loan_before,
            what_if.init_margin_change,
            what_if.maint_margin_change,
            what_if.equity_with_loan_change,
            what_if.init_margin_after,
            what_if.maint_margin_after,
            what_if.equity_with_loan_after,
            what_if.commission,
            what_if.min_commission,
            what_if.max_commission,
            what_if.currency,
            "",
        ]
    else:
        fields += [order.status.value] + [""] * 9 + [UNSET_DOUBLE] * 3 + ["", ""]
    fields += [0, 0]  # randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += [
        "",
        "",
        _opt(order.trail_stop_price),  # read again here: the last value wins in the clients
        "",
        "",
        "",
        "",
        0,  # adjustedOrderType..adjustableTrailingUnit
        "",
        "",
        "",  # softDollarTier
        "",
        0,
        0,
        0,
        "",  # cashQty..usePriceMgmtAlgo (5 fields)
    ]
    if server_version >= 159:
        fields.append(0)  # duration
    if server_version >= 160:
        fields.append(0)  # postToAts
    if server_version >= 162:
        fields.append(0)  # autoCancelParent
    if server_version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def completed_order(order: BrokerOrder, *, server_version: int) -> Fields:
    """completedOrder (101): no orderId/clientId; ends with completedTime and status."""
    spec = order.contract
    fields: Fields = [Out.COMPLETED_ORDER]
    fields += _contract_short(spec)
    fields += _order_head(order)
    fields += [order.perm_id, int(order.outside_rth), 0, 0.0, "", "", "", ""]
    if server_version < 177:
        fields.append("")
    fields += [
        "",
        "",
        "",
        "",
        "",
        0,
        "",
        -1,  # modelCode..exemptCode
        "",
        "",
        "",
        "",
        "",
        0,  # startingPrice..displaySize
        0,
        0,
        0,
        _oca_type(order),
        order.trigger_method,
        "",
        0,
        "",
        "",  # sweepToFill..dnAux
        0,
        0,
        _opt(order.trail_stop_price),
        _opt(order.trailing_percent),
        "",  # continuousUpdate..comboLegsDescrip (5 fields)
        0,
        0,
        0,
        "",
        "",
        "",
        "",  # hedgeType
        "",
        "",
        0,
        0,  # clearingAccount, clearingIntent, notHeld, dnc
        "",  # algoStrategy
        0,
        order.status.value,
        0,
        0,  # solicited, status, randomizeSize, randomizePrice
        0,  # conditions
        _opt(order.trail_stop_price),
        "",
        "",
        0,
        0,
        "",
        order.filled,
        0,
        0,
        "",
        0,
        0,  # trailStopPrice..routeMarketableToBbo
        order.parent_perm_id,
        (order.completed_at or order.created_at).strftime("%Y%m%d %H:%M:%S"),
        order.status.value,
    ]
    if server_version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def order_status(order: BrokerOrder) -> Fields:
    """orderStatus (3): no version field at these server versions; clientId keys the trade."""
    return [
        Out.ORDER_STATUS,
        order.order_id,
        order.status.value,
        order.filled,
        order.remaining,
        order.avg_fill_price,
        order.perm_id,
        order.parent_id,
        order.last_fill_price,
        order.client_id,
        "",
        0.0,
    ]


def exec_details(
    req_id: int, execution: Execution, spec: ContractSpec, *, server_version: int
) -> Fields:
    """execDetails (11): >=178 adds pendingPriceRevision (ib_insync unpacks by length)."""
    fields: Fields = [Out.EXECUTION_DATA, req_id, execution.order_id]
    fields += _contract_short(spec)
    fields += [
        execution.exec_id,
        execution.time.strftime("%Y%m%d %H:%M:%S") + " UTC",
        execution.account,
        spec.exchange,
        execution.side,
        execution.shares,
        execution.price,
        execution.perm_id,
        execution.client_id,
        0,
        execution.cum_qty,
        execution.avg_price,
        execution.order_ref,
        "",
        "",
        "",
        1,
    ]
    if server_version >= 178:
        fields.append(0)
    return fields


def commission_report(execution: Execution) -> Fields:
    """commissionReport (59): realizedPNL/yield unset as IB sends them for opening fills."""
    return [
        Out.COMMISSION_REPORT,
        1,
        execution.exec_id,
        execution.commission,
        execution.currency,
        UNSET_DOUBLE,
        UNSET_DOUBLE,
        "",
    ]


def position(account: str, spec: ContractSpec, quantity: float, avg_cost: float) -> Fields:
    """position (61), version 3."""
    return [Out.POSITION_DATA, 3, account, *_contract_short(spec), quantity, avg_cost]


def portfolio_value(
    account: str,
    spec: ContractSpec,
    quantity: float,
    price: float,
    avg_cost: float,
    realized: float,
) -> Fields:
    """updatePortfolio (7), version 8: primaryExchange instead of exchange."""
    multiplier = float(spec.multiplier or 1)
    value = quantity * price * multiplier
    return [
        Out.PORTFOLIO_VALUE,
        8,
        spec.con_id,
        spec.symbol,
        spec.sec_type,
        spec.last_trade_date,
        0.0,
        "",
        spec.multiplier,
        spec.primary_exchange,
        spec.currency,
        spec.local_symbol,
        spec.trading_class,
        quantity,
        price,
        round(value, 2),
        avg_cost,
        round(value - avg_cost * quantity, 2),
        round(realized, 2),
        account,
    ]


def historical_data(req_id: int, bars: Sequence[Bar], start: str, end: str) -> Fields:
    """historicalData (17): no version field; bars are date, OHLC, volume, wap, count."""
    fields: Fields = [Out.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.count]
    return fields


def connection_time(now: datetime) -> str:
    """The handshake's second field: ``yyyymmdd hh:mm:ss TZ``."""
    return now.strftime("%Y%m%d %H:%M:%S") + " UTC"
