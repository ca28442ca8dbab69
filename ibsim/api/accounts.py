"""API requests about the session and its accounts: startApi, the time, order ids, managed
accounts, positions, account updates and the account summary."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from ibsim import messages
from ibsim.codec import FieldReader
from ibsim.ledger import ledger_rows, pnl, summary_rows
from ibsim.messages import In, Out

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession, Handler

FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)


async def _start_api(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="startApi")
    r.skip(2, "msgId/version")
    client_id = r.int("clientId")
    if s.gw.client_id_in_use(client_id):
        s.send_error(
            -1,
            326,
            "Unable to connect as the client id is already in use. Retry with a unique client id.",
        )
        with contextlib.suppress(ConnectionError):
            await s.writer.drain()
        s.close()
        return
    s.client_id = client_id
    s.gw.sessions[client_id] = s
    next_id = await s.gw.broker.next_order_id(gateway=s.gw.name, client_id=client_id)
    s.send([Out.NEXT_VALID_ID, 1, next_id])
    s.send([Out.MANAGED_ACCTS, 1, ",".join(s.accounts)])
    if not s.gw.link_up:
        s.send_error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
        return
    for code, text in FARM_OK:
        s.send_error(-1, code, text)


async def _current_time(s: ApiSession, fields: list[str]) -> None:
    # Reported of Gateway 10.16+ (unverified): a reqCurrentTime less than a second after the
    # previous one is not answered. The current_time_pacing fault switches that on.
    previous, s.last_current_time = s.last_current_time, time.monotonic()
    if s.gw.current_time_pacing and previous is not None and s.last_current_time - previous < 1.0:
        return
    now = await s.gw.broker.now()
    s.send([Out.CURRENT_TIME, 1, int(now.timestamp())])


async def _req_ids(s: ApiSession, fields: list[str]) -> None:
    assert s.client_id is not None
    next_id = await s.gw.broker.next_order_id(gateway=s.gw.name, client_id=s.client_id)
    s.send([Out.NEXT_VALID_ID, 1, next_id])


async def _managed_accounts(s: ApiSession, fields: list[str]) -> None:
    s.send([Out.MANAGED_ACCTS, 1, ",".join(s.accounts)])


async def _positions(s: ApiSession, fields: list[str]) -> None:
    s.positions_subscribed = True
    for account in s.accounts:
        for spec, qty, avg, _price, _realized in await s.gw.broker.positions(account=account):
            s.send(messages.position(account, spec, qty, avg))
    s.send([Out.POSITION_END, 1])


async def _cancel_positions(s: ApiSession, fields: list[str]) -> None:
    s.positions_subscribed = False


async def _positions_multi(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqPositionsMulti")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    account = r.str("account")
    for acct in [account] if account else s.accounts:
        for spec, qty, avg, _price, _realized in await s.gw.broker.positions(account=acct):
            pos = messages.position(acct, spec, qty, avg)
            s.send([Out.POSITION_MULTI, 1, req_id, *pos[2:], ""])
    s.send([Out.POSITION_MULTI_END, 1, req_id])


async def _account_updates(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountUpdates")
    r.skip(2, "msgId/version")
    subscribe = r.bool("subscribe")
    account = r.str("acctCode") or (s.accounts[0] if s.accounts else "")
    if not subscribe:
        s.account_updates = None
        return
    s.account_updates = account
    s.send([Out.ACCT_VALUE, 2, "AccountCode", account, "", account])
    await s.send_account_update(account)
    s.send([Out.ACCT_DOWNLOAD_END, 1, account])


async def _account_updates_multi(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountUpdatesMulti")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    account = r.str("account")
    model = r.str("modelCode")
    for acct in [account] if account else s.accounts:
        for tag, value, currency in await s.account_rows(acct):
            s.send([Out.ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, value, currency])
    s.send([Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id])


async def _account_summary(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountSummary")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    r.str("groupName")
    tags = {t.strip() for t in r.opt_str("tags").split(",") if t.strip()}
    for account in s.accounts:
        rows = await s.gw.broker.account_values(account=account)
        ledger = ledger_rows(rows, await s.gw.broker.positions(account=account))
        for tag, value, currency in summary_rows(rows, ledger, tags):
            s.send([Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency])
    s.send([Out.ACCOUNT_SUMMARY_END, 1, req_id])


async def _pnl(s: ApiSession, fields: list[str]) -> None:
    """reqPnL: one update at subscribe (IB sends one a second while it changes)."""
    r = FieldReader(fields, message="reqPnL")
    r.str("msgId")
    req_id = r.int("reqId")
    account = r.str("account") or (s.accounts[0] if s.accounts else "")
    if account not in s.accounts:
        s.send_error(req_id, 321, f"Error validating request.-'bT' : cause - account {account!r}")
        return
    daily, unrealized, realized = pnl(await s.gw.broker.positions(account=account))
    s.send([Out.PNL, req_id, daily, unrealized, realized])


async def _pnl_single(s: ApiSession, fields: list[str]) -> None:
    """reqPnLSingle: position, PnL and value of one contract, once at subscribe."""
    r = FieldReader(fields, message="reqPnLSingle")
    r.str("msgId")
    req_id = r.int("reqId")
    account = r.str("account") or (s.accounts[0] if s.accounts else "")
    r.str("modelCode")
    con_id = r.int("conId")
    if account not in s.accounts:
        s.send_error(req_id, 321, f"Error validating request.-'bT' : cause - account {account!r}")
        return
    positions = await s.gw.broker.positions(account=account)
    daily, unrealized, realized = pnl(positions, con_id)
    qty = value = 0.0
    for spec, quantity, _avg, price, _real in positions:
        if spec.con_id == con_id:
            qty, value = quantity, round(quantity * price * float(spec.multiplier or 1), 2)
    s.send([Out.PNL_SINGLE, req_id, qty, daily, unrealized, realized, value])


async def _no_answer(s: ApiSession, fields: list[str]) -> None:
    """Cancels of PnL subscriptions: answered once, nothing to stop."""


HANDLERS: dict[int, Handler] = {
    In.START_API: _start_api,
    In.REQ_CURRENT_TIME: _current_time,
    In.REQ_IDS: _req_ids,
    In.REQ_MANAGED_ACCTS: _managed_accounts,
    In.REQ_POSITIONS: _positions,
    In.CANCEL_POSITIONS: _cancel_positions,
    In.REQ_POSITIONS_MULTI: _positions_multi,
    In.REQ_ACCOUNT_UPDATES: _account_updates,
    In.REQ_ACCOUNT_UPDATES_MULTI: _account_updates_multi,
    In.REQ_ACCOUNT_SUMMARY: _account_summary,
    In.REQ_PNL: _pnl,
    In.CANCEL_PNL: _no_answer,
    In.REQ_PNL_SINGLE: _pnl_single,
    In.CANCEL_PNL_SINGLE: _no_answer,
}
