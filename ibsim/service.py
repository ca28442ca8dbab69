"""The broker process's event-loop side: the broker core, the login authority, faults, and
the in-process :class:`BrokerPort` that gateway front ends in this process use.

One :class:`BrokerService` is IB's servers for a simulated fleet. It steps the broker at the
tick rate, times out 2FA prompts, and pushes order events and faults to the gateway they
concern. The control API and the TCP link (for front ends in other processes) sit on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ibsim import auth
from ibsim.auth import LoginKind
from ibsim.broker import (
    Bar,
    Broker,
    BrokerConfig,
    BrokerOrder,
    Execution,
    OrderEvent,
    OrderRequest,
    Reject,
    WhatIf,
)
from ibsim.contracts import ContractSpec
from ibsim.port import Fault, FaultEvent, GatewayEvent, LoginOutcome

log = logging.getLogger(__name__)

# Faults that belong to the gateway, not to one JVM run: replayed when it subscribes again.
STICKY_FAULTS = (Fault.CLOCK, Fault.CURRENT_TIME_PACING, Fault.LOGIN_STALL, Fault.NO_LOGIN_DIALOG)


def system_clock() -> datetime:
    """Aware UTC wall time: the default clock outside tests."""
    return datetime.now(UTC)


def outcome_of(step: auth.LoginStep) -> LoginOutcome:
    """Flatten one of auth.py's login steps for the front end and the wire."""
    if isinstance(step, auth.LoggedIn):
        return LoginOutcome(
            kind=LoginKind.LOGGED_IN,
            username=step.session.username,
            accounts=step.session.accounts,
            market_data=step.session.market_data.value,
            used_token=step.used_token,
        )
    if isinstance(step, auth.Awaiting2FA):
        return LoginOutcome(
            kind=LoginKind.AWAITING_2FA,
            username=step.username,
            deadline=step.deadline,
            reason=step.reason,
        )
    if isinstance(step, auth.Failed):
        return LoginOutcome(
            kind=LoginKind.FAILED,
            username=step.username,
            reason=step.reason.value,
            failures=step.failures,
        )
    if isinstance(step, auth.LockedOut):
        return LoginOutcome(
            kind=LoginKind.LOCKED_OUT,
            username=step.username,
            failures=step.failures,
            locked_until=step.until,
        )
    return LoginOutcome(
        kind=LoginKind.EXISTING_SESSION,
        username=step.username,
        resolution=step.resolution.value,
        reason=step.existing.gateway,
    )


class BrokerService:
    """Broker + login authority + fault switches, driven by the running event loop."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = system_clock,
        config: BrokerConfig | None = None,
        users: list[auth.User] | None = None,
        auth_config: auth.AuthorityConfig | None = None,
        step_interval: float = 0.05,
        poll_interval: float = 0.05,
    ) -> None:
        self.clock = clock
        self.broker = Broker(clock=clock, config=config)
        self.authority = auth.LoginAuthority(now=clock, users=users or [], config=auth_config)
        for user in users or []:
            for account in user.accounts:
                self.broker.open_account(account)
        self.step_interval = step_interval
        self.poll_interval = poll_interval
        self._listeners: dict[str, Callable[[GatewayEvent], None]] = {}
        self._sessions: dict[str, auth.Session] = {}  # by gateway
        self._waiters: dict[str, asyncio.Future[LoginOutcome]] = {}  # by username
        self.gateway_state: dict[str, dict[str, object]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stepping = True
        self.clock_offset = 0.0  # seconds every gateway's wall clock is moved by default
        self.broker.add_listener(self._route_order_event)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start stepping prices/fills and polling 2FA deadlines."""
        self._tasks.append(asyncio.create_task(self._step_loop(), name="sim-broker-step"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="sim-broker-2fa"))

    async def stop(self) -> None:
        """Stop the background tasks; pending 2FA waiters are cancelled."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for future in self._waiters.values():
            if not future.done():
                future.cancel()

    async def _step_loop(self) -> None:
        while True:
            await asyncio.sleep(self.step_interval)
            if self.stepping:
                try:
                    self.broker.step()
                except Exception:  # a bug in one step must not stop the market
                    log.exception("broker_step_failed")

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            for step in self.authority.poll():
                self._resolve_waiter(step.username, outcome_of(step))

    # -- users -----------------------------------------------------------------------------

    def add_user(self, user: auth.User) -> None:
        """Register a username and open its accounts."""
        self.authority.add_user(user)
        for account in user.accounts:
            self.broker.open_account(account)

    # -- event routing ---------------------------------------------------------------------

    def subscribe(self, *, gateway: str, listener: Callable[[GatewayEvent], None]) -> None:
        """One listener per gateway front end; it hears the sticky faults set so far (a
        relaunched gateway JVM keeps the moved clock and the login faults)."""
        self._listeners[gateway] = listener
        state = self.gateway_state.get(gateway, {})
        for fault in STICKY_FAULTS:
            value = state.get(fault.value)
            if fault is Fault.CLOCK and value is None:
                value = self.clock_offset or None
            if value is not None:
                listener(
                    FaultEvent(gateway=gateway, fault=fault, active=True, value=float(str(value)))
                )

    def set_clock_offset(self, seconds: float) -> None:
        """Move every gateway's wall clock that has no offset of its own (control API)."""
        self.clock_offset = seconds
        for gateway, listener in list(self._listeners.items()):
            if self.gateway_state.get(gateway, {}).get(Fault.CLOCK.value) is None:
                listener(FaultEvent(gateway=gateway, fault=Fault.CLOCK, active=True, value=seconds))

    def unsubscribe(self, *, gateway: str) -> None:
        """Forget a gateway's listener (it stopped)."""
        self._listeners.pop(gateway, None)

    def connected_gateways(self) -> list[str]:
        """Names of the gateway front ends currently linked to the broker."""
        return sorted(self._listeners)

    def _route_order_event(self, event: OrderEvent) -> None:
        # Every gateway whose session holds the order's account hears about it.
        for gateway, session in list(self._sessions.items()):
            if event.order.account in session.accounts:
                listener = self._listeners.get(gateway)
                if listener is not None:
                    listener(event)

    def push_fault(self, event: FaultEvent) -> None:
        """Tell one gateway front end about a fault switched on or off.

        A sticky fault (clock, login faults) is kept for a gateway that is relaunching and
        not connected right now; any other needs the gateway connected.
        """
        state = self.gateway_state.setdefault(event.gateway, {})
        state[event.fault.value] = event.value if event.active else None
        listener = self._listeners.get(event.gateway)
        if listener is None:
            if event.fault in STICKY_FAULTS:
                return
            raise KeyError(f"gateway {event.gateway!r} is not connected to the broker")
        if event.fault is Fault.CLOCK and not event.active:
            # Back to the broker-wide offset.
            event = FaultEvent(
                gateway=event.gateway, fault=Fault.CLOCK, active=True, value=self.clock_offset
            )
        listener(event)

    # -- logins ----------------------------------------------------------------------------

    def _after_step(self, gateway: str, step: auth.LoginStep) -> LoginOutcome:
        if isinstance(step, auth.LoggedIn):
            if step.displaced is not None and step.displaced.gateway != gateway:
                self._sessions.pop(step.displaced.gateway, None)
                listener = self._listeners.get(step.displaced.gateway)
                if listener is not None:
                    listener(
                        FaultEvent(
                            gateway=step.displaced.gateway, fault=Fault.SESSION_ENDED, active=True
                        )
                    )
            self._sessions[gateway] = step.session
            log.info(
                "sim_login_ok gateway=%s username=%s used_token=%s",
                gateway,
                step.session.username,
                step.used_token,
            )
        return outcome_of(step)

    def _resolve_waiter(self, username: str, outcome: LoginOutcome) -> None:
        future = self._waiters.pop(username, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def begin_login(
        self,
        *,
        gateway: str,
        username: str,
        password: str,
        presents_token: bool,
        existing_session_action: str,
    ) -> LoginOutcome:
        step = self.authority.begin_login(
            username=username,
            password=password,
            gateway=gateway,
            presents_token=presents_token,
            existing_session_action=auth.parse_existing_session_action(existing_session_action),
        )
        outcome = self._after_step(gateway, step)
        log.info(
            "sim_login_step gateway=%s username=%s kind=%s reason=%s",
            gateway,
            username,
            outcome.kind.value,
            outcome.reason,
        )
        return outcome

    async def await_2fa(self, *, gateway: str, username: str) -> LoginOutcome:
        """Wait until the pending 2FA of ``username`` is approved, denied or timed out."""
        if self.authority.pending_2fa(username) is None:
            return LoginOutcome(kind=LoginKind.FAILED, username=username, reason="not_pending")
        future = self._waiters.get(username)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[username] = future
        return await asyncio.shield(future)

    def approve_2fa(self, username: str) -> LoginOutcome | None:
        """The phone says yes (control API)."""
        pending = self.authority.pending_2fa(username)
        step = self.authority.approve_2fa(username)
        if step is None:
            return None
        gateway = pending.gateway if pending is not None else ""
        outcome = self._after_step(gateway, step)
        self._resolve_waiter(username, outcome)
        return outcome

    def deny_2fa(self, username: str) -> LoginOutcome | None:
        """The phone says no (control API)."""
        step = self.authority.deny_2fa(username)
        if step is None:
            return None
        outcome = outcome_of(step)
        self._resolve_waiter(username, outcome)
        return outcome

    def pending_2fa(self) -> list[auth.Awaiting2FA]:
        """Every login waiting for the phone."""
        found = []
        for session_user in self._all_usernames():
            pending = self.authority.pending_2fa(session_user)
            if pending is not None:
                found.append(pending)
        return found

    def _all_usernames(self) -> list[str]:
        return list(self.authority._users)

    async def logout(self, *, gateway: str) -> None:
        session = self._sessions.pop(gateway, None)
        if session is not None:
            self.authority.logout(session.session_id)

    def session_of_gateway(self, gateway: str) -> auth.Session | None:
        """The broker-side session a gateway holds, if logged in."""
        return self._sessions.get(gateway)

    # -- trading ---------------------------------------------------------------------------

    def prices(self) -> dict[int, float]:
        return {spec.con_id: self.broker.price(spec.con_id) for spec in self.broker.symbols}

    async def next_order_id(self, *, gateway: str, client_id: int) -> int:
        highest = 0
        for order in self.broker.orders.values():
            if order.gateway == gateway and order.client_id == client_id:
                highest = max(highest, order.order_id)
        return highest + 1

    def _not_logged_in(self, gateway: str, code: int) -> Reject | None:
        """IB takes orders only over a logged-in session: a gateway whose session ended (its
        link was gone past the grace, another login displaced it) is refused, never served
        an order whose reports could reach no one."""
        if gateway in self._sessions:
            return None
        log.warning("sim_order_refused_no_session gateway=%s", gateway)
        return Reject(code, f"Order rejected - reason: gateway {gateway} has no session at IB")

    async def place_order(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject:
        refused = self._not_logged_in(gateway, 201)
        if refused is not None:
            return refused
        result = self.broker.place_order(
            gateway=gateway, client_id=client_id, request=request, accounts=accounts
        )
        return result.snapshot() if isinstance(result, BrokerOrder) else result

    async def what_if(self, *, request: OrderRequest, accounts: list[str]) -> WhatIf | Reject:
        return self.broker.what_if(request, accounts=accounts)

    async def cancel_order(
        self, *, gateway: str, client_id: int, order_id: int, accounts: list[str]
    ) -> BrokerOrder | Reject:
        refused = self._not_logged_in(gateway, 10148)
        if refused is not None:
            return refused
        result = self.broker.cancel_order(
            gateway=gateway, client_id=client_id, order_id=order_id, accounts=accounts
        )
        return result.snapshot() if isinstance(result, BrokerOrder) else result

    async def global_cancel(self, *, accounts: list[str]) -> int:
        return len(self.broker.global_cancel(accounts=accounts))

    async def open_orders(self, *, accounts: list[str]) -> list[BrokerOrder]:
        return [o.snapshot() for o in self.broker.open_orders(accounts)]

    async def completed_orders(self, *, accounts: list[str]) -> list[BrokerOrder]:
        return [o.snapshot() for o in self.broker.completed_orders(accounts)]

    async def executions(self, *, accounts: list[str]) -> list[Execution]:
        return [e for e in self.broker.executions if e.account in accounts]

    async def account_values(self, *, account: str) -> list[tuple[str, str, str]]:
        if account not in self.broker.accounts:
            return []
        return self.broker.account_values(account)

    async def positions(
        self, *, account: str
    ) -> list[tuple[ContractSpec, float, float, float, float]]:
        if account not in self.broker.accounts:
            return []
        return [
            (spec, pos.quantity, pos.avg_cost, price, pos.realized_pnl)
            for spec, pos, price in self.broker.portfolio(account)
        ]

    async def contracts(self, *, query: dict[str, str | int]) -> list[ContractSpec]:
        return self.broker.symbols.match(
            con_id=int(query.get("con_id", 0) or 0),
            symbol=str(query.get("symbol", "")),
            sec_type=str(query.get("sec_type", "")),
            currency=str(query.get("currency", "")),
            exchange=str(query.get("exchange", "")),
            local_symbol=str(query.get("local_symbol", "")),
            last_trade_date=str(query.get("last_trade_date", "")),
            pattern=str(query.get("pattern", "")),
        )

    async def historical_bars(
        self, *, con_id: int, count: int, bar_seconds: int, end: datetime
    ) -> list[Bar]:
        return self.broker.historical_bars(con_id, count=count, bar_seconds=bar_seconds, end=end)

    async def now(self) -> datetime:
        return self.clock()


class InProcessBrokerPort:
    """A front end's view of a broker in the same process: a thin pass-through.

    It exists so a front end holds only the :class:`BrokerPort` surface, never the service
    (the remote port offers exactly the same surface over TCP).
    """

    def __init__(self, service: BrokerService) -> None:
        self._s = service

    async def begin_login(
        self,
        *,
        gateway: str,
        username: str,
        password: str,
        presents_token: bool,
        existing_session_action: str,
    ) -> LoginOutcome:
        return await self._s.begin_login(
            gateway=gateway,
            username=username,
            password=password,
            presents_token=presents_token,
            existing_session_action=existing_session_action,
        )

    async def await_2fa(self, *, gateway: str, username: str) -> LoginOutcome:
        return await self._s.await_2fa(gateway=gateway, username=username)

    async def logout(self, *, gateway: str) -> None:
        await self._s.logout(gateway=gateway)

    def subscribe(self, *, gateway: str, listener: Callable[[GatewayEvent], None]) -> None:
        self._s.subscribe(gateway=gateway, listener=listener)

    def unsubscribe(self, *, gateway: str) -> None:
        self._s.unsubscribe(gateway=gateway)

    def prices(self) -> dict[int, float]:
        return self._s.prices()

    async def next_order_id(self, *, gateway: str, client_id: int) -> int:
        return await self._s.next_order_id(gateway=gateway, client_id=client_id)

    async def place_order(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject:
        return await self._s.place_order(
            gateway=gateway, client_id=client_id, request=request, accounts=accounts
        )

    async def what_if(self, *, request: OrderRequest, accounts: list[str]) -> WhatIf | Reject:
        return await self._s.what_if(request=request, accounts=accounts)

    async def cancel_order(
        self, *, gateway: str, client_id: int, order_id: int, accounts: list[str]
    ) -> BrokerOrder | Reject:
        return await self._s.cancel_order(
            gateway=gateway, client_id=client_id, order_id=order_id, accounts=accounts
        )

    async def global_cancel(self, *, accounts: list[str]) -> int:
        return await self._s.global_cancel(accounts=accounts)

    async def open_orders(self, *, accounts: list[str]) -> list[BrokerOrder]:
        return await self._s.open_orders(accounts=accounts)

    async def completed_orders(self, *, accounts: list[str]) -> list[BrokerOrder]:
        return await self._s.completed_orders(accounts=accounts)

    async def executions(self, *, accounts: list[str]) -> list[Execution]:
        return await self._s.executions(accounts=accounts)

    async def account_values(self, *, account: str) -> list[tuple[str, str, str]]:
        return await self._s.account_values(account=account)

    async def positions(
        self, *, account: str
    ) -> list[tuple[ContractSpec, float, float, float, float]]:
        return await self._s.positions(account=account)

    async def contracts(self, *, query: dict[str, str | int]) -> list[ContractSpec]:
        return await self._s.contracts(query=query)

    async def historical_bars(
        self, *, con_id: int, count: int, bar_seconds: int, end: datetime
    ) -> list[Bar]:
        return await self._s.historical_bars(
            con_id=con_id, count=count, bar_seconds=bar_seconds, end=end
        )

    async def now(self) -> datetime:
        return await self._s.now()
