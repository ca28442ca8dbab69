"""A journal's health: why its writes fail (``problem``), and who is told when that changes."""

from __future__ import annotations

import logging
from collections.abc import Callable

# The journal logs under one name whichever of its modules speaks.
log = logging.getLogger("supervisor.journal")


class JournalHealth:
    """``problem`` and its listeners, for both engines' plumbing (``where`` names the journal)."""

    where: str

    def _init_health(self) -> None:
        self._problem: str | None = None
        self._listeners: list[Callable[[str | None], None]] = []

    @property
    def problem(self) -> str | None:
        """Why the last write failed, or None while writes succeed."""
        return self._problem

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(problem)`` when writes start failing (a reason) or recover (None).

        Called on whichever thread made the write, outside the journal's lock.
        """
        self._listeners.append(listener)

    def _health(self, problem: str | None) -> None:
        was, self._problem = self._problem, problem
        if (was is None) == (problem is None):
            return
        if problem is None:
            log.warning("journal_recovered where=%s", self.where)
        else:
            log.error("journal_unwritable where=%s reason=%s", self.where, problem)
        for listener in list(self._listeners):
            try:
                listener(problem)
            except Exception:
                log.exception("journal_listener_failed")
