"""What the host is told about each gateway, and its timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.leases import ClientIdLeases
from plugins.pacing import PacingRules

__all__ = ["GatewayEndpoint", "HostSettings"]


@dataclass(frozen=True, slots=True)
class GatewayEndpoint:
    """Where a gateway's API answers, and what the host must know about it."""

    name: str
    host: str
    port: int
    account: str | None = None
    read_only: bool = False
    #: Client ids for strategies that fail over to this gateway (None: use the configured id).
    leases: ClientIdLeases | None = None


@dataclass(frozen=True, slots=True)
class HostSettings:
    """Timeouts of the host, in seconds."""

    connect_timeout: float = 2.0
    request_timeout: float = 3.0
    cancel_deadline: float = 2.0
    flatten_deadline: float = 5.0
    retry_interval: float = 0.1
    rate_wait_max: float = 1.0
    #: How long a failover gateway must have been up, with the primary not, before a strategy
    #: that has not started yet starts there (at least the strategy's grace).
    primary_patience: float = 10.0
    #: IB's pacing for each gateway session, shared by every strategy on that gateway.
    pacing: PacingRules = field(default_factory=PacingRules)
    #: Longest wait between looks at the pacer (the waits are exact on the real clock).
    pacing_recheck: float = 1.0
    #: How long a historical data request may take once sent (IB's can take a while).
    history_timeout: float = 60.0
    #: How long a new market data line waits for its first tick or IB's refusal.
    subscribe_wait: float = 1.0
    #: Longest wait for the journal (an order intent, a read); past it the order is refused,
    #: never sent. The supervisor sets it from ``storage.write_wait``.
    journal_wait: float = 1.0
