"""API requests to IB's historical data service: bars, the head timestamp, historical ticks,
all behind IB's historical pacing rules (:mod:`ibsim.pacing`, per Gateway session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ibsim import history, messages
from ibsim.codec import FieldReader
from ibsim.contracts import ContractSpec
from ibsim.history import HistoryError
from ibsim.messages import In, Out
from ibsim.pacing import HistKey

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession, Handler

NO_DATA = "Historical Market Data Service error message:HMDS query returned no data"


async def _spec_or_error(
    s: ApiSession, req_id: int, q: messages.ContractQuery
) -> ContractSpec | None:
    spec = await s.resolve(q)
    if spec is None:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return None
    if not s.gw.hmds_farm_ok:
        s.send_error(req_id, 162, NO_DATA)
        return None
    return spec


async def _now(s: ApiSession) -> datetime:
    """The broker's clock moved by this gateway's clock fault: pacing needs no real waiting."""
    return await s.gw.broker.now() + timedelta(seconds=s.gw.clock_offset)


def _bar_date(spec: ContractSpec, bar_date: str, *, format_date: int, intraday: bool) -> str:
    if not intraday or format_date == 2:
        return bar_date
    zone = spec.time_zone
    local = datetime.fromtimestamp(int(bar_date), ZoneInfo(zone))
    return f"{local:%Y%m%d %H:%M:%S} {zone}"


async def _historical_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqHistoricalData")
    r.str("msgId")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    r.str("includeExpired")
    end_text = r.str("endDateTime")
    bar_size = r.str("barSizeSetting")
    duration = r.str("durationStr")
    rth = r.bool("useRTH")
    what = r.str("whatToShow")
    format_date = r.int("formatDate", 1)
    if q.sec_type == "BAG":
        r.skip(r.int("comboLegs") * 4, "comboLeg")
    keep_up_to_date = r.bool("keepUpToDate") if r.remaining else False
    spec = await _spec_or_error(s, req_id, q)
    if spec is None:
        return
    now = await _now(s)
    try:
        if keep_up_to_date and end_text:
            raise HistoryError(
                321,
                "Error validating request.-'bK' : cause - End date not supported with live updates",
            )
        end = history.parse_end(end_text, now)
        history.parse_bar_size(bar_size)
        history.parse_duration(duration)
    except HistoryError as exc:
        s.send_error(req_id, exc.code, exc.text)
        return
    key = HistKey(
        con_id=spec.con_id,
        exchange=q.exchange or spec.exchange,
        what_to_show=what.upper(),
        params=(end_text, duration, bar_size, str(rth), str(format_date), str(keep_up_to_date)),
    )
    violation = s.gw.hist_pacing.check(key, now.timestamp())
    if violation is not None:
        s.send_error(req_id, violation.code, violation.text)
        return
    last = s.gw.broker.prices().get(spec.con_id, spec.start_price)
    try:
        bars = history.bars(
            spec,
            end=end,
            duration=duration,
            bar_size=bar_size,
            what_to_show=what,
            rth=rth,
            last=last,
        )
    except HistoryError as exc:
        s.send_error(req_id, exc.code, exc.text)
        return
    if not bars:
        s.send_error(req_id, 162, f"{NO_DATA}: {spec.local_symbol}@{spec.exchange} {what}")
        return
    intraday = history.parse_bar_size(bar_size) < 86_400
    dated = [
        bar.__class__(
            date=_bar_date(spec, bar.date, format_date=format_date, intraday=intraday),
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            wap=bar.wap,
            count=bar.count,
        )
        for bar in bars
    ]
    start = datetime.fromtimestamp(int(bars[0].date), UTC) if intraday else end
    s.send(
        messages.historical_data(
            req_id, dated, start.strftime("%Y%m%d %H:%M:%S"), end.strftime("%Y%m%d %H:%M:%S")
        )
    )


async def _head_timestamp(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqHeadTimeStamp")
    r.str("msgId")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    r.str("includeExpired")
    r.str("useRTH")
    what = r.str("whatToShow").upper()
    format_date = r.int("formatDate", 1)
    spec = await _spec_or_error(s, req_id, q)
    if spec is None:
        return
    if spec.sec_type == "CASH" and what == "TRADES":
        s.send_error(
            req_id,
            162,
            "Historical Market Data Service error message:No head time stamp for "
            f"{spec.local_symbol}@{spec.exchange} {what}",
        )
        return
    s.send([Out.HEAD_TIMESTAMP, req_id, history.head_timestamp(spec, format_date=format_date)])


async def _historical_ticks(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqHistoricalTicks")
    r.str("msgId")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    r.str("includeExpired")
    start_text = r.str("startDateTime")
    end_text = r.str("endDateTime")
    count = r.int("numberOfTicks")
    what = r.str("whatToShow").upper()
    rth = r.bool("useRth")
    spec = await _spec_or_error(s, req_id, q)
    if spec is None:
        return
    now = await _now(s)
    try:
        if not start_text and not end_text:
            raise HistoryError(
                321,
                "Error validating request.-'bK' : cause - Exactly one of start time and end "
                "time has to be defined",
            )
        start = history.parse_end(start_text, now) if start_text else None
        end = history.parse_end(end_text, now) if end_text else None
        found = history.ticks(
            spec,
            start=start,
            end=end,
            count=count,
            what_to_show=what,
            rth=rth,
            last=s.gw.broker.prices().get(spec.con_id, spec.start_price),
            now=now,
        )
    except HistoryError as exc:
        s.send_error(req_id, exc.code, exc.text)
        return
    body: list[object] = []
    if what == "TRADES":
        for t in found:
            body += [t.time, 0, t.price, t.size, spec.primary_exchange or spec.exchange, ""]
        s.send([Out.HISTORICAL_TICKS_LAST, req_id, len(found), *body, 1])
    elif what == "BID_ASK":
        for t in found:
            body += [t.time, 0, t.bid, t.ask, t.bid_size, t.ask_size]
        s.send([Out.HISTORICAL_TICKS_BID_ASK, req_id, len(found), *body, 1])
    else:
        for t in found:
            body += [t.time, "", t.price, 0]
        s.send([Out.HISTORICAL_TICKS, req_id, len(found), *body, 1])


async def _cancel(s: ApiSession, fields: list[str]) -> None:
    """Cancels of requests answered at once: nothing left to stop, and IB says nothing."""


HANDLERS: dict[int, Handler] = {
    In.REQ_HISTORICAL_DATA: _historical_data,
    In.CANCEL_HISTORICAL_DATA: _cancel,
    In.REQ_HEAD_TIMESTAMP: _head_timestamp,
    In.CANCEL_HEAD_TIMESTAMP: _cancel,
    In.REQ_HISTORICAL_TICKS: _historical_ticks,
}
