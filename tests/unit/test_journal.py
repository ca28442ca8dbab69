"""The journal's conformance tests, on SQLite and on a real PostgreSQL server (``backend``):
persistence across restarts, intents, events, kv, migrations, a locked journal, the async
facade; then what only the SQLite file has (WAL, its flock, damaged files, file modes).

The PostgreSQL runs are marked ``postgres`` and use a throwaway cluster (tests/pgcluster.py).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from supervisor.alertpolicy import Alert, AlertBook, AlertPolicy, Route, Severity
from supervisor.budget import Budget, ledger_from_record, ledger_to_record
from supervisor.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AsyncJournal,
    IntentStatus,
    JournalError,
    JournalLockedError,
    JournalUnavailable,
    Migration,
    SqliteJournal,
)

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


#: The journal's tables a writer needs (meta stays readable for the schema checks).
_TABLES = "events, state, gateway_operator, order_intents, order_intent_history, strategy_kv"


@dataclass
class Backend:
    """One engine under test: how to open its journal and to reach its storage directly."""

    name: str
    open: Callable[..., Any]
    execute: Callable[[str], None]
    hold_write_lock: Callable[[], AbstractContextManager[None]]
    opened: list[Any] = field(default_factory=list)


def _sqlite_backend(path: Path) -> Backend:
    def execute(sql: str) -> None:
        db = sqlite3.connect(path)
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()

    @contextmanager
    def hold() -> Iterator[None]:
        other = _hold_write_lock(path)
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()

    backend = Backend("sqlite", lambda **kw: SqliteJournal(path, **kw), execute, hold)
    return backend


def _postgres_backend(cluster: Any, url: str) -> Backend:
    import psycopg

    from supervisor.journal.postgres import PostgresJournal

    def open_(**kw: Any) -> Any:
        journal = PostgresJournal(url, password=cluster.password, **kw)
        assert journal.try_lead(keep=False)
        return journal

    def execute(sql: str) -> None:
        with psycopg.connect(url, password=cluster.password, autocommit=True) as conn:
            conn.execute(sql)

    @contextmanager
    def hold() -> Iterator[None]:
        # Another session (as another process would) holding the tables against writers;
        # readers go on, as under SQLite's WAL.
        with psycopg.connect(url, password=cluster.password) as conn:
            conn.execute(f"LOCK TABLE {_TABLES}, leader_lease IN EXCLUSIVE MODE")
            yield
            conn.rollback()

    return Backend("postgres", open_, execute, hold)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        made = _sqlite_backend(tmp_path / "journal.sqlite")
    else:
        made = _postgres_backend(
            request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_url")
        )
    plain_open = made.open

    def tracked(**kw: Any) -> Any:
        journal = plain_open(**kw)
        made.opened.append(journal)
        return journal

    made.open = tracked
    yield made
    for journal in made.opened:
        journal.close()


def _intent(journal: Any, key: str, *, strategy: str = "mean-rev", at: datetime = T0):
    return journal.record_intent(
        key=key,
        strategy=strategy,
        gateway="paper-a",
        account="DU123456",
        client_id=7,
        contract={"symbol": "AAPL", "secType": "STK", "exchange": "SMART"},
        order={"action": "BUY", "totalQuantity": 10, "orderType": "LMT", "lmtPrice": 170.5},
        now=at,
    )


# -- persistence across a restart -------------------------------------------------------------


def test_reopened_journal_keeps_everything_written_before_close(backend: Backend) -> None:
    policy = AlertPolicy(routes=(Route("ops"),))
    book = AlertBook(policy=policy)
    book.raise_(Alert("gateway:paper-a:2fa", Severity.CRITICAL, "2FA needed", "approve"), T0)
    ledger = {"ibuser": Budget(limit=4, window=timedelta(hours=1)).record(T0).record(T0)}

    with backend.open() as journal:
        event_id = journal.append_event(at=T0, kind="login", gateway="paper-a", fields={"n": 1})
        journal.save_alert_book(book.to_record(), now=T0)
        journal.save_login_ledger(ledger_to_record(ledger), now=T0)
        journal.set_operator_state(
            "paper-a", stopped_by_operator=True, fatal_acknowledged_at=T0, now=T0
        )
        _intent(journal, "k-1")
        journal.kv_set("mean-rev", "position", {"AAPL": 10}, now=T0)

    with backend.open() as journal:
        [event] = journal.events()
        assert (event.id, event.kind, event.gateway, event.fields) == (
            event_id,
            "login",
            "paper-a",
            {"n": 1},
        )
        restored = AlertBook.from_record(journal.load_alert_book() or {}, policy=policy)
        assert restored.is_open("gateway:paper-a:2fa")
        # Raising the same problem after the restart pages nobody.
        assert (
            restored.raise_(
                Alert("gateway:paper-a:2fa", Severity.CRITICAL, "2FA needed", "again"), T0
            )
            == []
        )
        again = ledger_from_record(journal.load_login_ledger() or {}, limit=4)
        assert again["ibuser"].used(T0 + timedelta(minutes=1)) == 2
        state = journal.operator_states()["paper-a"]
        assert state.stopped_by_operator is True
        assert state.fatal_acknowledged_at == T0
        intent = journal.intent("k-1")
        assert intent is not None and intent.status is IntentStatus.PENDING_SEND
        assert journal.kv_get("mean-rev", "position") == {"AAPL": 10}


def test_named_records_survive_a_restart_and_never_touch_the_alert_book(backend: Backend) -> None:
    with backend.open() as journal:
        journal.save_record("alert_book", {"mine": 1}, now=T0)
        journal.save_record("gateway:paper-a:status", {"state": "api_ready"}, now=T0)
    with backend.open() as journal:
        assert journal.load_record("gateway:paper-a:status") == {"state": "api_ready"}
        assert journal.load_record("alert_book") == {"mine": 1}
        assert journal.load_alert_book() is None
        assert journal.load_record("other") is None


def test_fresh_journal_has_no_saved_state(backend: Backend) -> None:
    with backend.open() as journal:
        assert journal.load_alert_book() is None
        assert journal.load_login_ledger() is None
        assert journal.operator_states() == {}
        assert journal.events() == []


def test_journal_runs_in_wal_mode_at_current_schema(path: Path) -> None:
    with SqliteJournal(path) as journal:
        assert journal.journal_mode == "wal"
        assert journal.schema_version == SCHEMA_VERSION
    # WAL is a property of the file: a plain connection sees it too.
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


# -- order intents ----------------------------------------------------------------------------


def test_intent_moves_pending_sent_acked_filled_and_keeps_history(backend: Backend) -> None:
    with backend.open() as journal:
        created = _intent(journal, "mr-0001")
        assert created.status is IntentStatus.PENDING_SEND
        assert created.contract["symbol"] == "AAPL"
        sent = journal.mark_sent("mr-0001", now=T0 + timedelta(seconds=1), order_id=42)
        assert (sent.status, sent.order_id) == (IntentStatus.SENT, 42)
        acked = journal.update_from_broker(
            "mr-0001",
            perm_id=9001,
            status=IntentStatus.from_ib("Submitted"),
            filled=0,
            now=T0 + timedelta(seconds=2),
        )
        assert acked is not None and (acked.status, acked.perm_id) == (IntentStatus.ACKED, 9001)
        filled = journal.update_from_broker(
            "mr-0001",
            perm_id=None,
            status=IntentStatus.from_ib("Filled"),
            filled=10,
            now=T0 + timedelta(seconds=3),
        )
        assert filled is not None
        assert (filled.status, filled.perm_id, filled.filled) == (IntentStatus.FILLED, 9001, 10)
        assert [h.status for h in filled.history] == [
            IntentStatus.PENDING_SEND,
            IntentStatus.SENT,
            IntentStatus.ACKED,
            IntentStatus.FILLED,
        ]
        assert filled.updated_at == T0 + timedelta(seconds=3)
        assert filled.created_at == T0


def test_late_broker_report_never_revives_a_terminal_intent(backend: Backend) -> None:
    with backend.open() as journal:
        _intent(journal, "k")
        journal.update_from_broker("k", perm_id=5, status=IntentStatus.CANCELLED, filled=0, now=T0)
        after = journal.update_from_broker(
            "k", perm_id=5, status=IntentStatus.ACKED, filled=0, now=T0 + timedelta(seconds=1)
        )
        assert after is not None and after.status is IntentStatus.CANCELLED
        # A broker report that raced ahead of mark_sent is not undone by it either.
        _intent(journal, "k2")
        journal.update_from_broker("k2", perm_id=6, status=IntentStatus.ACKED, filled=0, now=T0)
        assert journal.mark_sent("k2", now=T0).status is IntentStatus.ACKED


def test_duplicate_intent_key_is_refused_naming_the_key(backend: Backend) -> None:
    with backend.open() as journal:
        _intent(journal, "dup-1")
        with pytest.raises(ValueError, match="dup-1"):
            _intent(journal, "dup-1")


def test_unknown_order_ref_is_reported_as_none(backend: Backend) -> None:
    with backend.open() as journal:
        assert (
            journal.update_from_broker(
                "not-ours", perm_id=1, status=IntentStatus.ACKED, filled=0, now=T0
            )
            is None
        )
        with pytest.raises(KeyError, match="not-ours"):
            journal.mark_sent("not-ours", now=T0)


def test_open_and_maybe_live_intents_are_per_strategy_and_exclude_terminal(
    backend: Backend,
) -> None:
    with backend.open() as journal:
        for key in ("a-pending", "a-sent", "a-acked", "a-filled", "a-unknown"):
            _intent(journal, key, strategy="a")
        _intent(journal, "b-pending", strategy="b")
        journal.mark_sent("a-sent", now=T0)
        journal.update_from_broker(
            "a-acked", perm_id=1, status=IntentStatus.ACKED, filled=0, now=T0
        )
        journal.update_from_broker(
            "a-filled", perm_id=2, status=IntentStatus.FILLED, filled=10, now=T0
        )
        journal.update_from_broker(
            "a-unknown", perm_id=None, status=IntentStatus.UNKNOWN, filled=0, now=T0
        )
        assert {i.key for i in journal.open_intents("a")} == {"a-pending", "a-sent", "a-acked"}
        assert {i.key for i in journal.intents_maybe_live("a")} == {
            "a-pending",
            "a-sent",
            "a-acked",
            "a-unknown",
        }
        assert {i.key for i in journal.open_intents("b")} == {"b-pending"}


def test_ib_status_strings_map_to_intent_states() -> None:
    assert IntentStatus.from_ib("PreSubmitted") is IntentStatus.ACKED
    assert IntentStatus.from_ib("ApiCancelled") is IntentStatus.CANCELLED
    assert IntentStatus.from_ib("Inactive") is IntentStatus.REJECTED
    assert IntentStatus.from_ib("SomethingNew") is IntentStatus.UNKNOWN


def test_intent_with_non_json_order_is_refused_clearly(backend: Backend) -> None:
    with backend.open() as journal, pytest.raises(ValueError, match="bad-1 order"):
        journal.record_intent(
            key="bad-1",
            strategy="s",
            gateway="g",
            account="DU1",
            client_id=1,
            contract={},
            order={"price": object()},
            now=T0,
        )


# -- events -----------------------------------------------------------------------------------


def test_events_query_by_id_time_gateway_and_limit(backend: Backend) -> None:
    with backend.open() as journal:
        ids = [
            journal.append_event(
                at=T0 + timedelta(minutes=i),
                kind="heartbeat_missed" if i % 2 else "state",
                gateway="paper-a" if i % 2 else "paper-b",
                message=f"event {i}",
            )
            for i in range(10)
        ]
        assert ids == sorted(ids) and len(set(ids)) == 10
        assert [e.message for e in journal.events(since_id=ids[6])] == [
            "event 7",
            "event 8",
            "event 9",
        ]
        since = journal.events(since=T0 + timedelta(minutes=8))
        assert [e.message for e in since] == ["event 8", "event 9"]
        assert since[0].at == T0 + timedelta(minutes=8)
        a_only = journal.events(gateway="paper-a", limit=2)
        assert [e.message for e in a_only] == ["event 1", "event 3"]
        assert journal.events(limit=3)[-1].message == "event 2"
        as_json = journal.events(limit=1)[0].to_json()
        assert as_json["kind"] == "state" and as_json["at"].startswith("2025-03-03T14:30")
        with pytest.raises(ValueError, match="limit"):
            journal.events(limit=0)


def test_naive_time_is_refused_with_the_field_named(backend: Backend) -> None:
    with backend.open() as journal, pytest.raises(ValueError, match="event time"):
        journal.append_event(at=datetime(2025, 1, 1), kind="x")


# -- strategy key-value store -----------------------------------------------------------------


def test_kv_stores_json_values_per_strategy(backend: Backend) -> None:
    with backend.open() as journal:
        assert journal.kv_get("s1", "n") is None
        journal.kv_set("s1", "n", 1, now=T0)
        journal.kv_set("s1", "n", [1, 2, {"x": None}], now=T0)
        journal.kv_set("s2", "n", "other", now=T0)
        assert journal.kv_get("s1", "n") == [1, 2, {"x": None}]
        assert journal.kv_get("s2", "n") == "other"
        assert journal.kv_delete("s1", "n") is True
        assert journal.kv_delete("s1", "n") is False
        assert journal.kv_get("s1", "n") is None
        assert journal.kv_get("s2", "n") == "other"


def test_kv_items_reads_every_record_of_one_strategy_at_once(backend: Backend) -> None:
    with backend.open() as journal:
        assert journal.kv_items("s1") == {}
        journal.kv_set("s1", "a", {"x": [1]}, now=T0)
        journal.kv_set("s1", "_host", {"positions": {}}, now=T0)
        journal.kv_set("s2", "a", "other", now=T0)
        assert journal.kv_items("s1") == {"a": {"x": [1]}, "_host": {"positions": {}}}


# -- locking, corruption, schema ----------------------------------------------------------------


_HOLDER = """
import sys
from supervisor.journal import SqliteJournal
j = SqliteJournal(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
j.close()
"""


def test_second_supervisor_process_gets_locked_error_with_pid(path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(JournalLockedError) as caught:
            SqliteJournal(path)
        assert caught.value.pid == holder.pid
        assert f"locked by another supervisor (pid {holder.pid})" in str(caught.value)
        assert str(path) in str(caught.value)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The kernel dropped the dead holder's lock: no stale lock file blocks a new supervisor.
    with SqliteJournal(path) as journal:
        assert journal.journal_mode == "wal"


def test_second_open_in_the_same_process_is_refused_too(path: Path) -> None:
    with SqliteJournal(path), pytest.raises(JournalLockedError):
        SqliteJournal(path)


def test_corrupt_file_gives_a_clear_error_naming_it(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(JournalError, match="not a usable SQLite database") as caught:
        SqliteJournal(path)
    assert str(path) in str(caught.value)
    # The failed open left the lock free.
    path.unlink()
    SqliteJournal(path).close()


def test_missing_directory_gives_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "journal.sqlite"
    with pytest.raises(JournalError, match="does not exist") as caught:
        SqliteJournal(target)
    assert str(target) in str(caught.value)


def test_directory_in_place_of_the_file_gives_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "journal.sqlite"
    target.mkdir()
    with pytest.raises(JournalError) as caught:
        SqliteJournal(target)
    assert str(target) in str(caught.value)


def test_newer_schema_on_disk_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(JournalError, match="schema version 99 is newer"):
        backend.open()


def test_migration_hook_runs_only_new_migrations(backend: Backend) -> None:
    backend.open().close()
    extra = Migration(SCHEMA_VERSION + 1, ("ALTER TABLE events ADD COLUMN source TEXT",))
    seen: list[tuple[int, int]] = []
    with backend.open(
        migrations=(*MIGRATIONS, extra), on_migrate=lambda a, b: seen.append((a, b))
    ) as journal:
        assert journal.schema_version == SCHEMA_VERSION + 1
    assert seen == [(SCHEMA_VERSION, SCHEMA_VERSION + 1)]
    seen.clear()
    with backend.open(migrations=(*MIGRATIONS, extra), on_migrate=lambda a, b: seen.append((a, b))):
        pass
    assert seen == []


def test_closed_journal_refuses_calls(backend: Backend) -> None:
    journal = backend.open()
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        journal.append_event(at=T0, kind="x")


# -- concurrency and the async facade -----------------------------------------------------------


def test_threads_writing_at_once_lose_nothing(backend: Backend) -> None:
    with backend.open() as journal:

        def write(n: int) -> None:
            for i in range(50):
                journal.append_event(at=T0, kind="t", message=f"{n}-{i}")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(journal.events(limit=1000)) == 200


async def test_async_journal_runs_calls_on_its_own_thread(backend: Backend) -> None:
    journal = backend.open()
    facade = AsyncJournal(journal)
    loop_thread = threading.get_ident()
    seen: list[int] = []
    try:
        await facade.run(lambda: seen.append(threading.get_ident()))
        first = await facade.append_event(at=T0, kind="a", gateway="g")
        await facade.save_alert_book({"seq": 3, "open": [], "pending": []}, now=T0)
        results = await asyncio.gather(
            *(facade.append_event(at=T0, kind=f"k{i}") for i in range(20))
        )
        assert results == sorted(results)  # one thread: submission order is commit order
        assert (await facade.load_alert_book() or {})["seq"] == 3
        events = await facade.events(since_id=first, limit=100)
        assert len(events) == 20
        await facade.set_operator_state(
            "g", stopped_by_operator=False, fatal_acknowledged_at=None, now=T0
        )
        assert (await facade.operator_states())["g"].stopped_by_operator is False
        await facade.save_login_ledger({"u": []}, now=T0)
        assert await facade.load_login_ledger() == {"u": []}
    finally:
        await facade.aclose()
    assert seen and seen[0] != loop_thread


# -- a sick journal ---------------------------------------------------------------------------


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection (as another process would) holding the journal's write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_locked_journal_refuses_an_intent_within_the_bound_and_reports_it(
    backend: Backend,
) -> None:
    seen: list[str | None] = []
    with backend.open(wait=0.2) as journal:
        journal.add_listener(seen.append)
        with backend.hold_write_lock():
            t0 = time.monotonic()
            with pytest.raises(JournalUnavailable, match="locked by another"):
                _intent(journal, "k-locked")
            assert time.monotonic() - t0 < 1.0
            assert journal.problem is not None and "locked" in journal.problem
            with pytest.raises(JournalUnavailable):
                journal.append_event(at=T0, kind="x")
            assert seen == [journal.problem]  # told once, not per failed write
            # Reads go on while another connection writes (SQLite's WAL, PostgreSQL's MVCC).
            assert journal.intent("k-locked") is None
        _intent(journal, "k-after")
        assert journal.problem is None
        assert seen[-1] is None
        assert [i.key for i in journal.open_intents("mean-rev")] == ["k-after"]


async def test_the_async_journal_never_holds_the_loop_and_best_effort_writes_do_not_raise(
    backend: Backend,
) -> None:
    journal = backend.open(wait=0.3)
    facade = AsyncJournal(journal, wait=2.0)
    with backend.hold_write_lock():
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        t0 = time.monotonic()
        assert await facade.append_event(at=T0, kind="first") is None
        elapsed = time.monotonic() - t0
        assert facade.problem is not None
        # Unhealthy: queued without being awaited.
        t1 = time.monotonic()
        for n in range(5):
            await facade.append_event(at=T0, kind=f"queued-{n}")
        assert time.monotonic() - t1 < 0.1
        task.cancel()
        assert ticks >= int(elapsed / 0.01) // 2  # the loop kept running meanwhile
    await facade.append_event(at=T0, kind="after")
    kinds = [e.kind for e in await facade.events()]
    assert "after" in kinds and facade.problem is None
    await facade.aclose()


def test_a_corrupt_journal_is_a_clean_error_naming_the_file(path: Path) -> None:
    with SqliteJournal(path) as journal:
        for n in range(200):
            journal.append_event(at=T0, kind="filler", message="x" * 200, fields={"n": n})
    data = bytearray(path.read_bytes())
    for offset in range(4096 + 100, min(len(data), 4096 * 6), 7):
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=f"journal {path}") as info:
        SqliteJournal(path)
    assert "move it aside" in str(info.value) or "move the file aside" in str(info.value)
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(JournalError, match="move the file aside"):
        SqliteJournal(path)


def test_journal_files_are_created_private(path: Path) -> None:
    old = os.umask(0o022)
    try:
        with SqliteJournal(path) as journal:
            journal.append_event(at=T0, kind="x")
            for p in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + ".lock"),
            ):
                if p.exists():
                    assert p.stat().st_mode & 0o777 == 0o600, p
    finally:
        os.umask(old)
    path.chmod(0o644)
    SqliteJournal(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


# -- choosing the engine: storage.url ---------------------------------------------------------


def test_storage_url_is_validated_and_never_echoes_a_password() -> None:
    from pydantic import ValidationError

    from supervisor.fleet_settings import StorageSettings

    ok = StorageSettings(url="postgresql://ibfleet@db:5432/ibfleet", password={"env": "PGPW"})
    assert ok.where == "postgresql://ibfleet@db:5432/ibfleet"
    assert StorageSettings().where.endswith("ibfleet-journal.sqlite")
    for bad, why in (
        ("postgresql://ibfleet:hunter2@db/ibfleet", "must not hold a password"),
        ("postgresql://ibfleet@db/ibfleet?password=hunter2", "must not hold a password"),
        ("mysql://db/ibfleet", "must start with postgresql://"),
        ("postgresql://ibfleet@db/", "names no database"),
    ):
        with pytest.raises(ValidationError) as caught:
            StorageSettings(url=bad)
        [error] = caught.value.errors(include_input=False, include_url=False)
        assert why in error["msg"] and "hunter2" not in error["msg"]
    with pytest.raises(ValidationError, match=r"storage\.url is not"):
        StorageSettings(password={"env": "PGPW"})


def test_safe_url_drops_the_password_wherever_it_is() -> None:
    from supervisor.journal.postgres import safe_url

    assert safe_url("postgresql://u:pw@h:5/db") == "postgresql://u@h:5/db"
    assert safe_url("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require"
    )
    assert safe_url("postgresql://h/db") == "postgresql://h/db"


def test_the_sqlite_journal_always_leads_with_epoch_zero(path: Path) -> None:
    from supervisor.fleet_settings import StorageSettings
    from supervisor.wiring import open_journal

    journal = open_journal(StorageSettings(path=path), {})
    try:
        assert isinstance(journal, SqliteJournal)
        assert journal.is_leader and journal.epoch == 0
        leader = journal.leader()
        assert leader is not None and leader.expires_in is None
        assert leader.holder.endswith(f":{os.getpid()}")
    finally:
        journal.close()
    assert not journal.is_leader
