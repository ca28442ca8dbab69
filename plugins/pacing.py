"""IB's pacing rules for one gateway session, as a pure decision: may this request go now, and
if not, in how many seconds.

IB (TWS API guide, "Historical Data Limitations"; "Pacing Violations"): about 50 messages a
second from a client; for historical data, no identical request within 15 seconds, no six or
more requests for the same contract, exchange and tick type within two seconds, and no more
than 60 requests in any ten minutes. A request that breaks one gets error 162 ("pacing
violation"), and repeated violations can get the session disconnected. The host asks
:class:`Pacer` before every request, so strategies queue instead of failing.

Pure: the caller passes ``now`` (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HistoryRequest", "Pacer", "PacingRules", "is_pacing_violation"]

#: The historical data error code; a pacing violation is one of its several meanings.
HISTORICAL_DATA_ERROR = 162


@dataclass(frozen=True, slots=True)
class PacingRules:
    """The limits the host keeps to, per gateway session (IB's, with a little margin)."""

    #: Requests of any kind through the pacer per second (IB disconnects above about 50).
    messages_per_second: int = 45
    #: Historical data requests in any ``history_window`` seconds.
    history_requests: int = 60
    history_window: float = 600.0
    #: An identical historical request (same contract, end, duration, bar size, data, RTH)
    #: is held until this many seconds after the last one.
    identical_within: float = 15.0
    #: Requests for one contract, exchange and tick type in any ``same_contract_window``
    #: seconds: IB counts six or more as a violation, so five.
    same_contract_requests: int = 5
    same_contract_window: float = 2.0
    #: How often a request that got a pacing violation anyway is tried again before failing.
    retries: int = 3
    #: Seconds added to every historical window: a request may reach IB later than it left
    #: here, the one before it sooner.
    slack: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "messages_per_second",
            "history_requests",
            "history_window",
            "identical_within",
            "same_contract_requests",
            "same_contract_window",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"pacing rule {name} must be a positive number, got {value!r}")
        if self.retries < 0:
            raise ValueError(f"pacing rule retries must be 0 or more, got {self.retries!r}")
        if not (math.isfinite(self.slack) and self.slack >= 0):
            raise ValueError(f"pacing rule slack must be 0 or more seconds, got {self.slack!r}")

    def scaled(self, factor: float) -> PacingRules:
        """The same counts over windows ``factor`` times as long (tests shrink IB's minutes)."""
        return PacingRules(
            messages_per_second=self.messages_per_second,
            history_requests=self.history_requests,
            history_window=self.history_window * factor,
            identical_within=self.identical_within * factor,
            same_contract_requests=self.same_contract_requests,
            same_contract_window=self.same_contract_window * factor,
            retries=self.retries,
            slack=self.slack * factor,
        )


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """One historical data request, with what IB compares to find identical ones."""

    con_id: int
    exchange: str
    what_to_show: str
    duration: str
    bar_size: str
    rth: bool
    end: str = ""

    @property
    def contract_key(self) -> tuple[int, str, str]:
        """What IB's "same contract, exchange and tick type" rule compares."""
        return (self.con_id, self.exchange, self.what_to_show)

    @property
    def weight(self) -> int:
        """How many requests IB counts it as in the ten-minute rule (BID_ASK counts twice)."""
        return 2 if self.what_to_show.upper() == "BID_ASK" else 1


def _window_wait(
    stamps: Iterable[tuple[float, int]], *, limit: int, window: float, now: float, weight: int = 1
) -> float:
    """Seconds until ``weight`` more fits under ``limit`` in the ``window`` before now, given
    the (time sent, weight) ``stamps``."""
    inside = sorted(s for s in stamps if s[0] > now - window)
    used = sum(w for _, w in inside)
    if used + weight <= limit:
        return 0.0
    for at, w in inside:
        used -= w
        if used + weight <= limit:
            return at + window - now
    return math.inf  # heavier than the limit itself (the caller caps the weight)


@dataclass(slots=True)
class _Stamp:
    """One historical request sent: when, and whether its answer is still to come."""

    at: float
    request: HistoryRequest
    pending: bool = False

    def time(self, now: float) -> float:
        # IB sees a request somewhere between its send and its answer: while none came, it
        # may be seeing it now.
        return max(self.at, now) if self.pending else self.at


class Pacer:
    """The recent requests of one gateway session and when the next one may go."""

    def __init__(self, rules: PacingRules | None = None) -> None:
        self.rules = rules or PacingRules()
        self._messages: deque[float] = deque()
        self._history: deque[_Stamp] = deque()

    def _forget(self, now: float) -> None:
        rules = self.rules
        while self._messages and self._messages[0] <= now - 1.0:
            self._messages.popleft()
        keep = rules.slack + max(
            rules.history_window, rules.identical_within, rules.same_contract_window
        )
        while self._history and self._history[0].time(now) <= now - keep:
            self._history.popleft()

    def delay(self, now: float, request: HistoryRequest | None = None) -> float:
        """Seconds until ``request`` (None: a request that is not historical data) may go."""
        self._forget(now)
        rules = self.rules
        messages = ((t, 1) for t in self._messages)
        waits = [_window_wait(messages, limit=rules.messages_per_second, window=1.0, now=now)]
        if request is None:
            return max(0.0, *waits)
        history = [(stamp.time(now), stamp.request) for stamp in self._history]
        slack = rules.slack
        waits.append(
            _window_wait(
                ((t, r.weight) for t, r in history),
                limit=rules.history_requests,
                window=rules.history_window + slack,
                now=now,
                # Never more than the limit, or it would never fit.
                weight=min(request.weight, rules.history_requests),
            )
        )
        waits.append(
            _window_wait(
                ((t, 1) for t, r in history if r.contract_key == request.contract_key),
                limit=rules.same_contract_requests,
                window=rules.same_contract_window + slack,
                now=now,
            )
        )
        same = [t for t, r in history if r == request]
        if same:
            waits.append(max(same) + rules.identical_within + slack - now)
        return max(0.0, *waits)

    def record(
        self, now: float, request: HistoryRequest | None = None, *, pending: bool = False
    ) -> None:
        """``request`` went to IB at ``now`` (it counts there whatever the answer); with
        ``pending`` it counts as seen now until :meth:`answered` says when its answer came."""
        self._messages.append(now)
        if request is not None:
            self._history.append(_Stamp(now, request, pending))

    def answered(self, now: float, request: HistoryRequest) -> None:
        """IB answered ``request`` (sent ``pending``) at ``now``: it counts from then on, so a
        rule measured from it holds at IB even when requests queued on the way."""
        for stamp in self._history:
            if stamp.pending and stamp.request == request:
                stamp.at, stamp.pending = max(stamp.at, now), False
                return

    def reserve(
        self, now: float, request: HistoryRequest | None = None, *, pending: bool = False
    ) -> float:
        """Take the slot when it is free (returns 0, the request counts as sent), else return
        the seconds to wait before asking again."""
        wait = self.delay(now, request)
        if wait <= 0:
            self.record(now, request, pending=pending)
        return wait


def is_pacing_violation(code: int, message: str) -> bool:
    """True for IB's "historical data request pacing violation" (162 has other meanings too:
    no data, no permission)."""
    return code == HISTORICAL_DATA_ERROR and "pacing violation" in message.lower()
