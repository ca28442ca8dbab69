"""The simulator's default universe: about 30 large US stocks, two ETFs, the seven major FX
pairs on IDEALPRO and one CME future, with prices, daily volatilities and lot sizes of the
right order of magnitude. Pure data.

Contract ids are the simulator's own and stable (AAPL, MSFT, SPY, IBM, TSLA, EUR.USD and ES
keep the ids tests already name). Prices are start prices; each moves by a seeded geometric
random walk with the instrument's daily volatility (:mod:`ibsim.drift`).
"""

from __future__ import annotations

from ibsim.contracts import ContractSpec

__all__ = ["FX_PAIRS", "default_universe"]

# symbol, long name, primary exchange, start price, daily vol, industry, first data day, conId
_STOCKS: tuple[tuple[str, str, str, float, float, str, str, int], ...] = (
    ("AAPL", "APPLE INC", "NASDAQ", 190.0, 0.016, "Technology", "19801212", 265598),
    ("MSFT", "MICROSOFT CORP", "NASDAQ", 410.0, 0.015, "Technology", "19860313", 272093),
    ("AMZN", "AMAZON.COM INC", "NASDAQ", 180.0, 0.020, "Communications", "19970515", 3691937),
    ("NVDA", "NVIDIA CORP", "NASDAQ", 120.0, 0.032, "Technology", "19990122", 4815747),
    ("GOOGL", "ALPHABET INC-CL A", "NASDAQ", 165.0, 0.018, "Communications", "20040819", 208813719),
    (
        "META",
        "META PLATFORMS INC-CLASS A",
        "NASDAQ",
        500.0,
        0.024,
        "Communications",
        "20120518",
        107113386,
    ),
    ("TSLA", "TESLA INC", "NASDAQ", 240.0, 0.036, "Consumer, Cyclical", "20100629", 76792991),
    ("AVGO", "BROADCOM INC", "NASDAQ", 160.0, 0.028, "Technology", "20090806", 313130367),
    ("JPM", "JPMORGAN CHASE & CO", "NYSE", 200.0, 0.014, "Financial", "19800317", 1520593),
    ("V", "VISA INC-CLASS A SHARES", "NYSE", 275.0, 0.012, "Financial", "20080319", 49462172),
    ("MA", "MASTERCARD INC - A", "NYSE", 460.0, 0.013, "Financial", "20060525", 73128548),
    (
        "UNH",
        "UNITEDHEALTH GROUP INC",
        "NYSE",
        520.0,
        0.015,
        "Consumer, Non-cyclical",
        "19841017",
        11310,
    ),
    ("XOM", "EXXON MOBIL CORP", "NYSE", 115.0, 0.015, "Energy", "19800317", 13977),
    ("JNJ", "JOHNSON & JOHNSON", "NYSE", 155.0, 0.010, "Consumer, Non-cyclical", "19800317", 8719),
    (
        "PG",
        "PROCTER & GAMBLE CO/THE",
        "NYSE",
        165.0,
        0.009,
        "Consumer, Non-cyclical",
        "19800317",
        10291,
    ),
    ("HD", "HOME DEPOT INC", "NYSE", 350.0, 0.013, "Consumer, Cyclical", "19810922", 5022),
    ("KO", "COCA-COLA CO/THE", "NYSE", 62.0, 0.009, "Consumer, Non-cyclical", "19800317", 8894),
    ("PEP", "PEPSICO INC", "NASDAQ", 170.0, 0.010, "Consumer, Non-cyclical", "19800317", 11017),
    (
        "COST",
        "COSTCO WHOLESALE CORP",
        "NASDAQ",
        850.0,
        0.012,
        "Consumer, Cyclical",
        "19851205",
        272997,
    ),
    ("WMT", "WALMART INC", "NYSE", 70.0, 0.011, "Consumer, Cyclical", "19800317", 13824),
    ("BAC", "BANK OF AMERICA CORP", "NYSE", 38.0, 0.016, "Financial", "19800317", 10098),
    ("CVX", "CHEVRON CORP", "NYSE", 155.0, 0.014, "Energy", "19800317", 5003),
    ("ABBV", "ABBVIE INC", "NYSE", 170.0, 0.013, "Consumer, Non-cyclical", "20130102", 118089500),
    ("MRK", "MERCK & CO. INC.", "NYSE", 125.0, 0.012, "Consumer, Non-cyclical", "19800317", 9728),
    ("ADBE", "ADOBE INC", "NASDAQ", 520.0, 0.020, "Technology", "19860813", 265768),
    ("CRM", "SALESFORCE INC", "NYSE", 280.0, 0.020, "Technology", "20040623", 12340),
    ("NFLX", "NETFLIX INC", "NASDAQ", 650.0, 0.024, "Communications", "20020523", 15124833),
    ("AMD", "ADVANCED MICRO DEVICES", "NASDAQ", 160.0, 0.030, "Technology", "19800317", 4391),
    ("INTC", "INTEL CORP", "NASDAQ", 30.0, 0.024, "Technology", "19800317", 270639),
    ("IBM", "INTL BUSINESS MACHINES CORP", "NYSE", 170.0, 0.012, "Technology", "19800317", 8314),
    ("DIS", "WALT DISNEY CO/THE", "NYSE", 100.0, 0.015, "Communications", "19800317", 6459),
    ("SPY", "SPDR S&P 500 ETF TRUST", "ARCA", 500.0, 0.010, "Funds", "19930129", 756733),
    ("QQQ", "INVESCO QQQ TRUST SERIES 1", "NASDAQ", 440.0, 0.012, "Funds", "19990310", 320227571),
)

# base, quote, long name, start price, min tick, daily vol, conId
_FX: tuple[tuple[str, str, str, float, float, float, int], ...] = (
    ("EUR", "USD", "European Monetary Union Euro", 1.08, 0.00005, 0.005, 12087792),
    ("GBP", "USD", "British pound", 1.27, 0.00005, 0.006, 12087797),
    ("USD", "JPY", "US Dollar", 150.0, 0.005, 0.006, 15016059),
    ("AUD", "USD", "Australian dollar", 0.66, 0.00005, 0.007, 14433401),
    ("USD", "CAD", "US Dollar", 1.36, 0.00005, 0.004, 15016062),
    ("USD", "CHF", "US Dollar", 0.88, 0.00005, 0.005, 12087820),
    ("NZD", "USD", "New Zealand dollar", 0.61, 0.00005, 0.007, 39453441),
)

FX_PAIRS = tuple(f"{base}.{quote}" for base, quote, *_ in _FX)


def _stock(row: tuple[str, str, str, float, float, str, str, int]) -> ContractSpec:
    symbol, name, primary, price, vol, industry, first, con_id = row
    # IB names NASDAQ's trading class NMS; NYSE and ARCA listings use the symbol.
    trading_class = "NMS" if primary == "NASDAQ" and industry != "Funds" else symbol
    return ContractSpec(
        con_id=con_id,
        symbol=symbol,
        sec_type="STK",
        exchange="SMART",
        primary_exchange=primary,
        currency="USD",
        local_symbol=symbol,
        trading_class=trading_class,
        long_name=name,
        start_price=price,
        min_tick=0.01,
        market_name=trading_class,
        daily_vol=vol,
        industry=industry,
        head_timestamp=first,
    )


def _fx(row: tuple[str, str, str, float, float, float, int]) -> ContractSpec:
    base, quote, name, price, tick, vol, con_id = row
    pair = f"{base}.{quote}"
    return ContractSpec(
        con_id=con_id,
        symbol=base,
        sec_type="CASH",
        exchange="IDEALPRO",
        primary_exchange="",
        currency=quote,
        local_symbol=pair,
        trading_class=pair,
        long_name=name,
        start_price=price,
        min_tick=tick,
        market_name=pair,
        valid_exchanges="IDEALPRO",
        time_zone="US/Eastern",
        daily_vol=vol,
        suggested_size_increment=25_000.0,  # IDEALPRO's minimum; smaller orders are odd lots
        industry="",
        head_timestamp="20050224",
    )


def default_universe() -> tuple[ContractSpec, ...]:
    """Every contract a default simulated broker knows."""
    future = ContractSpec(
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
        daily_vol=0.010,
        suggested_size_increment=1.0,
        head_timestamp="20250321",
    )
    return (*(_stock(row) for row in _STOCKS), *(_fx(row) for row in _FX), future)
