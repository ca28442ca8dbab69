"""How simulated prices move. Pure.

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
from ibsim.matching import DEFAULT_SPREAD_TICKS, quote_of, round_to_tick

__all__ = ["TRADING_DAY_SECONDS", "quote", "round_to_tick", "step_sigma", "walk"]

TRADING_DAY_SECONDS = 6.5 * 3600  # one regular US session; FX vols are quoted per day too


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
    """(bid, ask) around ``price`` as the broker quotes it at its default spread (the one
    definition is :func:`ibsim.matching.quote_of`: ticks and fills agree)."""
    q = quote_of(spec, price, spread_ticks=DEFAULT_SPREAD_TICKS)
    return q.bid, q.ask
