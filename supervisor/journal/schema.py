"""The journal's SQL schema as ordered migrations; ``SCHEMA_VERSION`` is the newest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """Schema step to ``version``: statements run in one transaction."""

    version: int
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        (
            "CREATE TABLE events ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " at TEXT NOT NULL, kind TEXT NOT NULL, gateway TEXT, strategy TEXT,"
            " severity TEXT NOT NULL, message TEXT NOT NULL, fields TEXT NOT NULL)",
            "CREATE INDEX events_at ON events (at)",
            "CREATE INDEX events_gateway ON events (gateway, id)",
            "CREATE TABLE state ("
            " name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE TABLE gateway_operator ("
            " gateway TEXT PRIMARY KEY, stopped_by_operator INTEGER NOT NULL,"
            " fatal_acknowledged_at TEXT, updated_at TEXT NOT NULL)",
            "CREATE TABLE order_intents ("
            " intent_key TEXT PRIMARY KEY, strategy TEXT NOT NULL, gateway TEXT NOT NULL,"
            " account TEXT NOT NULL, client_id INTEGER NOT NULL, order_id INTEGER,"
            " perm_id INTEGER, contract TEXT NOT NULL, order_json TEXT NOT NULL,"
            " status TEXT NOT NULL, filled REAL NOT NULL,"
            " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE INDEX order_intents_strategy ON order_intents (strategy, status)",
            "CREATE INDEX order_intents_perm ON order_intents (perm_id)",
            "CREATE TABLE order_intent_history ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, intent_key TEXT NOT NULL,"
            " at TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL)",
            "CREATE INDEX order_intent_history_key ON order_intent_history (intent_key, id)",
            "CREATE TABLE strategy_kv ("
            " strategy TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
            " updated_at TEXT NOT NULL, PRIMARY KEY (strategy, name))",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
