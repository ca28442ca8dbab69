"""The broker core under a fake clock: fills, slices, brackets, OCA, cancels, truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibsim.broker import (
    Broker,
    BrokerConfig,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderState,
    Reject,
)

ACCOUNT = "DU1000001"
AAPL = 265598


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def broker() -> Broker:
    b = Broker(clock=Clock(), config=BrokerConfig(lot_size=100, volatility=0.0))
    b.open_account(ACCOUNT)
    return b


def req(order_id: int, **kw) -> OrderRequest:
    base = dict(
        order_id=order_id,
        con_id=AAPL,
        symbol="AAPL",
        sec_type="STK",
        exchange="SMART",
        currency="USD",
        action="BUY",
        total_quantity=10,
        order_type="MKT",
    )
    base.update(kw)
    return OrderRequest(**base)


def place(broker: Broker, order_id: int, client_id: int = 1, gateway: str = "gw1", **kw):
    result = broker.place_order(
        gateway=gateway, client_id=client_id, request=req(order_id, **kw), accounts=[ACCOUNT]
    )
    assert not isinstance(result, Reject), result
    return result


def test_fill_events_come_in_ib_order(broker):
    events: list[OrderEvent] = []
    broker.add_listener(events.append)
    order = place(broker, 1)
    kinds = [e.kind for e in events]
    assert kinds == [
        OrderEventKind.OPEN_ORDER,
        OrderEventKind.STATUS,
        OrderEventKind.OPEN_ORDER,
        OrderEventKind.EXECUTION,
        OrderEventKind.STATUS,
        OrderEventKind.COMMISSION,
    ]
    assert order.status is OrderState.FILLED
    assert broker.accounts[ACCOUNT].positions[AAPL].quantity == 10


def test_large_order_fills_one_slice_per_step(broker):
    order = place(broker, 1, total_quantity=250)
    assert order.filled == 100
    broker.step()
    assert order.filled == 200
    broker.step()
    assert order.status is OrderState.FILLED and order.filled == 250


def test_limit_rests_until_price_crosses(broker):
    order = place(broker, 1, order_type="LMT", lmt_price=180.0)
    assert order.status is OrderState.SUBMITTED
    broker.set_price(AAPL, 179.0)
    # The ask is one tick above the last: the limit fills there, better than its price.
    assert order.status is OrderState.FILLED and order.avg_fill_price == 179.01


def test_sell_stop_triggers_below_stop_price(broker):
    order = place(broker, 1, action="SELL", order_type="STP", aux_price=185.0)
    assert order.status is OrderState.PRE_SUBMITTED
    broker.set_price(AAPL, 184.0)
    assert order.status is OrderState.FILLED


def test_bracket_is_held_until_last_child_transmits(broker):
    parent = place(broker, 1, order_type="LMT", lmt_price=191.0, transmit=False)
    tp = place(
        broker, 2, action="SELL", order_type="LMT", lmt_price=200.0, parent_id=1, transmit=False
    )
    assert parent.status is OrderState.HELD and tp.status is OrderState.HELD
    sl = place(broker, 3, action="SELL", order_type="STP", aux_price=180.0, parent_id=1)
    assert parent.status is OrderState.FILLED
    assert tp.status is OrderState.SUBMITTED and sl.status is OrderState.PRE_SUBMITTED
    broker.set_price(AAPL, 179.0)
    assert sl.status is OrderState.FILLED and tp.status is OrderState.CANCELLED


def test_oca_fill_cancels_siblings(broker):
    a = place(broker, 1, order_type="LMT", lmt_price=185.0, oca_group="g")
    b = place(broker, 2, order_type="LMT", lmt_price=180.0, oca_group="g")
    broker.set_price(AAPL, 184.0)
    assert a.status is OrderState.FILLED and b.status is OrderState.CANCELLED


def test_modify_keeps_perm_id_and_records_history(broker):
    order = place(broker, 1, order_type="LMT", lmt_price=150.0)
    again = place(broker, 1, order_type="LMT", lmt_price=195.0)
    assert again.perm_id == order.perm_id and order.status is OrderState.FILLED
    assert [h.note for h in order.history].count("modified") == 1
    assert len(broker.orders) == 1


def test_other_gateway_on_account_can_cancel_by_order_id(broker):
    order = place(broker, 7, order_type="LMT", lmt_price=150.0)
    result = broker.cancel_order(gateway="gw2", client_id=3, order_id=7, accounts=[ACCOUNT])
    assert result is order and order.status is OrderState.CANCELLED


def test_cancel_of_filled_order_is_rejected_with_10148(broker):
    place(broker, 1)
    result = broker.cancel_order(gateway="gw1", client_id=1, order_id=1, accounts=[ACCOUNT])
    assert isinstance(result, Reject) and result.code == 10148


def test_rejects_name_the_problem(broker):
    bad = broker.place_order(
        gateway="g", client_id=1, request=req(1, order_type="TRAIL LIMIT"), accounts=[ACCOUNT]
    )
    assert isinstance(bad, Reject) and bad.code == 387
    bad = broker.place_order(gateway="g", client_id=1, request=req(2, con_id=1), accounts=[ACCOUNT])
    assert isinstance(bad, Reject) and bad.code == 200
    bad = broker.place_order(
        gateway="g", client_id=1, request=req(3, account="U999"), accounts=[ACCOUNT]
    )
    assert isinstance(bad, Reject) and "U999" in bad.message


def test_perm_ids_unique_across_gateways_and_clients(broker):
    perms = {place(broker, 1, client_id=c, gateway=g).perm_id for g in ("a", "b") for c in (1, 2)}
    assert len(perms) == 4


def test_prices_walk_deterministically_per_seed():
    def walk(seed: int) -> list[float]:
        b = Broker(clock=Clock(), config=BrokerConfig(seed=seed, volatility=0.0005))
        out = []
        for _ in range(5):
            b.step()
            out.append(b.price(AAPL))
        return out

    assert walk(1) == walk(1)
    assert walk(1) != walk(2)


def test_historical_bars_are_deterministic_and_consistent(broker):
    end = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
    bars = broker.historical_bars(AAPL, count=20, bar_seconds=3600, end=end)
    assert bars == broker.historical_bars(AAPL, count=20, bar_seconds=3600, end=end)
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


def test_global_cancel_only_touches_given_accounts(broker):
    broker.open_account("DU2")
    mine = place(broker, 1, order_type="LMT", lmt_price=150.0)
    other = broker.place_order(
        gateway="g",
        client_id=1,
        request=req(2, order_type="LMT", lmt_price=150.0),
        accounts=["DU2"],
    )
    broker.global_cancel(accounts=[ACCOUNT])
    assert mine.status is OrderState.CANCELLED
    assert not isinstance(other, Reject) and other.status is OrderState.SUBMITTED


def test_set_price_rejects_nonsense(broker):
    with pytest.raises(ValueError, match="positive"):
        broker.set_price(AAPL, -1)
    with pytest.raises(KeyError):
        broker.set_price(42, 1.0)
