"""Per-currency account rows (IB's "ledger") and PnL, derived from the broker's account
values and positions. Pure.

IB's account updates carry, besides the account-wide tags in the base currency, one row per
currency and one for ``BASE`` (all currencies in the base one) for each ledger tag:
CashBalance, TotalCashBalance, NetLiquidationByCurrency, ExchangeRate, StockMarketValue,
UnrealizedPnL, RealizedPnL. reqAccountSummary sends the ledger only when asked for with
``$LEDGER`` (BASE), ``$LEDGER:ALL`` (every currency) or ``$LEDGER:EUR``.

The broker keeps one USD cash figure and treats an FX position as a position; here a
position in ``EUR.USD`` is a EUR balance and one in ``USD.JPY`` a USD balance against JPY,
converted at the current rates.
"""

from __future__ import annotations

from collections.abc import Sequence

from ibsim.contracts import ContractSpec

__all__ = ["BASE_CURRENCY", "LEDGER_TAGS", "ledger_rows", "pnl", "summary_rows"]

BASE_CURRENCY = "USD"
LEDGER_TAGS = (
    "CashBalance",
    "TotalCashBalance",
    "NetLiquidationByCurrency",
    "ExchangeRate",
    "StockMarketValue",
    "UnrealizedPnL",
    "RealizedPnL",
)

Row = tuple[str, str, str]
PositionRow = tuple[ContractSpec, float, float, float, float]  # spec, qty, avg, price, realized


def _value(rows: Sequence[Row], tag: str) -> float:
    for name, value, _currency in rows:
        if name == tag:
            return float(value)
    return 0.0


def _rates(positions: Sequence[PositionRow]) -> dict[str, float]:
    """Units of the base currency per unit of each currency seen in an FX position."""
    rates = {BASE_CURRENCY: 1.0}
    for spec, _qty, _avg, price, _realized in positions:
        if spec.sec_type != "CASH" or price <= 0:
            continue
        if spec.currency == BASE_CURRENCY:
            rates[spec.symbol] = price
        elif spec.symbol == BASE_CURRENCY:
            rates[spec.currency] = 1.0 / price
    return rates


def ledger_rows(rows: Sequence[Row], positions: Sequence[PositionRow]) -> list[Row]:
    """The ledger rows, every currency then BASE, for the broker's ``rows`` and positions."""
    rates = _rates(positions)
    cash: dict[str, float] = {BASE_CURRENCY: _value(rows, "TotalCashValue")}
    stock: dict[str, float] = {}
    unrealized: dict[str, float] = {}
    realized: dict[str, float] = {}
    for spec, qty, avg, price, real in positions:
        multiplier = float(spec.multiplier or 1)
        if spec.sec_type == "CASH":
            # A pair is a balance in its base currency against one in its quote currency;
            # the broker already took qty * avg off its (single) cash figure.
            cash[spec.symbol] = cash.get(spec.symbol, 0.0) + qty
            cash[BASE_CURRENCY] += qty * avg
            cash[spec.currency] = cash.get(spec.currency, 0.0) - qty * avg
            continue
        ccy = spec.currency
        stock[ccy] = stock.get(ccy, 0.0) + qty * price * multiplier
        unrealized[ccy] = unrealized.get(ccy, 0.0) + qty * price * multiplier - qty * avg
        realized[ccy] = realized.get(ccy, 0.0) + real
    currencies = sorted(set(cash) | set(stock), key=lambda c: (c != BASE_CURRENCY, c))
    out: list[Row] = []
    totals = dict.fromkeys(LEDGER_TAGS, 0.0)
    for ccy in currencies:
        rate = rates.get(ccy, 1.0)
        values = {
            "CashBalance": cash.get(ccy, 0.0),
            "TotalCashBalance": cash.get(ccy, 0.0),
            "NetLiquidationByCurrency": cash.get(ccy, 0.0) + stock.get(ccy, 0.0),
            "ExchangeRate": rate,
            "StockMarketValue": stock.get(ccy, 0.0),
            "UnrealizedPnL": unrealized.get(ccy, 0.0),
            "RealizedPnL": realized.get(ccy, 0.0),
        }
        for tag in LEDGER_TAGS:
            shown = f"{values[tag]:.6f}" if tag == "ExchangeRate" else f"{values[tag]:.2f}"
            out.append((tag, shown, ccy))
            if tag != "ExchangeRate":
                totals[tag] += values[tag] * rate
    totals["ExchangeRate"] = 1.0
    out += [
        (tag, "1.00" if tag == "ExchangeRate" else f"{totals[tag]:.2f}", "BASE")
        for tag in LEDGER_TAGS
    ]
    return out


def summary_rows(rows: Sequence[Row], ledger: Sequence[Row], tags: set[str]) -> list[Row]:
    """What reqAccountSummary sends for ``tags``: account-wide tags, then the ledger rows
    ``$LEDGER`` (BASE), ``$LEDGER:ALL`` or ``$LEDGER:CCY`` ask for."""
    wanted = [r for r in rows if not tags or "All" in tags or r[0] in tags]
    for tag in tags:
        if not tag.startswith("$LEDGER"):
            continue
        _, _, which = tag.partition(":")
        which = which.upper() or "BASE"
        wanted += [r for r in ledger if which == "ALL" or r[2] == which]
    return wanted


def pnl(positions: Sequence[PositionRow], con_id: int | None = None) -> tuple[float, float, float]:
    """(daily, unrealized, realized) PnL over the positions (one contract with ``con_id``).
    Daily PnL is unrealized plus realized: the broker keeps no start-of-day marks."""
    unrealized = realized = 0.0
    for spec, qty, avg, price, real in positions:
        if con_id is not None and spec.con_id != con_id:
            continue
        unrealized += qty * price * float(spec.multiplier or 1) - qty * avg
        realized += real
    return round(unrealized + realized, 2), round(unrealized, 2), round(realized, 2)
