"""The strategy host: one task and one API session per strategy, the order path, safe state
and failover.

Each strategy runs its hooks in its own task with its own broker session
(:class:`~plugins.host.broker.BrokerSession`, on ``ib_async`` by default). Every order goes
through :class:`~plugins.host.orders.OrderPath`: state gate, risk checks, optional what-if
margin, the token bucket, then the intent is written to the journal durably and only then sent
with its key as ``orderRef``. After every (re)connect and failover the host reconciles the
journal with what the new session sees at IB before the strategy may act again; nothing is
ever re-sent blind.

The supervisor's order gate (:meth:`StrategyHost.on_gate`) says what kind of outage a gateway
is in; whether a strategy holds, waits out its grace, runs safe state or fails over is
:func:`plugins.outage.react`'s decision (:mod:`plugins.host.outages` re-evaluates it); where it
may go is :func:`plugins.host.failover.candidates`'s.
"""

from plugins.host.broker import BrokerSession
from plugins.host.clock import Clock, SystemClock
from plugins.host.settings import GatewayEndpoint, HostSettings
from plugins.host.status import (
    SafeStatePath,
    SafeStateRun,
    SafeStateTrigger,
    StrategyState,
    StrategyStatus,
)
from plugins.host.strategy_host import StrategyHost

__all__ = [
    "BrokerSession",
    "Clock",
    "GatewayEndpoint",
    "HostSettings",
    "SafeStatePath",
    "SafeStateRun",
    "SafeStateTrigger",
    "StrategyHost",
    "StrategyState",
    "StrategyStatus",
    "SystemClock",
]
