"""The simulator's symbol table: the contracts a simulated broker knows, with start prices.

Pure data. Contract ids are stable so tests and fixtures can name them.
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


def default_symbols() -> tuple[ContractSpec, ...]:
    """Several US stocks, one forex pair on IDEALPRO and one future on CME."""
    stock = dict(sec_type="STK", exchange="SMART", currency="USD", min_tick=0.01)
    return (
        ContractSpec(
            con_id=265598,
            symbol="AAPL",
            primary_exchange="NASDAQ",
            local_symbol="AAPL",
            trading_class="NMS",
            long_name="APPLE INC",
            start_price=190.0,
            market_name="NMS",
            **stock,  # type: ignore[arg-type]
        ),
        ContractSpec(
            con_id=272093,
            symbol="MSFT",
            primary_exchange="NASDAQ",
            local_symbol="MSFT",
            trading_class="NMS",
            long_name="MICROSOFT CORP",
            start_price=410.0,
            market_name="NMS",
            **stock,  # type: ignore[arg-type]
        ),
        ContractSpec(
            con_id=756733,
            symbol="SPY",
            primary_exchange="ARCA",
            local_symbol="SPY",
            trading_class="SPY",
            long_name="SPDR S&P 500 ETF TRUST",
            start_price=500.0,
            market_name="SPY",
            **stock,  # type: ignore[arg-type]
        ),
        ContractSpec(
            con_id=8314,
            symbol="IBM",
            primary_exchange="NYSE",
            local_symbol="IBM",
            trading_class="IBM",
            long_name="INTL BUSINESS MACHINES CORP",
            start_price=170.0,
            market_name="IBM",
            **stock,  # type: ignore[arg-type]
        ),
        ContractSpec(
            con_id=76792991,
            symbol="TSLA",
            primary_exchange="NASDAQ",
            local_symbol="TSLA",
            trading_class="NMS",
            long_name="TESLA INC",
            start_price=240.0,
            market_name="NMS",
            **stock,  # type: ignore[arg-type]
        ),
        ContractSpec(
            con_id=12087792,
            symbol="EUR",
            sec_type="CASH",
            exchange="IDEALPRO",
            primary_exchange="",
            currency="USD",
            local_symbol="EUR.USD",
            trading_class="EUR.USD",
            long_name="European Monetary Union Euro",
            start_price=1.08,
            min_tick=0.00005,
            market_name="EUR.USD",
            valid_exchanges="IDEALPRO",
            time_zone="US/Eastern",
        ),
        ContractSpec(
            con_id=495512563,
            symbol="ES",
            sec_type="FUT",
            exchange="CME",
            primary_exchange="",
            currency="USD",
            local_symbol="ESZ6",
            trading_class="ES",
            long_name="E-mini S&P 500",
            start_price=5000.0,
            min_tick=0.25,
            multiplier="50",
            last_trade_date="20261218",
            market_name="ES",
            valid_exchanges="CME",
            time_zone="US/Central",
        ),
    )


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
    ) -> list[ContractSpec]:
        """Every contract a partial description fits, as IB's contract search does."""
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
