"""The seam between a gateway front end and the broker: a Protocol and its value types.

A front end in the same process uses :class:`ibsim.service.InProcessBrokerPort`; one in
another process or container uses :class:`ibsim.link.RemoteBrokerPort` over TCP. Both
speak only the flat, JSON-friendly values defined here, so the link is a dumb transport.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ibsim.auth import LoginKind
from ibsim.broker import Bar, BrokerOrder, Execution, OrderEvent, OrderRequest, Reject, WhatIf
from ibsim.contracts import ContractSpec


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A login step flattened for the wire (auth.py's steps carry richer objects)."""

    kind: LoginKind
    username: str
    accounts: tuple[str, ...] = ()
    market_data: str = "realtime"
    deadline: datetime | None = None
    reason: str = ""
    failures: int = 0
    used_token: bool = False
    resolution: str = ""
    locked_until: datetime | None = None


class Fault(enum.Enum):
    """Faults the control API injects into one gateway."""

    LINK = "link"  # IB link lost (1100) / restored (1101 data lost, 1102 data kept)
    MARKET_FARM = "market_farm"  # 2103 broken / 2104 OK
    HMDS_FARM = "hmds_farm"  # 2105 broken / 2106 OK
    STALL = "stall"  # sockets stay open, nothing is answered
    DROP_CLIENTS = "drop_clients"  # close every API socket
    CRASH = "crash"  # the gateway process dies
    SLOW = "slow"  # a delay before each reply, in seconds
    TICK_RATE = "tick_rate"  # market data ticks per second per subscription
    SESSION_ENDED = "session_ended"  # another login took this gateway's username
    # The gateway's wall clock runs ``value`` seconds ahead (negative: behind), so a test can
    # bring the daily auto-restart or Sunday's cold restart to now. Kept across relaunches.
    CLOCK = "clock"
    # reqCurrentTime is left unanswered when the client's previous one was < 1 s before.
    CURRENT_TIME_PACING = "current_time_pacing"
    # The 2FA prompt is approved but the login never completes (IBC then exits 1111 if
    # relogin is on, after SecondFactorAuthenticationExitInterval).
    LOGIN_STALL = "login_stall"
    # The next JVM never shows its login dialog: IBC exits 1112 after LoginDialogDisplayTimeout.
    NO_LOGIN_DIALOG = "no_login_dialog"


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault switched on or off (``value`` carries a delay, rate or restore code)."""

    gateway: str
    fault: Fault
    active: bool
    value: float = 0.0


GatewayEvent = OrderEvent | FaultEvent


class BrokerPort(Protocol):
    """What a gateway front end needs from IB's servers."""

    async def begin_login(
        self,
        *,
        gateway: str,
        username: str,
        password: str,
        presents_token: bool,
        existing_session_action: str,
    ) -> LoginOutcome: ...

    async def await_2fa(self, *, gateway: str, username: str) -> LoginOutcome: ...

    async def logout(self, *, gateway: str) -> None: ...

    def subscribe(self, *, gateway: str, listener: Callable[[GatewayEvent], None]) -> None: ...

    def unsubscribe(self, *, gateway: str) -> None: ...

    def prices(self) -> dict[int, float]: ...

    async def next_order_id(self, *, gateway: str, client_id: int) -> int: ...

    async def place_order(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject: ...

    async def what_if(self, *, request: OrderRequest, accounts: list[str]) -> WhatIf | Reject: ...

    async def cancel_order(
        self, *, gateway: str, client_id: int, order_id: int, accounts: list[str]
    ) -> BrokerOrder | Reject: ...

    async def global_cancel(self, *, accounts: list[str]) -> int: ...

    async def open_orders(self, *, accounts: list[str]) -> list[BrokerOrder]: ...

    async def completed_orders(self, *, accounts: list[str]) -> list[BrokerOrder]: ...

    async def executions(self, *, accounts: list[str]) -> list[Execution]: ...

    async def account_values(self, *, account: str) -> list[tuple[str, str, str]]: ...

    async def positions(
        self, *, account: str
    ) -> list[tuple[ContractSpec, float, float, float, float]]: ...

    async def contracts(self, *, query: dict[str, str | int]) -> list[ContractSpec]: ...

    async def historical_bars(
        self, *, con_id: int, count: int, bar_seconds: int, end: datetime
    ) -> list[Bar]: ...

    async def now(self) -> datetime: ...
