"""IB's pacing rules as the pure pacer applies them, against a clock the test moves."""

from __future__ import annotations

import pytest

from plugins.pacing import HistoryRequest, Pacer, PacingRules, is_pacing_violation


def req(
    con_id: int = 1, *, what: str = "TRADES", duration: str = "1 D", end: str = ""
) -> HistoryRequest:
    return HistoryRequest(
        con_id=con_id,
        exchange="SMART",
        what_to_show=what,
        duration=duration,
        bar_size="1 min",
        rth=True,
        end=end,
    )


def drain(
    pacer: Pacer, requests: list[HistoryRequest | None], *, start: float = 0.0
) -> list[float]:
    """Send each request as soon as the pacer allows; the times they went."""
    now, sent = start, []
    for request in requests:
        while (wait := pacer.reserve(now, request)) > 0:
            now += wait
        sent.append(now)
    return sent


EXACT = PacingRules(slack=0.0)  # IB's windows with no slack, to check the arithmetic


def test_an_identical_request_waits_15_seconds_after_the_last() -> None:
    pacer = Pacer(EXACT)
    assert pacer.reserve(100.0, req()) == 0
    assert pacer.delay(101.0, req()) == pytest.approx(14.0)
    assert pacer.delay(101.0, req(duration="2 D")) == 0  # not identical: goes at once
    assert pacer.delay(115.0, req()) == 0


def test_slack_widens_every_historical_window() -> None:
    pacer = Pacer(PacingRules(slack=0.5))
    pacer.record(100.0, req())
    assert pacer.delay(101.0, req()) == pytest.approx(14.5)


def test_a_bid_ask_request_counts_twice_in_the_ten_minute_rule() -> None:
    pacer = Pacer(EXACT)
    for n in range(59):
        pacer.record(float(n) * 0.1, req(con_id=n))
    assert pacer.delay(10.0, req(con_id=99)) == 0  # the 60th
    # it waits until the first (at 0) leaves the window
    assert pacer.delay(10.0, req(con_id=99, what="BID_ASK")) == pytest.approx(590.0)


def test_five_requests_per_contract_and_tick_type_in_two_seconds() -> None:
    pacer = Pacer(EXACT)
    sent = drain(pacer, [req(duration=f"{n} D") for n in range(1, 8)], start=10.0)
    assert sent[:5] == [10.0] * 5
    assert sent[5] == pytest.approx(12.0)  # the sixth waits until the first leaves the window
    # another tick type or contract is not held by these
    assert pacer.delay(sent[-1], req(what="MIDPOINT")) == 0
    assert pacer.delay(sent[-1], req(con_id=2)) == 0


def test_sixty_history_requests_in_any_ten_minutes() -> None:
    pacer = Pacer(EXACT)
    requests: list[HistoryRequest | None] = [req(con_id=n) for n in range(61)]
    sent = drain(pacer, requests, start=0.0)
    assert sent[59] < 2.0  # the first sixty go within the message rate
    assert sent[60] == pytest.approx(sent[0] + 600.0)


def test_messages_per_second_hold_every_kind_of_request() -> None:
    pacer = Pacer(PacingRules(messages_per_second=3))
    sent = drain(pacer, [None, None, None, None, req()], start=5.0)
    assert sent == [5.0, 5.0, 5.0, 6.0, 6.0]


def test_windows_slide_and_old_requests_are_forgotten() -> None:
    pacer = Pacer(EXACT)
    for n in range(60):
        pacer.record(float(n), req(con_id=n))
    assert pacer.delay(60.0, req(con_id=99)) == pytest.approx(540.0)
    assert pacer.delay(600.5, req(con_id=99)) == 0  # the first (at 0) left the window
    assert pacer.delay(700.0, req(con_id=0)) == 0


def test_scaled_rules_shrink_the_windows_only() -> None:
    rules = EXACT.scaled(0.01)
    assert rules.history_window == pytest.approx(6.0)
    assert rules.identical_within == pytest.approx(0.15)
    assert rules.history_requests == 60
    pacer = Pacer(rules)
    sent = drain(pacer, [req(con_id=n) for n in range(61)], start=0.0)
    assert sent[60] == pytest.approx(6.0)


@pytest.mark.parametrize(
    "field", ["messages_per_second", "history_window", "identical_within", "same_contract_requests"]
)
def test_rules_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PacingRules(**{field: 0})


def test_only_162_pacing_violations_are_pacing() -> None:
    text = "Historical Market Data Service error message:Historical data request pacing violation"
    assert is_pacing_violation(162, text)
    assert not is_pacing_violation(162, "HMDS query returned no data")
    assert not is_pacing_violation(354, "pacing violation")


def test_a_request_counts_from_its_answer_once_it_is_answered() -> None:
    """IB saw it at some time up to the answer: a queue on the way cannot break a rule."""
    pacer = Pacer(EXACT)
    pacer.record(100.0, req(), pending=True)
    assert pacer.delay(110.0, req()) == pytest.approx(15.0)  # unanswered: maybe seen now
    pacer.answered(103.0, req())
    assert pacer.delay(110.0, req()) == pytest.approx(8.0)  # 103 + 15 - 110
    pacer.answered(120.0, req())  # answered once: a second answer moves nothing
    assert pacer.delay(110.0, req()) == pytest.approx(8.0)


def test_requests_in_flight_hold_their_contracts_slots_until_answered() -> None:
    pacer = Pacer(EXACT)
    for n in range(5):
        pacer.record(10.0, req(duration=f"{n} D"), pending=True)
    assert pacer.delay(30.0, req(duration="9 D")) == pytest.approx(2.0)
    for n in range(5):
        pacer.answered(30.5, req(duration=f"{n} D"))
    assert pacer.delay(31.0, req(duration="9 D")) == pytest.approx(1.5)
    assert pacer.delay(32.5, req(duration="9 D")) == 0
