"""The chaos checker finds each kind of broken history, and passes a whole one."""

from __future__ import annotations

import datetime as dt
from typing import Any

from supervisor.notify import REPEAT_NOTE
from tests.chaos.history import Entry, Fault, History, Page
from tests.chaos.invariants import EXCUSE_LAG, check, report

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def t(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def order(ref: str, status: str = "Submitted", *, perm: int = 1, filled: float = 0) -> dict:
    return {
        "order_ref": ref,
        "status": status,
        "perm_id": perm,
        "gateway": "gw-a",
        "filled": filled,
        "created_at": t(perm).isoformat(),
    }


def intent(key: str, status: str = "ACKED", *, filled: float = 0) -> dict:
    return {"key": key, "strategy": key.split("-")[0], "status": status, "filled": filled}


def whole(**changes: Any) -> History:
    """A history every invariant accepts: one working order, one filled, one incident."""
    history = History(
        seed=7,
        broker_orders=[order("s-1"), order("s-2", "Filled", perm=2, filled=1)],
        executions=[{"order_ref": "s-2", "shares": 1.0}],
        intents=[intent("s-1"), intent("s-2", "FILLED", filled=1), intent("s-3", "CANCELLED")],
        gateways=[{"name": "gw-a", "state": "API_READY", "ready": True}],
        strategies=[{"name": "s", "state": "RUNNING", "gateway": "gw-a"}],
        strategy_gateways={"s": ["gw-a", "gw-b"]},
        pages=[
            Page(t(10), "gw-a: API stalled", "warning"),
            Page(t(20), "Resolved: gw-a: API stalled", "success"),
        ],
        faults=[Fault(0, "docker_pause", t(5), t(15), ("gw-a",), describe="#0 pause")],
        logins={"u-a": [t(0), t(100)]},
        login_budget={"u-a": 2},
        checked_at=t(60),
    )
    for name, value in changes.items():
        setattr(history, name, value)
    return history


def rules(history: History) -> list[str]:
    return [v.invariant for v in check(history)]


def test_a_whole_history_has_no_violation() -> None:
    assert check(whole()) == []


def test_an_order_ref_twice_at_the_broker_is_a_duplicate() -> None:
    history = whole()
    history.broker_orders.append(order("s-1", perm=9))
    [found] = check(history)
    assert found.invariant == "duplicate-order-ref" and "s-1" in found.message
    assert found.at == t(9)  # the second arrival broke it


def test_an_intent_the_broker_never_received_must_not_stay_pending() -> None:
    for status in ("PENDING_SEND", "SENT", "ACKED", "UNKNOWN", "FILLED"):
        history = whole()
        history.intents.append(intent("s-4", status))
        assert rules(history) == ["intent-unresolved"], status
    history = whole()
    history.intents.append(intent("s-4", "REJECTED"))
    assert check(history) == []


def test_an_intent_disagreeing_with_the_broker_is_unresolved() -> None:
    history = whole(intents=[intent("s-1", "CANCELLED"), intent("s-2", "FILLED", filled=1)])
    [found] = check(history)
    assert found.invariant == "intent-unresolved" and "Submitted" in found.message
    history = whole(intents=[intent("s-1"), intent("s-2", "FILLED", filled=0.5)])
    assert rules(history) == ["intent-unresolved"]


def test_an_order_at_the_broker_the_journal_does_not_know_is_reported() -> None:
    history = whole()
    history.broker_orders.append(order("ghost-1", perm=5))
    [found] = check(history)
    assert found.invariant == "unknown-order" and "live" in found.message


def test_a_gateway_not_ready_or_a_strategy_off_its_list_after_healing() -> None:
    history = whole(gateways=[{"name": "gw-a", "state": "BACKOFF", "ready": False}])
    assert rules(history) == ["not-healed"]
    history = whole(strategies=[{"name": "s", "state": "RUNNING", "gateway": "gw-c"}])
    assert rules(history) == ["not-healed"]
    history = whole(strategies=[])
    assert rules(history) == ["not-healed"]
    assert rules(whole(gateways=None)) == ["not-healed"]


def test_a_second_page_for_an_open_incident_is_a_violation_unless_its_severity_rose() -> None:
    twice = whole(
        pages=[
            Page(t(10), "gw-a: API stalled", "warning"),
            Page(t(12), "gw-a: degraded", "warning"),
            Page(t(20), "Resolved: gw-a: API stalled; degraded", "success"),
        ]
    )
    [found] = check(twice)
    assert found.invariant == "incident-pages" and found.at == t(12)
    rose = whole(
        pages=[
            Page(t(10), "gw-a: API stalled", "warning"),
            Page(t(12), "gw-a: stopped, a human must act", "failure"),
            Page(t(20), "Resolved: gw-a: stopped", "success"),
        ]
    )
    assert check(rose) == []


def test_a_repeat_is_excused_only_when_marked_and_after_a_supervisor_restart() -> None:
    # Seed 4242: a SIGKILL between a page's send and its record; the next supervisor sent it
    # again. At-least-once is right; unmarked, or with no restart between, it is a page twice.
    def run(body: str, restarted_at: float | None) -> list[str]:
        history = whole(
            pages=[
                Page(t(10), "gw-a: degraded", "warning"),
                Page(t(16), "gw-a: degraded", "warning", body),
                Page(t(20), "Resolved: gw-a: degraded", "success"),
            ]
        )
        if restarted_at is not None:
            history.entries.append(Entry(t(restarted_at), "runner", "supervisor-started"))
        return rules(history)

    marked = f"{REPEAT_NOTE}\nib link lost (1100)"
    assert run(marked, 13) == []
    assert run("ib link lost (1100)", 13) == ["incident-pages"]
    assert run(marked, None) == ["incident-pages"]
    assert run(marked, 18) == ["incident-pages"]


def test_a_resolved_notice_sent_again_marked_after_a_restart_is_not_a_second_one() -> None:
    # Seed 4242 (mean gap 2.5 s): a SIGKILL between a resolved notice's send and its record.
    def run(body: str, restarted_at: float | None) -> list[str]:
        history = whole(
            pages=[
                Page(t(10), "gw-a: degraded", "warning"),
                Page(t(20), "Resolved: gw-a: degraded", "success"),
                Page(t(26), "Resolved: gw-a: degraded", "success", body),
            ]
        )
        if restarted_at is not None:
            history.entries.append(Entry(t(restarted_at), "runner", "supervisor-started"))
        return rules(history)

    marked = f"{REPEAT_NOTE}\ngw-a: degraded"
    assert run(marked, 22) == []
    assert run("gw-a: degraded", 22) == ["incident-pages"]
    assert run(marked, None) == ["incident-pages"]


def test_an_incident_never_resolved_or_resolved_twice() -> None:
    assert rules(whole(pages=[Page(t(10), "gw-a: API stalled", "warning")])) == ["incident-pages"]
    twice = whole(
        pages=[
            Page(t(10), "gw-a: API stalled", "warning"),
            Page(t(20), "Resolved: gw-a: API stalled", "success"),
            Page(t(21), "Resolved: gw-a: API stalled", "success"),
        ]
    )
    [found] = check(twice)
    assert found.at == t(21)


def test_a_page_inside_a_reset_window_is_a_violation() -> None:
    history = whole(reset_windows=[(t(0), t(15))])
    [found] = check(history)
    assert found.invariant == "quiet-window" and found.at == t(10)


def test_a_page_for_a_planned_restart_alone_is_a_violation_but_another_fault_excuses_it() -> None:
    planned = Fault(1, "daily_restart_early", t(100), t(130), ("gw-a",), planned=True)
    pages = [
        Page(t(110), "gw-a: container died", "warning"),
        Page(t(120), "Resolved: gw-a: container died", "success"),
    ]
    history = whole(faults=[planned], pages=pages)
    [found] = check(history)
    assert found.invariant == "quiet-window" and found.at == t(110)
    # A link loss on the same gateway, healed less than EXCUSE_LAG before: that page is its.
    link = Fault(2, "ib_link_loss", t(60), t(110) - EXCUSE_LAG / 2, ("gw-a",))
    assert check(whole(faults=[planned, link], pages=pages)) == []
    # A supervisor stop pages nobody: it excuses nothing.
    stop = Fault(3, "supervisor_sigkill", t(105), t(108), ("gw-a", "gw-b"))
    assert rules(whole(faults=[planned, stop], pages=pages)) == ["quiet-window"]


def test_logins_over_the_budget_within_an_hour() -> None:
    history = whole(logins={"u-a": [t(0), t(10), t(3599)]})
    [found] = check(history)
    assert found.invariant == "login-budget" and found.at == t(3599)
    assert check(whole(logins={"u-a": [t(0), t(10), t(3601)]})) == []


def test_the_report_names_the_seed_the_violation_and_the_history_around_it() -> None:
    history = whole()
    history.broker_orders.append(order("s-1", perm=9))
    text = report(history, check(history))
    assert "chaos seed 7" in text and "IBFLEET_CHAOS_SEED=7" in text
    assert "[duplicate-order-ref]" in text
    assert "begin docker_pause" in text and "gw-a: API stalled" in text


def test_a_2fa_prompt_is_an_incident_of_its_own_beside_its_gateways_other_problems() -> None:
    """Chaos seed 1: the gateway's degraded incident stayed open while a 2FA prompt was paged
    and resolved; its own resolved notice came after, and is not one without a page."""
    pages = [
        Page(t(10), "gw-b: degraded", "warning"),
        Page(t(50), "gw-b: approve the IB Key login", "failure"),
        Page(t(51), "Resolved: gw-b: approve the IB Key login", "success"),
        Page(t(55), "Resolved: gw-b: degraded; API stalled", "success"),
    ]
    assert check(whole(pages=pages)) == []
    twice = [*pages[:2], Page(t(52), "gw-b: approve the IB Key login", "failure"), *pages[2:]]
    assert rules(whole(pages=twice)) == ["incident-pages"]
