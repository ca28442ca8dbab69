"""The simulator's symbol table: the contracts a simulated broker knows, with start prices.

Pure data. Contract ids are stable so tests and fixtures can name them; the default universe
is in :mod:`ibsim.universe`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """One tradable contract as IB describes it in contract details."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    long_name: str
    start_price: float
    min_tick: float = 0.01
    multiplier: str = ""
    last_trade_date: str = ""
    market_name: str = ""
    valid_exchanges: str = "SMART,NYSE,NASDAQ,ARCA,BATS,IEX"
    time_zone: str = "US/Eastern"
    daily_vol: float = 0.015  # one trading day's standard deviation of log returns
    min_size: float = 1.0
    size_increment: float = 1.0
    suggested_size_increment: float = 100.0
    industry: str = ""
    head_timestamp: str = "19800101"  # the first day IB has data for (reqHeadTimeStamp)


def default_symbols() -> tuple[ContractSpec, ...]:
    """The default universe: large US stocks and ETFs, the major FX pairs, one future."""
    from ibsim.universe import default_universe  # the table lives in its own module

    return default_universe()


class SymbolTable:
    """Lookup by conId or by (symbol, secType, currency, exchange) like reqContractDetails."""

    def __init__(self, specs: tuple[ContractSpec, ...] | None = None) -> None:
        self._specs = specs if specs is not None else default_symbols()
        self._by_id = {spec.con_id: spec for spec in self._specs}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs)

    def by_con_id(self, con_id: int) -> ContractSpec | None:
        """The contract with this id, if known."""
        return self._by_id.get(con_id)

    def by_symbol(self, symbol: str) -> ContractSpec | None:
        """The first contract with this symbol or local symbol (used by the control API)."""
        for spec in self._specs:
            if symbol in (spec.symbol, spec.local_symbol):
                return spec
        return None

    def match(
        self,
        *,
        con_id: int = 0,
        symbol: str = "",
        sec_type: str = "",
        currency: str = "",
        exchange: str = "",
        local_symbol: str = "",
        last_trade_date: str = "",
        pattern: str = "",
    ) -> list[ContractSpec]:
        """Every contract a partial description fits, as IB's contract search does; with
        ``pattern``, reqMatchingSymbols' search instead (see :meth:`search`)."""
        if pattern:
            return self.search(pattern)
        if con_id:
            spec = self._by_id.get(con_id)
            return [spec] if spec is not None else []
        found = []
        for spec in self._specs:
            if symbol and symbol.upper() != spec.symbol:
                continue
            if local_symbol and local_symbol.upper() != spec.local_symbol:
                continue
            if sec_type and sec_type.upper() != spec.sec_type:
                continue
            if currency and currency.upper() != spec.currency:
                continue
            if exchange and exchange.upper() not in (
                spec.exchange,
                "SMART" if spec.sec_type == "STK" else spec.exchange,
                *spec.valid_exchanges.split(","),
            ):
                continue
            if last_trade_date and not spec.last_trade_date.startswith(last_trade_date):
                continue
            if not (symbol or local_symbol):
                continue
            found.append(spec)
        return found

    def search(self, pattern: str, *, limit: int = 16) -> list[ContractSpec]:
        """reqMatchingSymbols: symbols starting with ``pattern`` first, then contracts whose
        name contains it; at most ``limit`` (IB answers with up to 16)."""
        text = pattern.strip().upper()
        if not text:
            return []
        by_symbol = [
            s for s in self._specs if s.symbol.startswith(text) or s.local_symbol.startswith(text)
        ]
        by_name = [s for s in self._specs if text in s.long_name.upper() and s not in by_symbol]
        by_symbol.sort(key=lambda s: (s.symbol != text, len(s.symbol), s.symbol))
        return (by_symbol + by_name)[:limit]
