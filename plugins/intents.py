"""Order intent keys and states: the stable key an order carries to IB as ``orderRef``.

Pure: the time and the random bits come in, so keys are reproducible in tests.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import datetime

__all__ = [
    "KEY_MAX_LENGTH",
    "LEGS",
    "IntentState",
    "belongs_to",
    "leg_key",
    "leg_of",
    "new_intent_key",
    "parent_of",
    "strategy_of",
]

#: IB keeps orderRef as free text; staying short keeps it readable in TWS and in logs.
KEY_MAX_LENGTH = 40
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SUFFIX = re.compile(r"^[0-9A-HJKMNP-TV-Z]{16}$")


class IntentState(enum.Enum):
    """Where an order intent is: PENDING_SEND -> SENT -> ACKED -> FILLED/CANCELLED/REJECTED.

    The one definition: ``supervisor.journal`` stores these values and returns this enum.
    """

    PENDING_SEND = "PENDING_SEND"
    SENT = "SENT"
    ACKED = "ACKED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        """True when IB will never act on the order again."""
        return self in (IntentState.FILLED, IntentState.CANCELLED, IntentState.REJECTED)

    @property
    def maybe_live(self) -> bool:
        """True when the order may be working at IB: never send it again blind."""
        return not self.terminal

    @classmethod
    def from_ib(cls, status: str) -> IntentState:
        """Map a TWS API order status word; unknown words map to UNKNOWN."""
        return _IB_STATUS.get(status.strip().lower(), cls.UNKNOWN)


_IB_STATUS = {
    "apipending": IntentState.SENT,
    "pendingsubmit": IntentState.SENT,
    "presubmitted": IntentState.ACKED,
    "submitted": IntentState.ACKED,
    "pendingcancel": IntentState.ACKED,
    "filled": IntentState.FILLED,
    "cancelled": IntentState.CANCELLED,
    "apicancelled": IntentState.CANCELLED,
    "inactive": IntentState.REJECTED,
}


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_intent_key(strategy: str, *, now: datetime, random_bits: Callable[[int], int]) -> str:
    """``<strategy>-<16 chars>``: 48 bits of milliseconds then 32 random bits, Crockford base32.

    Sorted by time like a ULID (so the journal's order is readable) yet short enough for
    orderRef; ``random_bits(k)`` returns a k-bit integer (``random.getrandbits``).
    """
    if not strategy or strategy.endswith("-"):
        raise ValueError(f"intent key: strategy name {strategy!r} is not usable")
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    suffix = _encode((millis << 32) | (random_bits(32) & 0xFFFFFFFF), 16)
    key = f"{strategy}-{suffix}"
    if len(key) > KEY_MAX_LENGTH:
        raise ValueError(
            f"intent key for strategy {strategy!r} would be {len(key)} characters; "
            f"strategy names must be at most {KEY_MAX_LENGTH - 17} characters"
        )
    return key


#: A bracket's exits carry the entry's key plus one of these (``<entry>.tp``, ``<entry>.sl``).
LEGS = ("tp", "sl")


def leg_key(parent: str, leg: str) -> str:
    """The key of a bracket exit: derived from the entry's, so the group is found by key."""
    if leg not in LEGS:
        raise ValueError(f"bracket leg {leg!r} is not one of {', '.join(LEGS)}")
    return f"{parent}.{leg}"


def parent_of(key: str) -> str | None:
    """The entry's key when ``key`` is a bracket exit, else None."""
    head, sep, leg = key.rpartition(".")
    return head if sep and leg in LEGS and head else None


def leg_of(key: str) -> str | None:
    """``"tp"`` or ``"sl"`` for a bracket exit's key, else None."""
    return key.rpartition(".")[2] if parent_of(key) is not None else None


def strategy_of(key: str) -> str | None:
    """The strategy a key was made for, or None when ``key`` is not an intent key."""
    key = parent_of(key) or key
    head, sep, suffix = key.rpartition("-")
    if not sep or not head or not _SUFFIX.match(suffix):
        return None
    return head


def belongs_to(key: str, strategy: str) -> bool:
    """True when ``key`` (an orderRef seen at IB) is one of ``strategy``'s intent keys."""
    return strategy_of(key) == strategy
