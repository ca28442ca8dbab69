"""API requests about instruments and prices: contract details, market data lines (and their
entitlement), the market data type, historical bars."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ibsim import messages
from ibsim.broker import Bar
from ibsim.codec import FieldReader, ProtocolError
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


async def _contract_details(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqContractDetails")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    specs = await s.contracts(q)
    if not specs:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    for spec in specs:
        s.send(messages.contract_details(req_id, spec, server_version=s.version))
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


_BAR_SECONDS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 604_800,
    "weeks": 604_800,
    "month": 2_592_000,
    "months": 2_592_000,
}
_DURATION_SECONDS = {"S": 1, "D": 86_400, "W": 604_800, "M": 2_592_000, "Y": 31_536_000}


def bar_count(duration: str, bar_size: str) -> tuple[int, int]:
    """(number of bars, seconds per bar) for IB's duration and bar size strings."""
    amount, _, unit = duration.strip().partition(" ")
    size, _, size_unit = bar_size.strip().partition(" ")
    try:
        total = int(amount) * _DURATION_SECONDS[unit.strip().upper()]
        seconds = int(size) * _BAR_SECONDS[size_unit.strip().lower()]
    except (KeyError, ValueError):
        raise ProtocolError(
            f"reqHistoricalData: bad duration {duration!r} or bar size {bar_size!r}"
        ) from None
    if unit.strip().upper() == "D" and seconds < 86_400:
        total = int(amount) * 6 * 3600 + 1800  # one regular trading day is 6.5 hours
    return max(1, min(total // seconds, 5000)), seconds


async def _historical_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqHistoricalData")
    r.str("msgId")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    r.str("includeExpired")
    end_text = r.str("endDateTime")
    bar_size = r.str("barSizeSetting")
    duration = r.str("durationStr")
    r.str("useRTH")
    r.str("whatToShow")
    format_date = r.int("formatDate", 1)
    spec = await s.resolve(q)
    if spec is None:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    if not s.gw.hmds_farm_ok:
        s.send_error(
            req_id, 162, "Historical Market Data Service error message:HMDS query returned no data"
        )
        return
    try:
        count, seconds = bar_count(duration, bar_size)
    except ProtocolError as exc:
        s.send_error(req_id, 321, f"Error validating request.-'bP' : cause - {exc}")
        return
    end = await s.gw.broker.now()
    if end_text:
        with contextlib.suppress(ValueError):
            end = datetime.strptime(end_text[:17].replace("-", " "), "%Y%m%d %H:%M:%S").replace(
                tzinfo=UTC
            )
    bars = await s.gw.broker.historical_bars(
        con_id=spec.con_id, count=count, bar_seconds=seconds, end=end
    )
    if format_date != 2 and seconds < 86_400:
        bars = [
            _replace_date(
                b, datetime.fromtimestamp(int(b.date), UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"
            )
            for b in bars
        ]
    start = end - timedelta(seconds=count * seconds)
    s.send(
        messages.historical_data(
            req_id, bars, start.strftime("%Y%m%d %H:%M:%S"), end.strftime("%Y%m%d %H:%M:%S")
        )
    )


def _replace_date(bar: Bar, date: str) -> Bar:
    return dataclasses.replace(bar, date=date)


HANDLERS: dict[int, Handler] = {
    In.REQ_CONTRACT_DATA: _contract_details,
    In.REQ_MKT_DATA: _mkt_data,
    In.CANCEL_MKT_DATA: _cancel_mkt_data,
    In.REQ_MARKET_DATA_TYPE: _market_data_type,
    In.REQ_HISTORICAL_DATA: _historical_data,
}
