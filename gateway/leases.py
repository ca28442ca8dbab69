"""Client id leases from one gateway's configured range.

One id is held for the supervisor's health probe; strategies lease the rest. An id refused
with error 326 ("client id already in use": the gateway can hold an id for a while after a
disconnect) is parked for a cool-down and the holder moves to a fresh id. Pure: time comes in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

#: How long an id refused with 326 is left alone before it is handed out again.
DEFAULT_COOLDOWN = dt.timedelta(minutes=2)


class NoClientIdFree(RuntimeError):
    """Every id of the range is leased or cooling down."""


@dataclass
class ClientIdLeases:
    """The ids of one gateway: who holds which, and which are cooling down after a 326."""

    start: int
    end: int
    probe_id: int
    cooldown: dt.timedelta = DEFAULT_COOLDOWN
    _holders: dict[int, str] = field(default_factory=dict)
    _cooling: dict[int, dt.datetime] = field(default_factory=dict)

    PROBE = "<probe>"

    def __post_init__(self) -> None:
        if not self.start <= self.probe_id <= self.end:
            raise ValueError(f"probe id {self.probe_id} is outside {self.start}-{self.end}")
        self._holders[self.probe_id] = self.PROBE

    def holder_of(self, client_id: int) -> str | None:
        return self._holders.get(client_id)

    def held_by(self, owner: str) -> int | None:
        for client_id, holder in self._holders.items():
            if holder == owner:
                return client_id
        return None

    @property
    def probe(self) -> int:
        """The probe's current id."""
        found = self.held_by(self.PROBE)
        assert found is not None
        return found

    def lease(self, owner: str, *, now: dt.datetime, prefer: int | None = None) -> int:
        """Give ``owner`` an id (``prefer`` when free), keeping the one it holds if any."""
        held = self.held_by(owner)
        if held is not None:
            return held
        if prefer is not None and self._free(prefer, now):
            self._holders[prefer] = owner
            return prefer
        for client_id in range(self.start, self.end + 1):
            if self._free(client_id, now):
                self._holders[client_id] = owner
                return client_id
        raise NoClientIdFree(f"no client id free in {self.start}-{self.end} for {owner}")

    def release(self, owner: str) -> None:
        held = self.held_by(owner)
        if held is not None and owner != self.PROBE:
            del self._holders[held]

    def rotate(self, owner: str, *, now: dt.datetime) -> int:
        """The id ``owner`` holds was refused with 326: park it and lease another."""
        held = self.held_by(owner)
        if held is not None:
            del self._holders[held]
            self._cooling[held] = now + self.cooldown
        try:
            return self.lease(owner, now=now)
        except NoClientIdFree:
            if held is not None:
                # Better to retry the refused id later than to hold nothing at all.
                del self._cooling[held]
                self._holders[held] = owner
            raise

    def _free(self, client_id: int, now: dt.datetime) -> bool:
        if not self.start <= client_id <= self.end or client_id in self._holders:
            return False
        until = self._cooling.get(client_id)
        if until is not None and until > now:
            return False
        self._cooling.pop(client_id, None)
        return True
