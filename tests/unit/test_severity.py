"""Market-hours severity: real exchange calendars under fixed clocks (holidays, DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supervisor import alertpolicy as ap
from supervisor import lifecycle as lc
from supervisor import severity as sv
from tests.unit.lifecycle.driver import Driver

US = sv.MarketSeverity.build(
    strategies=[("meanrev", ["paper-a", "paper-b"]), ("ftse", ["eu-a"])],
    strategy_markets={"ftse": ["LSE"]},
    idle={"spare-crit": ap.Severity.CRITICAL},
    gateways=["paper-a", "paper-b", "eu-a", "spare", "spare-crit"],
)


def lost(gateway: str, severity: ap.Severity = ap.Severity.WARNING) -> ap.Alert:
    return ap.Alert(f"gateway:{gateway}:died", severity, f"{gateway}: container died", "x")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2025-11-25T10:00-05:00", ap.Severity.CRITICAL),  # Tuesday before Thanksgiving
        ("2025-11-27T10:00-05:00", ap.Severity.WARNING),  # Thanksgiving: NYSE closed
        ("2025-11-28T12:30-05:00", ap.Severity.CRITICAL),  # Black Friday, before the 13:00 close
        ("2025-11-28T13:30-05:00", ap.Severity.WARNING),  # after the early close
        ("2025-11-29T03:00-05:00", ap.Severity.WARNING),  # Saturday night
        ("2025-11-25T17:00-05:00", ap.Severity.WARNING),  # after the close
    ],
)
def test_a_lost_us_gateway_is_critical_only_in_session_across_thanksgiving(
    instant: str, expected: ap.Severity
) -> None:
    assert US(lost("paper-a"), at(instant)) is expected
    assert US(lost("paper-b", ap.Severity.CRITICAL), at(instant)) is expected


def test_the_us_session_follows_daylight_saving_time() -> None:
    # 13:45 UTC is 08:45 EST on Friday 6 March 2026 and 09:45 EDT on Monday 9 March.
    assert US(lost("paper-a"), at("2026-03-06T13:45+00:00")) is ap.Severity.WARNING
    assert US(lost("paper-a"), at("2026-03-09T13:45+00:00")) is ap.Severity.CRITICAL
    # The close moves too: 20:30 UTC is 15:30 EST (open) but 16:30 EDT (closed).
    assert US(lost("paper-a"), at("2026-03-06T20:30+00:00")) is ap.Severity.CRITICAL
    assert US(lost("paper-a"), at("2026-03-09T20:30+00:00")) is ap.Severity.WARNING


def test_london_keeps_its_own_calendar_and_its_own_dst_date() -> None:
    # 07:30 UTC: London opens at 08:00 UTC in GMT (27 March) and 07:00 UTC in BST (30 March).
    assert US(lost("eu-a"), at("2026-03-27T07:30+00:00")) is ap.Severity.WARNING
    assert US(lost("eu-a"), at("2026-03-30T07:30+00:00")) is ap.Severity.CRITICAL
    # Thanksgiving is a trading day in London.
    assert US(lost("eu-a"), at("2025-11-27T10:00+00:00")) is ap.Severity.CRITICAL


def test_a_gateway_without_strategies_follows_its_setting() -> None:
    tuesday = at("2025-11-25T10:00-05:00")
    assert US(lost("spare"), tuesday) is ap.Severity.WARNING
    assert US(lost("spare-crit"), at("2025-11-29T03:00-05:00")) is ap.Severity.CRITICAL


def test_prompts_notes_and_strategy_alerts_keep_their_severity() -> None:
    saturday = at("2025-11-29T03:00-05:00")
    twofa = ap.Alert("gateway:paper-a:2fa", ap.Severity.CRITICAL, "t", "b")
    note = ap.Alert("gateway:paper-a:login", ap.Severity.INFO, "t", "b")
    live = ap.Alert("strategy:meanrev:maybe-live", ap.Severity.CRITICAL, "t", "b")
    assert US(twofa, saturday) is ap.Severity.CRITICAL
    assert US(note, at("2025-11-25T10:00-05:00")) is ap.Severity.INFO
    assert US(live, saturday) is ap.Severity.CRITICAL


def test_bad_names_are_errors_naming_the_setting() -> None:
    with pytest.raises(sv.MarketError, match=r"alerts\.markets\.nope"):
        sv.MarketSeverity.build(
            strategies=[], strategy_markets={"nope": ["NYSE"]}, idle={}, gateways=[]
        )
    with pytest.raises(sv.MarketError, match=r"alerts\.gateway_severity\.ghost"):
        sv.MarketSeverity.build(
            strategies=[], strategy_markets={}, idle={"ghost": ap.Severity.INFO}, gateways=[]
        )
    with pytest.raises(sv.MarketError, match=r"alerts\.markets\.s\[1\].*MOON"):
        sv.MarketSeverity.build(
            strategies=[("s", ["g"])],
            strategy_markets={"s": ["NYSE", "MOON"]},
            idle={},
            gateways=["g"],
        )
    with pytest.raises(sv.MarketError, match="SMART with currency 'XYZ'"):
        sv.calendar_of("SMART/XYZ")
    assert sv.calendar_of("smart") == "XNYS" and sv.calendar_of("XTKS") == "XTKS"


def test_a_gateway_lost_over_the_weekend_escalates_when_the_market_opens() -> None:
    policy = ap.AlertPolicy(
        routes=(ap.Route("mail", ap.Severity.WARNING), ap.Route("pager", ap.Severity.CRITICAL)),
        severity_at=US,
    )
    book = ap.AlertBook(policy=policy)
    saturday = at("2026-03-07T03:00-05:00")
    first = book.raise_(lost("paper-a"), saturday)
    assert [(d.route, d.severity) for d in first] == [("mail", ap.Severity.WARNING)]
    for d in first:
        book.delivered(d.id, True, saturday)
    assert book.due(at("2026-03-09T09:29-04:00")) == []
    update = book.due(at("2026-03-09T09:30-04:00"))
    assert [(d.route, d.kind) for d in update] == [
        ("mail", ap.DeliveryKind.UPDATE),
        ("pager", ap.DeliveryKind.UPDATE),
    ]


def test_a_reset_window_still_pages_nobody_while_the_market_is_open() -> None:
    book = ap.AlertBook(
        policy=ap.AlertPolicy(routes=(ap.Route("pager", ap.Severity.INFO),), severity_at=US)
    )
    ready = Driver()
    ready.to_ready()
    ready.send(lc.ResetWindowEntered("na-daily"))
    effects = ready.send(lc.IbLinkLost(), lc.ApiDisconnected(), lc.FarmBroken("usfarm"))
    ready.advance(seconds=120)
    effects += ready.send(lc.Tick())
    open_market = at("2025-11-25T10:00-05:00")
    sent = [
        d
        for e in effects
        if isinstance(e, ap.Alert)
        for d in book.raise_(e, open_market + timedelta(seconds=1))
    ]
    assert sent == []


def test_the_settings_refuse_an_unknown_market_naming_it() -> None:
    from pydantic import ValidationError

    from supervisor.settings import AlertSettings

    assert AlertSettings(markets={"s": ["NYSE", "SMART/GBP"]}).markets == {
        "s": ["NYSE", "SMART/GBP"]
    }
    with pytest.raises(ValidationError, match=r"s\[0\]: 'MOON'"):
        AlertSettings(markets={"s": ["MOON"]})
