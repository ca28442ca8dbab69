"""The last order gate the supervisor gave for each gateway, and since when it is so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from gateway.outage import Gate, OutageKind
from plugins import outage

__all__ = ["GateBoard", "GateFeed"]


@dataclass
class GateFeed:
    """One gateway's gate; ``changed_at`` (monotonic) is when it last opened or closed."""

    changed_at: float
    gate: Gate | None = None  # None: the supervisor has not said yet

    @property
    def ready(self) -> bool | None:
        return None if self.gate is None else self.gate.open

    @property
    def kind(self) -> OutageKind | None:
        return None if self.gate is None else self.gate.kind


class GateBoard:
    """Every gateway's feed, shared by all strategies of a host."""

    def __init__(self) -> None:
        self._feeds: dict[str, GateFeed] = {}

    def feed(self, gateway: str, *, now: float) -> GateFeed:
        """The feed of ``gateway`` (unknown so far: no gate, timed from ``now``)."""
        return self._feeds.setdefault(gateway, GateFeed(changed_at=now))

    def set(self, gateway: str, gate: Gate, *, now: float) -> bool | None:
        """Record ``gate``; return whether the gateway was open before (None: not said)."""
        feed = self.feed(gateway, now=now)
        was = feed.ready
        if was is not gate.open:
            feed.changed_at = now
        feed.gate = gate
        return was

    def usable(self, gateway: str, *, now: float, shutting_down: bool = False) -> bool:
        """May a session on ``gateway`` act? Not while its gate is closed, except for the
        shutdown's own safe state: the gateways keep running while the supervisor stops."""
        feed = self.feed(gateway, now=now)
        return feed.ready is not False or (shutting_down and feed.kind is OutageKind.SHUTDOWN)

    def readiness(
        self, gateways: Sequence[str], *, waiting_since: float, now: float
    ) -> list[outage.GatewayReadiness]:
        """The gateways as :func:`plugins.outage.start_choice` wants them."""
        out = []
        for name in gateways:
            feed = self.feed(name, now=now)
            since = waiting_since if feed.gate is None else feed.changed_at
            out.append(
                outage.GatewayReadiness(
                    name=name, open=feed.ready, for_=timedelta(seconds=max(now - since, 0.0))
                )
            )
        return out
