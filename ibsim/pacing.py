"""IB's pacing limits as the simulated Gateway enforces them. Pure: time is passed in.

Two limits, as IB documents them (TWS API "Historical Data Limitations" and "Message
rate"; /work/shared/reference/ib-operations.md):

- messages: at most ``max_msg_rate`` messages per second from one client connection; the
  excess gets error 100 ("Max rate of messages per second has been exceeded") and is dropped.
- historical data (per Gateway session, every client together): a request is a pacing
  violation when it is identical to one made within ``identical_window`` seconds, when it is
  the ``same_contract_max + 1``-th for the same contract, exchange and tick type within
  ``same_contract_window`` seconds (IB: "six or more ... within two seconds"), or when more
  than ``hist_max`` requests were made within ``hist_window`` seconds (IB: 60 per 10
  minutes; a BID_ASK request counts twice). A violation is answered with error 162
  ("Historical Market Data Service error message:Historical data request pacing violation").

Refused requests are not counted: IB does not say whether they are, and counting only
accepted ones lets a client that waits recover, which is what IB's guidance asks of it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = [
    "PACING_VIOLATION_TEXT",
    "HistKey",
    "HistoricalPacing",
    "MessageRate",
    "PacingConfig",
    "PacingViolation",
]

PACING_VIOLATION_TEXT = (
    "Historical Market Data Service error message:Historical data request pacing violation"
)


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """The limits; tests shrink the windows (the defaults are IB's)."""

    max_msg_rate: int = 50  # messages per msg_window from one client
    msg_window: float = 1.0
    hist_max: int = 60  # historical requests per hist_window per Gateway session
    hist_window: float = 600.0
    identical_window: float = 15.0
    same_contract_max: int = 5  # the sixth within same_contract_window is a violation
    same_contract_window: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_msg_rate", "hist_max", "same_contract_max"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"PacingConfig.{name} must be at least 1, got {getattr(self, name)}"
                )
        for name in ("msg_window", "hist_window", "identical_window", "same_contract_window"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"PacingConfig.{name} must not be negative, got {getattr(self, name)}"
                )


class MessageRate:
    """A sliding one-second window of one client's messages."""

    def __init__(self, config: PacingConfig) -> None:
        self.config = config
        self._stamps: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Count one message at ``now``; False when it is over the limit (it is dropped)."""
        while self._stamps and now - self._stamps[0] >= self.config.msg_window:
            self._stamps.popleft()
        if len(self._stamps) >= self.config.max_msg_rate:
            return False
        self._stamps.append(now)
        return True

    @property
    def in_window(self) -> int:
        """Messages counted in the current window."""
        return len(self._stamps)


@dataclass(frozen=True, slots=True)
class HistKey:
    """What IB compares requests by: the contract, exchange, tick type and the parameters."""

    con_id: int
    exchange: str
    what_to_show: str
    params: tuple[str, ...] = ()  # end, duration, bar size, useRTH...: identical requests

    @property
    def contract_key(self) -> tuple[int, str, str]:
        return (self.con_id, self.exchange, self.what_to_show)


@dataclass(frozen=True, slots=True)
class PacingViolation:
    """Why a request was refused and when it could be sent again."""

    rule: str  # "identical", "same_contract" or "window"
    retry_at: float
    code: int = 162
    text: str = PACING_VIOLATION_TEXT


class HistoricalPacing:
    """The historical-data requests of one Gateway session, and IB's three rules over them."""

    def __init__(self, config: PacingConfig) -> None:
        self.config = config
        self._accepted: deque[tuple[float, HistKey, int]] = deque()  # (at, key, weight)

    def _expire(self, now: float) -> None:
        horizon = max(
            self.config.hist_window, self.config.identical_window, self.config.same_contract_window
        )
        while self._accepted and now - self._accepted[0][0] >= horizon:
            self._accepted.popleft()

    def check(self, key: HistKey, now: float) -> PacingViolation | None:
        """Admit the request (it is counted) or say which rule it breaks (not counted)."""
        self._expire(now)
        cfg = self.config
        weight = 2 if key.what_to_show.upper() == "BID_ASK" else 1
        identical = [
            at for at, k, _ in self._accepted if k == key and now - at < cfg.identical_window
        ]
        if identical:
            return PacingViolation("identical", retry_at=identical[-1] + cfg.identical_window)
        same = [
            at
            for at, k, _ in self._accepted
            if k.contract_key == key.contract_key and now - at < cfg.same_contract_window
        ]
        if len(same) >= cfg.same_contract_max:
            return PacingViolation(
                "same_contract", retry_at=same[-cfg.same_contract_max] + cfg.same_contract_window
            )
        window = [(at, w) for at, _, w in self._accepted if now - at < cfg.hist_window]
        used = sum(w for _, w in window)
        if used + weight > cfg.hist_max:
            # The earliest moment enough weight has left the window for this request.
            freed, retry = 0, now
            for at, w in window:
                freed += w
                retry = at + cfg.hist_window
                if used - freed + weight <= cfg.hist_max:
                    break
            return PacingViolation("window", retry_at=retry)
        self._accepted.append((now, key, weight))
        return None

    def used(self, now: float) -> int:
        """Request weight counted in the 10-minute window at ``now``."""
        return sum(w for at, _, w in self._accepted if now - at < self.config.hist_window)
