"""How simulated prices move, and the quote around a price. Pure.

Prices follow a geometric random walk: over ``dt`` seconds a price's log return is normal
with standard deviation ``daily_vol * sqrt(dt / TRADING_DAY_SECONDS) * speed`` (the
instrument's daily volatility from :mod:`ibsim.universe`; ``speed`` > 1 compresses days into
minutes for demos). A fixed per-step ``volatility`` replaces that when given (0 freezes
prices, as tests that set prices want). Every instrument has its own seeded generator.
"""

from __future__ import annotations

import math
import random

from ibsim.contracts import ContractSpec

__all__ = ["TRADING_DAY_SECONDS", "quote", "round_to_tick", "step_sigma", "walk"]

TRADING_DAY_SECONDS = 6.5 * 3600  # one regular US session; FX vols are quoted per day too


def round_to_tick(price: float, tick: float) -> float:
    """``price`` on the contract's price grid."""
    return round(round(price / tick) * tick, 10)


def step_sigma(
    spec: ContractSpec, *, elapsed: float, volatility: float | None, speed: float = 1.0
) -> float:
    """The log-return standard deviation of one step ``elapsed`` seconds long."""
    if volatility is not None:
        return volatility
    if elapsed <= 0:
        return 0.0
    return spec.daily_vol * math.sqrt(elapsed / TRADING_DAY_SECONDS) * speed


def walk(price: float, sigma: float, rng: random.Random, tick: float) -> float:
    """One step of the walk, on the tick grid and never below one tick."""
    if sigma <= 0:
        return price
    moved = price * math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2)
    return max(round_to_tick(moved, tick), tick)


def quote(spec: ContractSpec, price: float) -> tuple[float, float]:
    """(bid, ask) around ``price``: about one basis point wide, at least one tick, never
    crossed, the bid at least one tick."""
    tick = spec.min_tick
    ticks = max(1, round(price * 0.0001 / tick))
    bid = max(round_to_tick(price - ticks * tick / 2, tick), tick)
    if bid > price:  # rounding up past the price: step down one tick
        bid = max(round_to_tick(bid - tick, tick), tick)
    return bid, round_to_tick(bid + ticks * tick, tick)
