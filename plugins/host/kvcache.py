"""A strategy's key-value records in memory: loaded once off the loop, written behind it.

The strategy's own names (``ctx.store``) and the host's records under ``_host`` (positions,
execution ids, the day's P&L) all live here. Reads never touch the journal; each write is
checked as JSON at once (a bad value is the strategy's error, raised in its call), kept here
and queued on the journal's writer thread, in order, so a locked journal delays the write and
never the event loop.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from plugins.host.services import HostServices

__all__ = ["StrategyKv"]


class StrategyKv:
    """One strategy's records; :meth:`load` before the first read."""

    def __init__(self, name: str, services: HostServices) -> None:
        self.name = name
        self._services = services
        self._values: dict[str, str] = {}  # name -> JSON text: reads hand out fresh copies

    async def load(self) -> None:
        """Read every record of the strategy from the journal (bounded; JournalFailure)."""
        store, name = self._services.store, self.name
        items = await self._services.journal(lambda: store.kv_items(name))
        self._values = {key: json.dumps(value) for key, value in items.items()}

    def get(self, name: str) -> Any | None:
        text = self._values.get(name)
        return None if text is None else json.loads(text)

    def set(self, name: str, value: Any) -> None:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"strategy {self.name}: kv {name!r}: not JSON ({exc})") from None
        self._values[name] = text
        services = self._services
        services.writer.later(
            functools.partial(
                services.store.kv_set, self.name, name, json.loads(text), now=services.clock.now()
            )
        )

    def delete(self, name: str) -> bool:
        existed = self._values.pop(name, None) is not None
        store = self._services.store
        self._services.writer.later(functools.partial(store.kv_delete, self.name, name))
        return existed
