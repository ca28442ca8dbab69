"""The host's pure pieces and small collaborators: the failover rule, the gate board, the order
book, the one connect-with-326 rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.apiconnect import ClientIdInUse, connect_rotating
from gateway.outage import Gate, OutageKind
from plugins import api
from plugins.host.candidates import candidates
from plugins.host.gates import GateBoard
from plugins.host.orderbook import BookedOrder, OrderBook
from plugins.host.settings import GatewayEndpoint
from supervisor.journal import SqliteJournal
from tests.unit.plugins.fake_broker import AAPL

EPS = {
    "a": GatewayEndpoint("a", "h", 1, account="U1"),
    "b": GatewayEndpoint("b", "h", 2, account="U1"),
    "c": GatewayEndpoint("c", "h", 3, account="U2"),
    "d": GatewayEndpoint("d", "h", 4),
}


def test_failover_candidates_keep_the_strategy_order_and_skip_the_gateway_it_leaves() -> None:
    got = candidates(["d", "b", "a"], EPS, exclude="a", account="U1", usable=lambda g: True)
    assert got == ["d", "b"]


def test_failover_never_goes_to_another_account_a_closed_gate_or_an_unknown_gateway() -> None:
    got = candidates(
        ["a", "b", "c", "zz"], EPS, exclude=None, account="U1", usable=lambda g: g != "b"
    )
    assert got == ["a"]


def test_without_a_known_account_every_usable_gateway_is_a_candidate() -> None:
    assert candidates(["a", "c"], EPS, exclude=None, account=None, usable=lambda g: True) == [
        "a",
        "c",
    ]


def test_gate_board_times_a_gateway_from_its_last_open_or_close_not_a_kind_change() -> None:
    board = GateBoard()
    assert board.set("a", Gate(open=True), now=10.0) is None
    lost = Gate(open=False, kind=OutageKind.LOST)
    assert board.set("a", lost, now=20.0) is True
    assert board.set("a", Gate(open=False, kind=OutageKind.STALLED), now=30.0) is False
    assert board.feed("a", now=99.0).changed_at == 20.0
    ready = board.readiness(["a", "new"], waiting_since=5.0, now=40.0)
    assert [(r.name, r.open, r.for_) for r in ready] == [
        ("a", False, timedelta(seconds=20)),
        ("new", None, timedelta(seconds=35)),
    ]


def test_a_closed_gate_is_usable_only_for_the_shutdowns_own_safe_state() -> None:
    board = GateBoard()
    board.set("a", Gate(open=False, kind=OutageKind.SHUTDOWN), now=0.0)
    board.set("b", Gate(open=False, kind=OutageKind.LOST), now=0.0)
    assert not board.usable("a", now=1.0)
    assert board.usable("a", now=1.0, shutting_down=True)
    assert not board.usable("b", now=1.0, shutting_down=True)
    assert board.usable("unknown", now=1.0)


class JournalKv:
    """The book's records straight in the journal (the host keeps them in StrategyKv)."""

    def __init__(self, journal: SqliteJournal, strategy: str) -> None:
        self.journal, self.strategy = journal, strategy

    def get(self, name: str) -> object:
        return self.journal.kv_get(self.strategy, name)

    def set(self, name: str, value: object) -> None:
        self.journal.kv_set(self.strategy, name, value, now=datetime(2026, 1, 1, tzinfo=UTC))


def test_order_book_books_an_execution_once_and_keeps_positions_across_restarts(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "j.sqlite")
    book = OrderBook("s1", JournalKv(journal, "s1"))
    assert book.book_execution("e1", AAPL, "BOT", 5)
    assert not book.book_execution("e1", AAPL, "BOT", 5)
    assert book.book_execution("e2", AAPL, "SLD", 2)
    book.save(now=datetime(2026, 1, 1, tzinfo=UTC))
    again = OrderBook("s1", JournalKv(journal, "s1"))
    again.load()
    assert again.positions == {AAPL.conId: 3.0}
    assert not again.book_execution("e2", AAPL, "SLD", 2)
    journal.close()


def test_risk_book_counts_only_what_is_still_open_on_that_contract(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.sqlite")
    book = OrderBook("s1", JournalKv(journal, "s1"))
    aapl = api.Instrument("AAPL")
    book.orders["k1"] = BookedOrder("k1", aapl, api.Side.BUY, 10, 1.0, AAPL.conId, "a", filled=4)
    book.orders["k2"] = BookedOrder("k2", aapl, api.Side.SELL, 3, 2.0, AAPL.conId, "a")
    book.orders["k3"] = BookedOrder("k3", aapl, api.Side.BUY, 7, 1.0, 999, "a")
    risk = book.risk_book(AAPL.conId)
    assert (risk.open_buy_quantity, risk.open_sell_quantity, risk.open_orders) == (6, 3, 3)
    journal.close()


async def test_connect_rotating_rotates_a_refused_leased_id_once() -> None:
    tried: list[int] = []

    async def connect(client_id: int) -> str:
        tried.append(client_id)
        if client_id != 8:
            raise ClientIdInUse(f"{client_id} in use")
        return "session"

    assert await connect_rotating(connect, client_id=7, rotate=lambda: 8) == ("session", 8)
    assert tried == [7, 8]
    tried.clear()
    with pytest.raises(ClientIdInUse):
        await connect_rotating(connect, client_id=7, rotate=lambda: 9)
    assert tried == [7, 9]  # once, never a loop


async def test_connect_rotating_without_leases_raises_the_326_as_it_is() -> None:
    async def connect(client_id: int) -> str:
        raise ClientIdInUse("in use")

    with pytest.raises(ClientIdInUse):
        await connect_rotating(connect, client_id=7, rotate=None)
