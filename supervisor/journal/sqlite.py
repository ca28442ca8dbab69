"""The journal in one SQLite file: :class:`JournalTables`' operations on :class:`SqliteFile`'s
plumbing (events, alert book and login ledger, operator state, order intents, the strategies'
key-value store).
"""

from __future__ import annotations

from supervisor.journal.port import Journal, Leadership
from supervisor.journal.sqlite_file import SqliteFile
from supervisor.journal.tables import JournalTables


class SqliteJournal(SqliteFile, JournalTables):
    """The journal in one SQLite file (WAL); thread-safe, one connection behind a lock."""


def _conforms(journal: SqliteJournal) -> tuple[Journal, Leadership]:
    # mypy checks here that SqliteJournal satisfies the Journal and Leadership Protocols.
    return journal, journal
