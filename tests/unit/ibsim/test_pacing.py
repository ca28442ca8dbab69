"""IB's pacing rules as the simulator enforces them: time is passed in, nothing waits."""

from __future__ import annotations

import pytest

from ibsim.pacing import HistKey, HistoricalPacing, MessageRate, PacingConfig


def key(con_id: int = 1, what: str = "TRADES", *params: str) -> HistKey:
    return HistKey(con_id=con_id, exchange="SMART", what_to_show=what, params=params)


def test_message_rate_admits_fifty_a_second_and_drops_the_rest():
    rate = MessageRate(PacingConfig())
    admitted = [rate.admit(0.5 + i * 0.001) for i in range(60)]
    assert admitted.count(True) == 50 and admitted[50:] == [False] * 10
    assert rate.admit(1.6), "a second later the window has room again"


def test_identical_request_within_15_s_is_refused_until_then():
    pacing = HistoricalPacing(PacingConfig())
    assert pacing.check(key(1, "TRADES", "1 D"), 100.0) is None
    violation = pacing.check(key(1, "TRADES", "1 D"), 110.0)
    assert violation is not None and violation.rule == "identical"
    assert violation.code == 162 and "pacing violation" in violation.text
    assert violation.retry_at == 115.0
    assert pacing.check(key(1, "TRADES", "1 D"), 115.0) is None


def test_sixth_request_for_one_contract_within_2_s_is_refused():
    pacing = HistoricalPacing(PacingConfig())
    for n in range(5):
        assert pacing.check(key(1, "TRADES", str(n)), 10.0 + n * 0.1) is None
    violation = pacing.check(key(1, "TRADES", "5"), 10.5)
    assert violation is not None and violation.rule == "same_contract"
    assert violation.retry_at == pytest.approx(12.0)
    assert pacing.check(key(2, "TRADES", "5"), 10.5) is None, "another contract is fine"
    assert pacing.check(key(1, "MIDPOINT", "5"), 10.5) is None, "another tick type is fine"
    assert pacing.check(key(1, "TRADES", "5"), 12.0) is None


def test_sixty_per_ten_minutes_and_bid_ask_counts_twice():
    pacing = HistoricalPacing(PacingConfig())
    for n in range(59):
        assert pacing.check(key(n, "TRADES"), n * 3.0) is None
    violation = pacing.check(key(100, "BID_ASK"), 200.0)
    assert violation is not None and violation.rule == "window"
    assert violation.retry_at == 600.0, "once the first request has left the window"
    assert pacing.check(key(100, "TRADES"), 200.0) is None
    assert pacing.used(200.0) == 60
    assert pacing.check(key(101, "TRADES"), 200.0) is not None
    assert pacing.check(key(101, "TRADES"), 600.0) is None


def test_refused_requests_are_not_counted():
    pacing = HistoricalPacing(PacingConfig(hist_max=2, hist_window=10))
    assert pacing.check(key(1), 0.0) is None
    assert pacing.check(key(2), 0.0) is None
    for t in range(1, 10):
        assert pacing.check(key(3, "TRADES", str(t)), float(t)) is not None
    assert pacing.check(key(3), 10.0) is None


def test_shrunk_windows_for_tests_and_bad_limits_named():
    pacing = HistoricalPacing(PacingConfig(identical_window=0.5))
    assert pacing.check(key(), 0.0) is None
    assert pacing.check(key(), 0.5) is None
    with pytest.raises(ValueError, match="hist_max"):
        PacingConfig(hist_max=0)
    with pytest.raises(ValueError, match="identical_window"):
        PacingConfig(identical_window=-1)
