"""Per-currency account rows, PnL and the realistic price walk."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from ibsim import ledger
from ibsim.broker import Broker, BrokerConfig
from ibsim.drift import step_sigma, walk
from ibsim.universe import default_universe

U = {s.local_symbol: s for s in default_universe()}
ROWS = [("NetLiquidation", "1000000.00", "USD"), ("TotalCashValue", "978400.00", "USD")]


def test_fx_positions_are_currency_balances_with_base_totals():
    positions = [
        (U["EUR.USD"], 20_000.0, 1.08, 1.08, 0.0),
        (U["USD.JPY"], 10_000.0, 150.0, 150.0, 0.0),
    ]
    # The broker took 20000 * 1.08 USD and 10000 * 150 "USD" off its one cash figure.
    rows = [("TotalCashValue", f"{1_000_000 - 21_600 - 1_500_000:.2f}", "USD")]
    out = {(tag, ccy): float(value) for tag, value, ccy in ledger.ledger_rows(rows, positions)}
    assert out[("CashBalance", "EUR")] == 20_000
    assert out[("CashBalance", "JPY")] == -1_500_000
    assert out[("CashBalance", "USD")] == 1_000_000 - 21_600 + 10_000
    assert out[("ExchangeRate", "JPY")] == pytest.approx(1 / 150, abs=1e-6)
    assert out[("CashBalance", "BASE")] == 1_000_000.0
    assert out[("ExchangeRate", "BASE")] == 1.0


def test_summary_sends_the_ledger_only_when_asked():
    lines = ledger.ledger_rows(ROWS, [])
    assert ledger.summary_rows(ROWS, lines, {"NetLiquidation"}) == [ROWS[0]]
    base = ledger.summary_rows(ROWS, lines, {"$LEDGER"})
    assert {ccy for _, _, ccy in base} == {"BASE"}
    every = ledger.summary_rows(ROWS, lines, {"$LEDGER:ALL"})
    assert {ccy for _, _, ccy in every} == {"BASE", "USD"}


def test_pnl_over_positions():
    positions = [(U["AAPL"], 100.0, 180.0, 190.0, 50.0), (U["MSFT"], -10.0, 400.0, 410.0, 0.0)]
    assert ledger.pnl(positions) == (950.0, 900.0, 50.0)
    assert ledger.pnl(positions, U["MSFT"].con_id) == (-100.0, -100.0, 0.0)


def test_realistic_walk_has_the_daily_volatility():
    spec = U["AAPL"]
    sigma = step_sigma(spec, elapsed=60.0, volatility=None)
    rng = random.Random(3)
    price, returns = 190.0, []
    for _ in range(20_000):
        moved = walk(price, sigma, rng, 0.0001)
        returns.append(moved / price - 1)
        price = moved
    per_day = statistics.pstdev(returns) * (6.5 * 60) ** 0.5
    assert abs(per_day - spec.daily_vol) < spec.daily_vol * 0.1
    assert step_sigma(spec, elapsed=60.0, volatility=0.0) == 0.0


def test_broker_walk_follows_its_clock():
    now = [datetime(2026, 1, 7, 15, tzinfo=UTC)]
    broker = Broker(clock=lambda: now[0], config=BrokerConfig(seed=1))
    broker.step()
    broker.step()
    assert broker.price(U["AAPL"].con_id) == 190.0, "no time passed: no move"
    moved = False
    for _ in range(50):
        now[0] += timedelta(minutes=5)
        broker.step()
        moved = moved or broker.price(U["AAPL"].con_id) != 190.0
    assert moved
