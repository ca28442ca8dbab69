"""The PostgreSQL journal shared by two supervisors, and a PostgreSQL server that stops.

Two journal objects on one database stand for a leader and its standby: the standby takes the
lease only once the leader's expires, and the stale leader's next intent write is refused (its
order would never be sent). A server stopped mid-run is an incident, not a freeze: calls raise
:class:`JournalUnavailable` within the bound, ``/readyz`` names the journal, and everything
recovers when the server is started again (the test's own cluster, stopped and restarted).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from supervisor.fleet_settings import StorageSettings
from supervisor.journal import AsyncJournal, JournalFenced, JournalUnavailable
from supervisor.journal.postgres import PostgresJournal
from supervisor.wiring import JOURNAL_ALERT, StartupError
from tests.pgcluster import Cluster, running_cluster
from tests.unit.test_supervisor_owners import Harness
from tests.waiting import until, wait_until

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 18, 17, 0, tzinfo=UTC)


def _intent(journal: PostgresJournal, key: str) -> Any:
    return journal.record_intent(
        key=key,
        strategy="s",
        gateway="gw",
        account="DU1",
        client_id=7,
        contract={"symbol": "AAPL"},
        order={"action": "BUY", "totalQuantity": 1},
        now=T0,
    )


def _open(cluster: Cluster, url: str, **kw: Any) -> PostgresJournal:
    return PostgresJournal(url, password=cluster.password, **kw)


# -- the lease and fencing ----------------------------------------------------------------------


def test_the_standby_leads_once_the_lease_expires_and_the_stale_leaders_intent_is_refused(
    pg_cluster: Cluster, pg_url: str
) -> None:
    leader = _open(pg_cluster, pg_url, lease_ttl=0.5, holder="host-a:1:aa")
    standby = _open(pg_cluster, pg_url, lease_ttl=0.5, holder="host-b:2:bb")
    roles: list[bool] = []
    leader.add_role_listener(roles.append)
    try:
        with pytest.raises(JournalFenced, match="not the leader"):
            _intent(standby, "before-anyone-leads")
        assert leader.try_lead(keep=False) and leader.epoch == 1 and leader.is_leader
        assert not standby.try_lead(keep=False)  # the lease is fresh
        _intent(leader, "k-1")
        with pytest.raises(JournalFenced, match="epoch 1 is held by host-a:1:aa"):
            _intent(standby, "standby-write")
        # Nobody renews: the lease runs out and the standby takes it with a newer epoch.
        wait_until(lambda: standby.try_lead(keep=False), timeout=10, what="standby takeover")
        assert standby.epoch == 2 and standby.is_leader
        info = standby.leader()
        assert info is not None and (info.holder, info.epoch) == ("host-b:2:bb", 2)

        with pytest.raises(JournalFenced, match=r"epoch 2 is held by host-b:2:bb") as caught:
            _intent(leader, "stale-write")
        assert "no longer leads" in str(caught.value)
        assert standby.intent("stale-write") is None  # nothing of it was written
        assert roles == [True, False] and not leader.is_leader
        assert not leader.renew()
        # Events are the stale leader's last words and still land; state does not.
        leader.append_event(at=T0, kind="stale-but-heard")
        with pytest.raises(JournalFenced):
            leader.save_alert_book({"seq": 1}, now=T0)
        # The new leader sees the old one's intent (it may be live at IB) and writes its own.
        assert {i.key for i in standby.intents_maybe_live("s")} == {"k-1"}
        _intent(standby, "k-2")
        standby.mark_sent("k-1", now=T0)
        with psycopg.connect(pg_url, password=pg_cluster.password) as conn:
            rows = conn.execute("SELECT intent_key, epoch FROM order_intents ORDER BY 1").fetchall()
        assert rows == [("k-1", 2), ("k-2", 2)]  # each row carries its last writer's epoch
    finally:
        leader.close()
        standby.close()


def test_a_renewed_lease_keeps_the_standby_out_and_closing_hands_it_on(
    pg_cluster: Cluster, pg_url: str
) -> None:
    leader = _open(pg_cluster, pg_url, lease_ttl=0.6)
    standby = _open(pg_cluster, pg_url, lease_ttl=0.6)
    try:
        assert leader.try_lead()  # with its renewer thread
        held_until = time.monotonic() + 2.0  # more than three lease lengths
        while time.monotonic() < held_until:
            assert not standby.try_lead(keep=False)
            time.sleep(0.05)  # pacing the attempts, not waiting for a condition
        assert leader.is_leader
        leader.close()  # hands the lease on: no need to wait for it to expire
        t0 = time.monotonic()
        assert standby.try_lead(keep=False)
        assert time.monotonic() - t0 < 0.5 and standby.epoch == 2
    finally:
        leader.close()
        standby.close()


# -- a server that stops ------------------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, so stopping it leaves the session's alone."""
    with running_cluster() as cluster:
        cluster.psql("CREATE DATABASE journal")
        yield cluster


def test_a_stopped_server_is_unavailable_within_the_bound_and_recovers(
    own_cluster: Cluster,
) -> None:
    journal = _open(own_cluster, own_cluster.url("journal"), wait=0.3)
    seen: list[str | None] = []
    journal.add_listener(seen.append)
    try:
        assert journal.try_lead(keep=False)
        _intent(journal, "before")
        own_cluster.stop("fast")
        for attempt in range(3):  # the first finds the dropped session, the next reconnect
            t0 = time.monotonic()
            with pytest.raises(JournalUnavailable, match="server") as caught:
                _intent(journal, f"while-down-{attempt}")
            # Refused connections answer at once; 2 s is libpq's connect minimum.
            assert time.monotonic() - t0 < 2.5, caught.value
        assert journal.problem is not None and len(seen) == 1 and seen[0] is not None  # told once
        assert own_cluster.password not in str(caught.value)
        with pytest.raises(JournalUnavailable):
            journal.intent("before")
        own_cluster.start()
        _intent(journal, "after")
        assert journal.problem is None and seen[-1] is None
        assert journal.intent("before") is not None
        assert journal.renew()  # the lease outlived the outage: nobody else took it
    finally:
        journal.close()


@pytest.fixture
async def pg_harness(tmp_path: Path, own_cluster: Cluster) -> Any:
    made = Harness(tmp_path)
    storage = StorageSettings(
        path=tmp_path / "journal.sqlite",  # not used with url; named to keep files in tmp_path
        url=own_cluster.url("journal"),
        password={"env": "IBFLEET_TEST_JOURNAL_PASSWORD"},  # type: ignore[arg-type]
        write_wait="300ms",  # type: ignore[arg-type]
        lease="2s",  # type: ignore[arg-type]
    )
    made.settings = made.settings.model_copy(update={"storage": storage})
    made.environ = {**made.environ, "IBFLEET_TEST_JOURNAL_PASSWORD": own_cluster.password}
    yield made, own_cluster
    await made.stop()


async def test_the_supervisor_on_postgres_reports_a_stopped_server_and_recovers(
    pg_harness: Any,
) -> None:
    harness, cluster = pg_harness
    running = await harness.start()
    url = f"http://127.0.0.1:{running.api.port}"
    # A second supervisor on the same journal is refused while this one leads.
    second = Harness(harness.settings.storage.path.parent)
    second.settings, second.environ = harness.settings, harness.environ
    with pytest.raises(StartupError, match="is led by"):
        await second.start()
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        assert (await client.get("/readyz")).json()["problems"] == []
        cluster.stop("fast")
        await running.journal.append_event(at=T0, kind="while-down")
        await until(lambda: running.journal.problem is not None, what="journal unhealthy")
        assert (await client.get("/healthz")).status_code == 200
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert any("journal postgresql://" in p for p in r.json()["problems"]), r.json()
        assert cluster.password not in r.text
        await until(lambda: running.dispatcher.book.is_open(JOURNAL_ALERT), what="alert")
        cluster.start()
        # The lease renewer's next write finds the server back: no caller has to write.
        await until(lambda: running.journal.problem is None, timeout=10, what="recovered")
        await until(lambda: not running.dispatcher.book.is_open(JOURNAL_ALERT), what="resolved")
        assert (await client.get("/readyz")).json()["problems"] == []
    assert isinstance(running.journal, AsyncJournal)
