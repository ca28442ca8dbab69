"""Historical bars and ticks: IB's strings, sessions, weekends, the last close, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ibsim import history, sessions
from ibsim.drift import quote
from ibsim.universe import FX_PAIRS, default_universe

NY = ZoneInfo("America/New_York")
U = {s.local_symbol: s for s in default_universe()}
WED = datetime(2026, 1, 7, 18, 0, tzinfo=UTC)  # Wednesday 13:00 in New York


def bars(symbol: str, duration: str, size: str, *, rth: bool = True, what: str = "TRADES", end=WED):
    return history.bars(
        U[symbol],
        end=end,
        duration=duration,
        bar_size=size,
        what_to_show=what,
        rth=rth,
        last=U[symbol].start_price,
    )


def starts(found) -> list[datetime]:
    return [datetime.fromtimestamp(int(b.date), NY) for b in found]


def test_one_day_of_hours_in_regular_hours_ends_at_the_price():
    found = bars("AAPL", "1 D", "1 hour")
    assert [t.strftime("%H:%M") for t in starts(found)] == ["09:30", "10:00", "11:00", "12:00"]
    assert found[-1].close == 190.0
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in found)


def test_all_hours_start_at_four():
    found = bars("AAPL", "1 D", "1 hour", rth=False)
    assert starts(found)[0].strftime("%H:%M") == "04:00"


def test_days_count_sessions_and_skip_weekends_and_holidays():
    daily = bars("AAPL", "2 W", "1 day")
    dates = [b.date for b in daily]
    assert "20260101" not in dates, "New Year's Day: NYSE is closed"
    assert all(datetime.strptime(d, "%Y%m%d").weekday() < 5 for d in dates)
    assert len(bars("AAPL", "5 D", "1 day")) == 5
    weekly = bars("AAPL", "1 Y", "1 week")
    assert 50 <= len(weekly) <= 54


def test_fx_trades_from_sunday_evening_to_friday_evening():
    found = bars("EUR.USD", "2 W", "1 hour", rth=False, what="MIDPOINT")
    for t in starts(found):
        assert not (t.weekday() == 5 or (t.weekday() == 4 and t.hour >= 17)), t
        assert not (t.weekday() == 6 and t.hour < 17), t
    assert found[-1].close == 1.08 and found[-1].volume == -1


def test_the_same_bar_is_the_same_in_overlapping_requests():
    short, longer = bars("MSFT", "2 D", "30 mins"), bars("MSFT", "3 D", "30 mins")
    assert short == longer[-len(short) :]


@pytest.mark.parametrize(
    ("duration", "size", "code", "text"),
    [
        ("1 D", "1 sec", 321, "bar size setting is invalid. Legal ones are: 1 secs"),
        ("1 X", "1 hour", 321, "Invalid duration"),
        ("0 D", "1 hour", 321, "Invalid duration"),
        ("1 D", "1 secs", 162, "invalid step: 1"),
        ("1 Y", "1 hour", 162, "invalid step: 3600"),
    ],
)
def test_bad_requests_get_ibs_codes(duration, size, code, text):
    with pytest.raises(history.HistoryError) as info:
        bars("AAPL", duration, size)
    assert info.value.code == code and text in info.value.text


def test_fx_has_no_trades():
    with pytest.raises(history.HistoryError, match="No data of type TRADES"):
        bars("EUR.USD", "1 D", "1 hour")


def test_end_formats_ib_accepts():
    assert history.parse_end("20260107 13:00:00 US/Eastern", WED) == WED
    assert history.parse_end("20260107-18:00:00", WED) == WED
    assert history.parse_end("20260107 18:00:00 UTC", WED) == WED
    assert history.parse_end("", WED) == WED
    with pytest.raises(history.HistoryError, match="Invalid end"):
        history.parse_end("yesterday", WED)


def test_ticks_are_uncrossed_in_sessions_and_end_at_the_price():
    found = history.ticks(
        U["AAPL"],
        start=None,
        end=WED,
        count=50,
        what_to_show="BID_ASK",
        rth=True,
        last=190.0,
        now=WED,
    )
    assert len(found) == 50 and found[-1].price == 190.0
    assert all(t.bid < t.ask for t in found)
    assert [t.time for t in found] == sorted(t.time for t in found)
    with pytest.raises(history.HistoryError):
        history.ticks(
            U["EUR.USD"],
            start=None,
            end=WED,
            count=5,
            what_to_show="TRADES",
            rth=True,
            last=1.08,
            now=WED,
        )


def test_head_timestamp_is_the_first_open():
    assert history.head_timestamp(U["AAPL"], format_date=1) == "19801212-14:30:00"


def test_quotes_are_never_crossed_and_sizes_of_the_universe():
    assert len([s for s in U.values() if s.sec_type == "STK"]) >= 30
    assert set(FX_PAIRS) == {
        "EUR.USD",
        "GBP.USD",
        "USD.JPY",
        "AUD.USD",
        "USD.CAD",
        "USD.CHF",
        "NZD.USD",
    }
    for spec in U.values():
        for price in (spec.min_tick, spec.start_price, spec.start_price * 1.37):
            bid, ask = quote(spec, price)
            assert 0 < bid < ask and bid <= max(price, spec.min_tick) <= ask + spec.min_tick


def test_trading_hours_strings():
    hours = sessions.trading_hours(U["AAPL"], WED, rth=True, days=3)
    assert hours.split(";")[0] == "20260107:0930-20260107:1600"
    weekend = sessions.trading_hours(
        U["AAPL"], datetime(2026, 1, 10, 12, tzinfo=UTC), rth=True, days=2
    )
    assert weekend == "20260110:CLOSED;20260111:CLOSED"
