"""Every request the simulator does not model still gets an answer, never silence.

- Lookups IB answers with a list (news providers, depth exchanges, family codes, scanner
  parameters, soft-dollar tiers, option chains of a stock with none, historical news, user
  info, FA data) get IB's message with nothing in it: ib_async awaits these by name, and an
  empty list is what IB sends an account without the data.
- Requests with a reqId get an error with that reqId, IB's code for the case (one ib_async
  does not treat as a warning, so its awaiting call ends at once), and a text that says the
  simulator does not model the feature.
- Cancels and subscriptions IB itself never answers (news bulletins, the server log level)
  stay unanswered, as at IB. Any other message id gets error 321 with reqId -1: the
  connection is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibsim.codec import FieldReader
from ibsim.messages import Out

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession

log = logging.getLogger(__name__)

NOT_MODELLED = "(the simulator does not model {what})"


@dataclass(frozen=True, slots=True)
class Refusal:
    """IB's error for one request: where its reqId is, the code, the text."""

    name: str
    req_id_at: int  # field index of the reqId
    code: int
    text: str


REFUSALS: dict[int, Refusal] = {
    10: Refusal(
        "reqMktDepth",
        2,
        10092,
        "Deep market data is not supported for this "
        "combination of security type/exchange " + NOT_MODELLED.format(what="market depth"),
    ),
    21: Refusal(
        "exerciseOptions",
        2,
        200,
        "No security definition has been found for the "
        "request " + NOT_MODELLED.format(what="options"),
    ),
    22: Refusal(
        "reqScannerSubscription",
        1,
        162,
        "Historical Market Data Service error "
        "message:Scanner subscription not available " + NOT_MODELLED.format(what="scanners"),
    ),
    50: Refusal(
        "reqRealTimeBars",
        2,
        420,
        "Invalid Real-time Query:No market data "
        "permissions " + NOT_MODELLED.format(what="real-time bars"),
    ),
    52: Refusal(
        "reqFundamentalData",
        2,
        430,
        "We are sorry, but fundamentals data for the "
        "security specified is not available. " + NOT_MODELLED.format(what="fundamentals"),
    ),
    54: Refusal(
        "calculateImpliedVolatility",
        2,
        200,
        "No security definition has been found "
        "for the request " + NOT_MODELLED.format(what="options"),
    ),
    55: Refusal(
        "calculateOptionPrice",
        2,
        200,
        "No security definition has been found for "
        "the request " + NOT_MODELLED.format(what="options"),
    ),
    67: Refusal(
        "queryDisplayGroups",
        2,
        321,
        "Error validating request.-'bM' : cause - "
        "display groups " + NOT_MODELLED.format(what="display groups"),
    ),
    68: Refusal(
        "subscribeToGroupEvents",
        2,
        321,
        "Error validating request.-'bM' : cause - "
        "display groups " + NOT_MODELLED.format(what="display groups"),
    ),
    69: Refusal(
        "updateDisplayGroup",
        2,
        321,
        "Error validating request.-'bM' : cause - "
        "display groups " + NOT_MODELLED.format(what="display groups"),
    ),
    83: Refusal(
        "reqSmartComponents",
        1,
        200,
        "No security definition has been found for the "
        "request " + NOT_MODELLED.format(what="SMART components"),
    ),
    84: Refusal(
        "reqNewsArticle",
        1,
        10172,
        "Failed to request news article: No data available " + NOT_MODELLED.format(what="news"),
    ),
    88: Refusal(
        "reqHistogramData",
        1,
        162,
        "Historical Market Data Service error message:"
        "HMDS query returned no data " + NOT_MODELLED.format(what="histograms"),
    ),
    97: Refusal(
        "reqTickByTickData",
        1,
        10089,
        "Requested market data requires additional "
        "subscription for API " + NOT_MODELLED.format(what="tick-by-tick data"),
    ),
    100: Refusal(
        "reqWshMetaData",
        1,
        10276,
        "News feed is not allowed " + NOT_MODELLED.format(what="Wall Street Horizon data"),
    ),
    102: Refusal(
        "reqWshEventData",
        1,
        10276,
        "News feed is not allowed " + NOT_MODELLED.format(what="Wall Street Horizon data"),
    ),
}

# Messages IB does not answer either: cancels, and subscriptions that only ever push.
SILENT = frozenset({11, 12, 13, 14, 23, 51, 53, 56, 57, 70, 89, 98, 101, 103})

_SCANNER_XML = '<?xml version="1.0" encoding="UTF-8"?><ScanParameterResponse/>'


def _empty_answers(fields: list[str]) -> list[object] | None:
    """IB's empty answer to a lookup ib_async awaits by name, or None."""
    msg_id = int(fields[0])
    reader = FieldReader(fields, message=f"message {msg_id}")
    reader.skip(1, "msgId")
    if msg_id == 18:  # requestFA: a non-FA account has no groups or profiles
        reader.skip(1, "version")
        return [Out.RECEIVE_FA, 1, reader.int("faDataType", 1), ""]
    if msg_id == 24:
        return [Out.SCANNER_PARAMETERS, 1, _SCANNER_XML]
    if msg_id == 78:  # option chains: a stock without listed options
        return [Out.SECURITY_DEFINITION_OPTION_PARAMETER_END, reader.int("reqId")]
    if msg_id == 79:
        return [Out.SOFT_DOLLAR_TIERS, reader.int("reqId"), 0]
    if msg_id == 80:
        return [Out.FAMILY_CODES, 0]
    if msg_id == 82:
        return [Out.MKT_DEPTH_EXCHANGES, 0]
    if msg_id == 85:
        return [Out.NEWS_PROVIDERS, 0]
    if msg_id == 86:
        return [Out.HISTORICAL_NEWS_END, reader.int("reqId"), 0]
    if msg_id == 104:
        return [Out.USER_INFO, reader.int("reqId"), ""]
    return None


def _req_id(fields: list[str], at: int) -> int:
    try:
        return int(fields[at])
    except (IndexError, ValueError):
        return -1


async def answer(s: ApiSession, fields: list[str]) -> None:
    """The catch-all: whatever no handler takes is answered here."""
    msg_id = int(fields[0])
    if msg_id in SILENT:
        return
    empty = _empty_answers(fields)
    if empty is not None:
        s.send(empty)
        return
    refusal = REFUSALS.get(msg_id)
    if refusal is not None:
        log.info("sim_api_not_modelled gateway=%s request=%s", s.gw.name, refusal.name)
        s.send_error(_req_id(fields, refusal.req_id_at), refusal.code, refusal.text)
        return
    log.info("sim_api_unhandled gateway=%s msg_id=%s", s.gw.name, msg_id)
    s.send_error(
        -1,
        321,
        f"Error validating request.-'bM' : cause - message id {msg_id} "
        + NOT_MODELLED.format(what="this request"),
    )
