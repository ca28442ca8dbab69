"""Commissions and margin rates as IB charges them, by security type. Pure.

Figures from IB's public pricing pages (IBKR Pro fixed pricing) and margin overviews; they are
the order of magnitude a strategy author expects, not IB's full schedule:

- stocks (STK): USD 0.005 per share, at least USD 1.00 and at most 1 % of the trade value per
  order; Reg T margin, 50 % initial and 25 % maintenance of the position's value;
- forex on IDEALPRO (CASH): 0.2 basis points of the trade value, at least USD 2.00 per order;
  margin about 3 % of the value (IB's rate for the major pairs);
- futures (FUT): USD 0.85 per contract (exchange and regulatory fees are not modelled); margin
  as a fixed share of the notional (6 % initial, 5 % maintenance) where IB uses the exchange's
  SPAN figures.

The minimum is per order: a fill is charged what the order's cumulative commission owes so far,
so the slices of one order pay the minimum once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibsim.contracts import ContractSpec

__all__ = [
    "CommissionSchedule",
    "Margins",
    "fill_commission",
    "margin_rates",
    "order_commission",
    "trade_value_usd",
]


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    """The knobs of IB's fixed pricing the simulator uses (tests may change them)."""

    stock_per_share: float = 0.005
    stock_minimum: float = 1.0
    stock_maximum_rate: float = 0.01  # of the trade value
    fx_rate: float = 0.00002  # 0.2 basis points of the trade value
    fx_minimum: float = 2.0
    future_per_contract: float = 0.85


@dataclass(frozen=True, slots=True)
class Margins:
    """Initial and maintenance margin as fractions of a position's absolute value."""

    initial: float
    maintenance: float


_MARGINS = {
    "STK": Margins(initial=0.50, maintenance=0.25),
    "CASH": Margins(initial=0.03, maintenance=0.03),
    "FUT": Margins(initial=0.06, maintenance=0.05),
}


def margin_rates(spec: ContractSpec) -> Margins:
    """The margin rates of a contract's security type (stock rates for an unknown type)."""
    return _MARGINS.get(spec.sec_type, _MARGINS["STK"])


def trade_value_usd(spec: ContractSpec, quantity: float, price: float) -> float:
    """A trade's value in USD: a USD-based pair's value is its base quantity.

    A cross without USD (EUR.GBP) is valued in its quote currency unconverted: the simulator
    keeps one account currency.
    """
    if spec.sec_type == "CASH" and spec.symbol == "USD":
        return abs(quantity)
    return abs(quantity) * price * float(spec.multiplier or 1)


def order_commission(
    spec: ContractSpec,
    quantity: float,
    price: float,
    schedule: CommissionSchedule | None = None,
) -> float:
    """What IB charges one order of ``quantity`` at ``price`` in USD (fixed pricing)."""
    rules = schedule or CommissionSchedule()
    if quantity == 0:
        return 0.0
    value = trade_value_usd(spec, quantity, price)
    if spec.sec_type == "CASH":
        return round(max(value * rules.fx_rate, rules.fx_minimum), 2)
    if spec.sec_type == "FUT":
        return round(abs(quantity) * rules.future_per_contract, 2)
    commission = max(abs(quantity) * rules.stock_per_share, rules.stock_minimum)
    # The 1 % cap can undercut the minimum for a very cheap trade, as IB's schedule says.
    return round(min(commission, value * rules.stock_maximum_rate), 2)


def fill_commission(
    spec: ContractSpec,
    *,
    filled_before: float,
    fill_quantity: float,
    avg_price: float,
    paid_so_far: float,
    schedule: CommissionSchedule | None = None,
) -> float:
    """The commission of one fill: the order's commission to date less what it paid before."""
    owed = order_commission(spec, filled_before + fill_quantity, avg_price, schedule)
    return round(max(owed - paid_so_far, 0.0), 2)
