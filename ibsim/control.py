"""The broker's HTTP control API: the phone (2FA), fault switches, prices, and the truth.

FastAPI, served by uvicorn inside the broker's event loop. Every fault is pushed to the
gateway it names over the same path order events take, so it works for front ends in this
process and for gateway containers linked over TCP alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from gateway import addresses
from ibsim.broker import BrokerOrder
from ibsim.port import Fault, FaultEvent
from ibsim.service import STICKY_FAULTS

if TYPE_CHECKING:
    from ibsim.fleet import SimFleet
    from ibsim.service import BrokerService


class ClockRequest(BaseModel):
    """Seconds every gateway's wall clock runs ahead (negative: behind)."""

    offset_seconds: float


class FaultRequest(BaseModel):
    """Switch a fault on or off for one gateway."""

    active: bool = True
    value: float = Field(default=0.0, description="seconds for slow, ticks/s for tick_rate")


class LinkRequest(BaseModel):
    """Lose or restore the IB link; restored with data_lost sends 1101, else 1102."""

    up: bool
    data_lost: bool = False


class PriceRequest(BaseModel):
    """A new price for a symbol (or local symbol such as EUR.USD)."""

    price: float


class RejectLoginsRequest(BaseModel):
    """Make the login server refuse every login (or stop doing so)."""

    active: bool = True


def order_json(order: BrokerOrder) -> dict[str, Any]:
    """An order as the control API shows it: identity, refs, fills and status history."""
    return {
        "perm_id": order.perm_id,
        "order_ref": order.order_ref,
        "account": order.account,
        "gateway": order.gateway,
        "client_id": order.client_id,
        "order_id": order.order_id,
        "symbol": order.contract.local_symbol or order.contract.symbol,
        "con_id": order.contract.con_id,
        "action": order.action,
        "quantity": order.total_quantity,
        "order_type": order.order_type,
        "lmt_price": order.lmt_price,
        "aux_price": order.aux_price,
        "oca_group": order.oca_group,
        "parent_perm_id": order.parent_perm_id,
        "status": order.status.value,
        "filled": order.filled,
        "avg_fill_price": order.avg_fill_price,
        "created_at": order.created_at.isoformat(),
        "history": [
            {"at": change.at.isoformat(), "status": change.status, "note": change.note}
            for change in order.history
        ],
    }


class ControlServer:
    """The control API served by uvicorn inside the running event loop."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.url = ""

    async def start(self, *, timeout: float = 10.0) -> str:
        """Start serving; returns the base URL with the bound port."""
        self._task = asyncio.create_task(self._server.serve())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"sim control API did not start on {self.host}")
            if loop.time() > deadline:
                raise RuntimeError(f"sim control API did not start on {self.host} in {timeout} s")
            await asyncio.sleep(0.01)
        bound = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = addresses.local_url(self.host, bound)
        return self.url

    async def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)


def create_app(*, service: BrokerService, fleet: SimFleet | None = None) -> FastAPI:
    """Build the control API for one broker (``fleet`` adds in-process gateway details)."""
    app = FastAPI(title="ibfleet simulator control API", version="1")

    def known_gateway(name: str) -> None:
        if name not in service.connected_gateways():
            raise HTTPException(
                status_code=404,
                detail=f"gateway {name!r} is not connected to the broker "
                f"(connected: {service.connected_gateways()})",
            )

    def push(name: str, fault: Fault, active: bool, value: float = 0.0) -> dict[str, Any]:
        if fault not in STICKY_FAULTS:
            known_gateway(name)  # a sticky fault also waits for a relaunching gateway
        service.push_fault(FaultEvent(gateway=name, fault=fault, active=active, value=value))
        return {"gateway": name, "fault": fault.value, "active": active, "value": value}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/gateways")
    async def gateways() -> list[dict[str, Any]]:
        rows = []
        names = set(service.connected_gateways())
        if fleet is not None:
            names |= {g.name for g in fleet.gateways}
        for name in sorted(names):
            session = service.session_of_gateway(name)
            row: dict[str, Any] = {
                "name": name,
                "connected": name in service.connected_gateways(),
                "logged_in": session is not None,
                "username": session.username if session else None,
                "accounts": list(session.accounts) if session else [],
                "faults": {
                    k: v for k, v in service.gateway_state.get(name, {}).items() if v is not None
                },
            }
            if fleet is not None:
                mine = [g for g in fleet.gateways if g.name == name]
                if mine:
                    row["port"] = mine[0].port
                    row["state"] = mine[0].state
                    row["api_clients"] = sorted(mine[0].sessions)
            rows.append(row)
        return rows

    @app.get("/orders")
    async def orders(
        account: str | None = None, order_ref: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            order_json(o)
            for o in service.broker.orders.values()
            if (account is None or o.account == account)
            and (order_ref is None or o.order_ref == order_ref)
        ]

    @app.get("/positions")
    async def positions() -> list[dict[str, Any]]:
        rows = []
        for account_id, account in service.broker.accounts.items():
            for con_id, position in account.positions.items():
                spec = service.broker.symbols.by_con_id(con_id)
                rows.append(
                    {
                        "account": account_id,
                        "con_id": con_id,
                        "symbol": spec.local_symbol if spec else "",
                        "quantity": position.quantity,
                        "avg_cost": position.avg_cost,
                    }
                )
        return rows

    @app.get("/executions")
    async def executions() -> list[dict[str, Any]]:
        return [
            {
                "exec_id": e.exec_id,
                "perm_id": e.perm_id,
                "order_ref": e.order_ref,
                "account": e.account,
                "gateway": e.gateway,
                "client_id": e.client_id,
                "side": e.side,
                "shares": e.shares,
                "price": e.price,
                "time": e.time.isoformat(),
            }
            for e in service.broker.executions
        ]

    @app.get("/2fa")
    async def pending() -> list[dict[str, Any]]:
        return [
            {
                "username": p.username,
                "gateway": p.gateway,
                "deadline": p.deadline.isoformat(),
                "reason": p.reason,
            }
            for p in service.pending_2fa()
        ]

    @app.post("/2fa/{username}/approve")
    async def approve(username: str) -> dict[str, Any]:
        outcome = service.approve_2fa(username)
        if outcome is None:
            raise HTTPException(status_code=404, detail=f"no 2FA pending for username {username!r}")
        return {"username": username, "result": outcome.kind.value, "reason": outcome.reason}

    @app.post("/2fa/{username}/deny")
    async def deny(username: str) -> dict[str, Any]:
        outcome = service.deny_2fa(username)
        if outcome is None:
            raise HTTPException(status_code=404, detail=f"no 2FA pending for username {username!r}")
        return {"username": username, "result": outcome.kind.value, "reason": outcome.reason}

    @app.post("/logins/reject")
    async def reject_logins(body: RejectLoginsRequest) -> dict[str, Any]:
        service.authority.reject_all = body.active
        return {"reject_logins": body.active}

    @app.post("/gateways/{name}/link")
    async def link(name: str, body: LinkRequest) -> dict[str, Any]:
        if body.up:
            return push(name, Fault.LINK, False, 1101 if body.data_lost else 1102)
        return push(name, Fault.LINK, True)

    @app.post("/gateways/{name}/faults/{fault}")
    async def fault(name: str, fault: str, body: FaultRequest) -> dict[str, Any]:
        try:
            kind = Fault(fault)
        except ValueError:
            allowed = sorted(f.value for f in Fault if f not in (Fault.LINK, Fault.SESSION_ENDED))
            raise HTTPException(
                status_code=422,
                detail=f"unknown fault {fault!r}; one of {allowed} "
                "(link: POST /gateways/{name}/link)",
            ) from None
        if kind in (Fault.LINK, Fault.SESSION_ENDED):
            raise HTTPException(status_code=422, detail=f"fault {fault!r} is not injectable here")
        if (
            kind in (Fault.SLOW, Fault.TICK_RATE)
            and body.active
            and not (math.isfinite(body.value) and body.value >= 0)
        ):
            raise HTTPException(status_code=422, detail=f"{fault}: value must be a number >= 0")
        return push(name, kind, body.active, body.value)

    @app.put("/clock")
    async def clock(body: ClockRequest) -> dict[str, Any]:
        """Move every gateway's wall clock (those without their own ``clock`` fault)."""
        if not math.isfinite(body.offset_seconds):
            raise HTTPException(status_code=422, detail="offset_seconds must be a finite number")
        service.set_clock_offset(body.offset_seconds)
        return {"offset_seconds": body.offset_seconds}

    @app.put("/prices/{symbol}")
    async def set_price(symbol: str, body: PriceRequest) -> dict[str, Any]:
        spec = service.broker.symbols.by_symbol(symbol)
        if spec is None:
            known = sorted(s.local_symbol for s in service.broker.symbols)
            raise HTTPException(
                status_code=404, detail=f"unknown symbol {symbol!r}; known: {known}"
            )
        try:
            service.broker.set_price(spec.con_id, body.price)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"symbol": symbol, "con_id": spec.con_id, "price": body.price}

    @app.get("/prices")
    async def prices() -> dict[str, float]:
        return {
            spec.local_symbol: service.broker.price(spec.con_id) for spec in service.broker.symbols
        }

    return app
