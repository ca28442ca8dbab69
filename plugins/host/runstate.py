"""Where one strategy is: its state and the flags every collaborator reads before acting."""

from __future__ import annotations

import asyncio
import logging

from plugins.host.services import HostServices
from plugins.host.status import StrategyState

__all__ = ["RunState"]

log = logging.getLogger("plugins.host")


class RunState:
    """The strategy's :class:`StrategyState` and the flags around it.

    ``changed`` is set on every change that a waiting task may care about (state, gate, a
    fill): waits re-evaluate on it instead of polling.
    """

    def __init__(self, name: str, services: HostServices) -> None:
        self.name = name
        self._services = services
        self.state = StrategyState.LOADED
        self.trading = False  # orders allowed (RUNNING and reconciled)
        self.started = False  # on_start was posted for the current instance
        self.stopping = False  # stop() began: no outage reaction starts anything new
        self.shutdown_done = False  # on_shutdown already ran (a SHUTDOWN gate came before stop)
        self.last_error: str | None = None
        self.changed = asyncio.Event()
        #: Held by whatever moves the strategy between sessions (safe state, failover, resume).
        self.lock = asyncio.Lock()

    def set(self, state: StrategyState, *, gateway: str | None) -> None:
        if state is self.state:
            return
        log.info(
            "strategy_state strategy=%s from=%s to=%s gateway=%s",
            self.name,
            self.state.name,
            state.name,
            gateway,
        )
        self.state = state
        metrics = self._services.metrics
        if metrics is not None:
            try:
                metrics.set_strategy_state(self.name, state.name)
            except ValueError as exc:
                # Metrics built without this state (see StrategyState): say so, keep going.
                log.error("strategy_metrics_state_unknown strategy=%s error=%s", self.name, exc)
        self.changed.set()

    def count(self, outcome: str) -> None:
        if self._services.metrics is not None:
            self._services.metrics.order_counted(self.name, outcome)
