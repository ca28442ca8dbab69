"""Severity that knows the market: a lost gateway is critical while a market it serves is open.

Pure: exchange sessions come from the ``exchange-calendars`` package (its calendars ship with
it, holidays and early closes included); time comes from the caller. Each strategy's markets
are the exchanges of its instruments (``alerts.markets``; a strategy not listed is taken to
trade US equities, the plugin API's default instrument, SMART/USD). A gateway cause (``gateway:
NAME:PROBLEM``) of warning or critical severity is critical while any strategy naming that
gateway has a market in session, and a warning outside every session. A gateway no strategy
names follows ``alerts.gateway_severity`` (default warning). Informational causes, the
standalone prompts (2FA, re-authentication) and strategy alerts keep the severity they were
raised with.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import exchange_calendars as xcals
import pandas as pd

from supervisor.alertpolicy import STANDALONE_PROBLEMS, Alert, Severity

__all__ = [
    "DEFAULT_MARKET",
    "MarketError",
    "MarketSeverity",
    "calendar_of",
]

#: The plugin API's default instrument is SMART/USD: US equities, on the NYSE calendar.
DEFAULT_MARKET = "XNYS"

# IB exchange codes to exchange-calendars names. SMART routes by currency to the home market.
_IB_EXCHANGES = {
    "NYSE": "XNYS",
    "ARCA": "XNYS",
    "AMEX": "XNYS",
    "BATS": "XNYS",
    "IEX": "XNYS",
    "NASDAQ": "XNAS",
    "ISLAND": "XNAS",
    "CME": "CMES",
    "GLOBEX": "CMES",
    "CBOT": "CMES",
    "NYMEX": "CMES",
    "COMEX": "CMES",
    "LSE": "XLON",
    "IBIS": "XETR",
    "XETRA": "XETR",
    "FWB": "XFRA",
    "SBF": "XPAR",
    "AEB": "XAMS",
    "EBS": "XSWX",
    "TSE": "XTSE",  # IB's TSE is Toronto; Tokyo is TSEJ
    "TSEJ": "XTKS",
    "SEHK": "XHKG",
    "ASX": "XASX",
}
_SMART_BY_CURRENCY = {
    "USD": "XNYS",
    "CAD": "XTSE",
    "GBP": "XLON",
    "EUR": "XETR",
    "CHF": "XSWX",
    "JPY": "XTKS",
    "HKD": "XHKG",
    "AUD": "XASX",
}


class MarketError(ValueError):
    """A market name that maps to no exchange calendar; the message names it and where."""


@functools.cache
def _calendar_names() -> frozenset[str]:
    return frozenset(xcals.get_calendar_names(include_aliases=True))


def calendar_of(market: str, *, where: str = "market") -> str:
    """The exchange-calendars name for ``market``: an IB code (``NYSE``, ``SMART/USD``) or a
    calendar name (``XNYS``)."""
    text = market.strip().upper()
    exchange, _, currency = text.partition("/")
    if exchange == "SMART":
        name = _SMART_BY_CURRENCY.get(currency or "USD")
        if name is None:
            known = ", ".join(sorted(_SMART_BY_CURRENCY))
            raise MarketError(
                f"{where}: {market!r}: SMART with currency {currency!r} names no single market; "
                f"use the exchange (NYSE, LSE, ...) or SMART/<{known}>"
            )
        return name
    if exchange in _IB_EXCHANGES and not currency:
        return _IB_EXCHANGES[exchange]
    if text in _calendar_names():
        return text
    raise MarketError(
        f"{where}: {market!r} is neither an IB exchange code ibfleet knows "
        f"({', '.join(sorted(_IB_EXCHANGES))}, SMART/<currency>) nor an exchange-calendars name "
        "(XNYS, XLON, ...)"
    )


@functools.cache
def _calendar(name: str, year: int) -> xcals.ExchangeCalendar:
    # The default range ends a year after install; a calendar per year keeps any date in range.
    return xcals.get_calendar(
        name, start=pd.Timestamp(year - 1, 12, 1), end=pd.Timestamp(year + 1, 1, 31)
    )


def in_session(calendar: str, now: datetime) -> bool:
    """True while ``calendar``'s exchange is in a regular trading session at ``now``."""
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    minute = pd.Timestamp(now.astimezone(UTC)).floor("min")
    return bool(_calendar(calendar, minute.year).is_open_on_minute(minute))


@dataclass(frozen=True, slots=True)
class MarketSeverity:
    """``severity_at`` for the alert policy: the severity of a cause at an instant.

    ``markets`` maps each gateway to the calendars of the strategies that name it (empty or
    absent: no strategy); ``idle`` is the severity of a lost gateway no strategy names.
    """

    markets: Mapping[str, frozenset[str]]
    idle: Mapping[str, Severity] = field(default_factory=dict)
    idle_default: Severity = Severity.WARNING

    @classmethod
    def build(
        cls,
        *,
        strategies: Iterable[tuple[str, Iterable[str]]],
        strategy_markets: Mapping[str, Iterable[str]],
        idle: Mapping[str, Severity],
        gateways: Iterable[str],
    ) -> MarketSeverity:
        """From (strategy, its gateways) pairs, ``alerts.markets`` and ``alerts.gateway_severity``.

        Names that match no strategy or gateway are errors naming the setting.
        """
        known_gateways = set(gateways)
        pairs = [(name, tuple(gws)) for name, gws in strategies]
        known_strategies = {name for name, _ in pairs}
        for name in strategy_markets:
            if name not in known_strategies:
                raise MarketError(f"alerts.markets.{name}: no strategy is named {name!r}")
        for name in idle:
            if name not in known_gateways:
                raise MarketError(f"alerts.gateway_severity.{name}: no gateway is named {name!r}")
        markets: dict[str, set[str]] = {}
        for name, gws in pairs:
            listed = list(strategy_markets.get(name, ())) or [DEFAULT_MARKET]
            calendars = {
                calendar_of(m, where=f"alerts.markets.{name}[{i}]") for i, m in enumerate(listed)
            }
            for gw in gws:
                markets.setdefault(gw, set()).update(calendars)
        return cls(markets={gw: frozenset(c) for gw, c in markets.items()}, idle=dict(idle))

    def gateway_severity(self, gateway: str, now: datetime) -> Severity:
        """How bad losing ``gateway`` is at ``now``."""
        calendars = self.markets.get(gateway)
        if not calendars:
            return self.idle.get(gateway, self.idle_default)
        if any(in_session(c, now) for c in sorted(calendars)):
            return Severity.CRITICAL
        return Severity.WARNING

    def __call__(self, alert: Alert, now: datetime) -> Severity:
        """The severity of ``alert`` at ``now`` (the alert policy's ``severity_at``)."""
        kind, _, rest = alert.key.partition(":")
        gateway, _, problem = rest.partition(":")
        if kind != "gateway" or not problem or problem in STANDALONE_PROBLEMS:
            return alert.severity
        if alert.severity < Severity.WARNING:
            return alert.severity  # a note (a login retry) is not an outage page
        return self.gateway_severity(gateway, now)
