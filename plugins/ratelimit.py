"""A token bucket for order messages: at most ``rate`` per second, bursts up to ``burst``.

Pure: the caller passes ``now`` (monotonic seconds), so tests drive time exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plugins.config import MAX_MESSAGES_PER_SECOND

__all__ = ["TokenBucket"]


@dataclass
class TokenBucket:
    """Tokens refill continuously at ``rate``/s up to ``burst``; one message takes one token."""

    rate: float
    burst: float = 0.0
    _tokens: float = field(default=-1.0, repr=False)
    _at: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.rate <= MAX_MESSAGES_PER_SECOND:
            raise ValueError(
                f"rate limit {self.rate}/s is outside (0, {MAX_MESSAGES_PER_SECOND}]: "
                "IB disconnects clients above about 50 messages/s"
            )
        if self.burst <= 0:
            # One second's worth, at least one message.
            self.burst = max(1.0, self.rate)
        self._tokens = self.burst

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def try_take(self, now: float, count: float = 1.0) -> bool:
        """Take ``count`` tokens if there are enough; False (nothing taken) otherwise."""
        self._refill(now)
        if self._tokens >= count:
            self._tokens -= count
            return True
        return False

    def wait_time(self, now: float, count: float = 1.0) -> float:
        """Seconds until ``count`` tokens are there (0 when they are there now)."""
        self._refill(now)
        missing = count - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
