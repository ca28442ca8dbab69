"""Alert policy: dedup, routing by severity, resolve routes, repeats, retries, redaction."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import alertpolicy as ap

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OPS = ap.Route("ops-slack", ap.Severity.INFO)
ONCALL = ap.Route("oncall-pager", ap.Severity.CRITICAL)
MAIL = ap.Route("mail", ap.Severity.WARNING)
POLICY = ap.AlertPolicy(
    routes=(OPS, MAIL, ONCALL),
    repeat_critical_every=timedelta(minutes=30),
    retry_base=timedelta(seconds=10),
    retry_cap=timedelta(minutes=2),
    max_attempts=4,
)
TWOFA = ap.Alert(
    key="gateway:paper-a:2fa",
    severity=ap.Severity.CRITICAL,
    title="paper-a: approve the IB Key login",
    body="Approve the IB Key notification for paper-a / fdemo within 180 s.",
)
FARM = ap.Alert(
    key="gateway:paper-a:degraded",
    severity=ap.Severity.WARNING,
    title="paper-a: degraded",
    body="farm broken: usfarm",
)


def book(**kwargs: object) -> ap.AlertBook:
    return ap.AlertBook(policy=POLICY, **kwargs)  # type: ignore[arg-type]


def ack(b: ap.AlertBook, deliveries: list[ap.Delivery], now: datetime, ok: bool = True) -> None:
    for delivery in deliveries:
        b.delivered(delivery.id, ok, now)


def test_routes_are_chosen_by_severity() -> None:
    b = book()
    assert {d.route for d in b.raise_(TWOFA, T0)} == {"ops-slack", "mail", "oncall-pager"}
    assert {d.route for d in b.raise_(FARM, T0)} == {"ops-slack", "mail"}


def test_raising_an_open_key_again_sends_nothing() -> None:
    b = book()
    ack(b, b.raise_(FARM, T0), T0)
    assert b.raise_(FARM, T0 + timedelta(minutes=5)) == []
    assert b.is_open(FARM.key)


def test_a_resolved_key_can_be_raised_again() -> None:
    b = book()
    ack(b, b.raise_(FARM, T0), T0)
    ack(b, b.resolve(FARM.key, T0), T0)
    assert len(b.raise_(FARM, T0 + timedelta(minutes=1))) == 2


def test_resolve_goes_to_exactly_the_routes_the_alert_went_to() -> None:
    b = book()
    raised = b.raise_(FARM, T0)
    ack(b, raised, T0)
    notices = b.resolve(FARM.key, T0 + timedelta(minutes=3))
    assert sorted(d.route for d in notices) == sorted(d.route for d in raised)
    assert all(d.kind is ap.DeliveryKind.RESOLVE for d in notices)
    assert all(d.title.startswith("Resolved:") for d in notices)
    assert not b.is_open(FARM.key)


def test_resolve_skips_a_route_that_never_received_the_alert() -> None:
    b = book()
    raised = {d.route: d for d in b.raise_(FARM, T0)}
    b.delivered(raised["ops-slack"].id, True, T0)
    b.delivered(raised["mail"].id, False, T0)  # waiting for a retry
    notices = b.resolve(FARM.key, T0 + timedelta(seconds=1))
    assert [d.route for d in notices] == ["ops-slack"]
    assert raised["mail"].id not in b.pending_ids()  # the stale retry is dropped


def test_resolve_of_an_unknown_key_sends_nothing() -> None:
    assert book().resolve("gateway:nope:2fa", T0) == []


def test_resolve_reaches_a_route_whose_delivery_is_still_in_flight() -> None:
    b = book()
    b.raise_(FARM, T0)
    assert {d.route for d in b.resolve(FARM.key, T0)} == {"ops-slack", "mail"}


def test_unresolved_critical_alerts_repeat_on_schedule() -> None:
    b = book()
    ack(b, b.raise_(TWOFA, T0), T0)
    ack(b, b.raise_(FARM, T0), T0)
    assert b.due(T0 + timedelta(minutes=29)) == []
    repeats = b.due(T0 + timedelta(minutes=30))
    assert {d.key for d in repeats} == {TWOFA.key}
    assert {d.kind for d in repeats} == {ap.DeliveryKind.REPEAT}
    assert len(repeats) == 3
    ack(b, repeats, T0 + timedelta(minutes=30))
    assert b.due(T0 + timedelta(minutes=59)) == []
    assert len(b.due(T0 + timedelta(minutes=60))) == 3


def test_repeats_stop_once_resolved() -> None:
    b = book()
    ack(b, b.raise_(TWOFA, T0), T0)
    ack(b, b.resolve(TWOFA.key, T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1))
    assert b.due(T0 + timedelta(hours=5)) == []


def test_failed_delivery_is_retried_with_growing_backoff_then_given_up() -> None:
    b = book()
    (delivery,) = [d for d in b.raise_(FARM, T0) if d.route == "mail"]
    now = T0
    gaps = []
    for _ in range(POLICY.max_attempts - 1):
        retry = b.delivered(delivery.id, False, now)
        assert retry is not None
        nxt = b.next_due()
        assert nxt is not None
        assert b.due(nxt - timedelta(microseconds=1)) == []
        due = b.due(nxt)
        assert [d.id for d in due] == [delivery.id]
        gaps.append(nxt - now)
        now = nxt
        delivery = due[0]
    assert gaps == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=40)]
    assert delivery.attempt == POLICY.max_attempts
    assert b.delivered(delivery.id, False, now) is None
    assert delivery.id not in b.pending_ids()
    assert b.dropped == 1


def test_a_successful_retry_stops_retrying() -> None:
    b = book()
    (delivery,) = [d for d in b.raise_(FARM, T0) if d.route == "mail"]
    b.delivered(delivery.id, False, T0)
    (retry,) = b.due(T0 + timedelta(seconds=10))
    b.delivered(retry.id, True, T0 + timedelta(seconds=11))
    assert b.due(T0 + timedelta(hours=1)) == []


def test_unknown_or_repeated_acks_are_ignored() -> None:
    b = book()
    (delivery, *_) = b.raise_(FARM, T0)
    assert b.delivered("no-such-id", False, T0) is None
    b.delivered(delivery.id, True, T0)
    assert b.delivered(delivery.id, False, T0) is None


def test_secrets_are_redacted_from_every_message() -> None:
    redactor = ap.Redactor(secrets=frozenset({"hunter2", "s3cr3t-token"}))
    b = book(redactor=redactor)
    alert = ap.Alert(
        key="gateway:live-a:login",
        severity=ap.Severity.CRITICAL,
        title="login failed with hunter2",
        body=(
            "IBC said password=hunter2; token: abc123 via https://bob:pw@hooks.example/x "
            "and s3cr3t-token"
        ),
    )
    deliveries = b.raise_(alert, T0)
    record = json.dumps(b.to_record())
    for text in [d.title + d.body for d in deliveries] + [record]:
        for secret in ("hunter2", "s3cr3t-token", "abc123", "bob:pw"):
            assert secret not in text
    assert "password=***" in deliveries[0].body
    assert "https://***@hooks.example/x" in deliveries[0].body


def test_redactor_leaves_harmless_text_alone() -> None:
    text = "Approve the IB Key notification for paper-a / fdemo within 180 s."
    assert ap.Redactor(secrets=frozenset({"", "zzz"})).redact(text) == text


def test_state_round_trips_so_a_restarted_supervisor_does_not_page_again() -> None:
    b = book()
    ack(b, b.raise_(TWOFA, T0), T0)
    pending = b.raise_(FARM, T0)
    record = json.loads(json.dumps(b.to_record()))
    again = ap.AlertBook.from_record(record, policy=POLICY)
    assert again.open_keys() == {TWOFA.key, FARM.key}
    assert again.raise_(TWOFA, T0 + timedelta(minutes=1)) == []
    # In-flight deliveries are sent again after a restore (at-least-once).
    resent = again.due(T0 + timedelta(seconds=1))
    assert {d.id for d in resent} == {d.id for d in pending}
    # The resolve still reaches the routes that heard the alert before the restart.
    assert len(again.resolve(TWOFA.key, T0 + timedelta(minutes=2))) == 3
    # Fresh ids never collide with restored ones.
    new_ids = {d.id for d in again.raise_(TWOFA, T0 + timedelta(minutes=3))}
    assert not new_ids & {d.id for d in pending}


def test_a_corrupt_record_names_the_bad_field() -> None:
    record = book().to_record()
    record["open"] = [{"key": "k", "severity": "loud", "title": "t", "body": "b"}]
    with pytest.raises(ap.AlertRecordError, match=r"open\[0\]\.severity"):
        ap.AlertBook.from_record(record, policy=POLICY)
    record["open"] = "nope"
    with pytest.raises(ap.AlertRecordError, match=r"alert record\.open"):
        ap.AlertBook.from_record(record, policy=POLICY)


def test_policy_rejects_duplicate_route_names_and_bad_timing() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ap.AlertPolicy(routes=(OPS, OPS))
    with pytest.raises(ValueError, match="repeat_critical_every"):
        ap.AlertPolicy(routes=(OPS,), repeat_critical_every=timedelta(0))


def test_severity_parse_names_the_allowed_values() -> None:
    assert ap.Severity.parse("Critical") is ap.Severity.CRITICAL
    with pytest.raises(ValueError, match="info, warning, critical"):
        ap.Severity.parse("loud")


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        book().raise_(FARM, datetime(2026, 1, 1))


def test_a_repeat_in_flight_at_resolve_that_then_fails_is_not_retried() -> None:
    # Hypothesis found it: a REPEAT still in flight when its alert was resolved failed, and
    # its retry paged about an alert that was no longer open.
    b = book()
    now = T0
    raised = b.raise_(ap.Alert("a", ap.Severity.CRITICAL, "t", "b"), now)
    for seconds in (36, 184, 309, 984):
        now += timedelta(seconds=seconds)
        assert b.raise_(ap.Alert("a", ap.Severity.INFO, "t", "b"), now) == []
    now += timedelta(seconds=287)
    b.delivered(raised[0].id, True, now)
    repeats = b.due(now)
    assert [d.kind for d in repeats] == [ap.DeliveryKind.REPEAT] * 3
    assert len(b.resolve("a", now)) == 3
    b.delivered(raised[1].id, True, now)
    b.delivered(raised[2].id, True, now)
    assert b.delivered(repeats[0].id, False, now) is None
    assert b.due(now + timedelta(seconds=10)) == []
    assert repeats[0].id not in b.pending_ids()


def test_a_stale_in_flight_delivery_is_not_resent_after_a_restore() -> None:
    b = book()
    raised = b.raise_(FARM, T0)
    notices = b.resolve(FARM.key, T0)
    again = ap.AlertBook.from_record(json.loads(json.dumps(b.to_record())), policy=POLICY)
    resent = again.due(T0 + timedelta(seconds=1))
    assert {d.id for d in resent} == {d.id for d in notices}
    assert not {d.id for d in raised} & again.pending_ids()


def test_a_delivery_cut_short_by_a_restart_is_resent_marked_as_a_possible_repeat() -> None:
    # The 1,000-event chaos run (seed 4242): the supervisor was SIGKILLed just after a page
    # went out and before its delivery was recorded; the next one sent it again, and the
    # on-call saw the same page twice with nothing saying why. Sent again (a lost page would
    # be worse), but marked; a delivery that had failed is not a repeat.
    b = book()
    cut_short = b.raise_(FARM, T0)
    failed = b.raise_(TWOFA, T0)
    for delivery in failed:
        b.delivered(delivery.id, False, T0)
    again = ap.AlertBook.from_record(json.loads(json.dumps(b.to_record())), policy=POLICY)
    resent = {d.id: d for d in again.due(T0 + timedelta(minutes=5))}
    assert cut_short and failed and set(resent) == {d.id for d in [*cut_short, *failed]}
    assert all(resent[d.id].repeat for d in cut_short)
    assert not any(resent[d.id].repeat for d in failed)
    # Still a repeat if it fails once more and the process restarts again.
    for delivery in cut_short:
        again.delivered(delivery.id, False, T0 + timedelta(minutes=5))
    b2 = ap.AlertBook.from_record(json.loads(json.dumps(again.to_record())), policy=POLICY)
    later = {d.id: d for d in b2.due(T0 + timedelta(hours=1))}
    assert all(later[d.id].repeat for d in cut_short if d.id in later) and later


_KEYS = st.sampled_from(["a", "b", "c"])
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["raise", "resolve", "due", "ack_ok", "ack_fail"]),
        _KEYS,
        st.sampled_from(list(ap.Severity)),
        st.integers(min_value=0, max_value=1200),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_OPS)
def test_random_operations_keep_dedup_and_resolve_routes(
    ops: list[tuple[str, str, ap.Severity, int]],
) -> None:
    b = book()
    now = T0
    raised_routes: dict[str, set[str]] = {}
    outstanding: list[ap.Delivery] = []
    seen: set[str] = set()
    for op, key, severity, seconds in ops:
        now += timedelta(seconds=seconds)
        if op == "raise":
            was_open = b.is_open(key)
            out = b.raise_(ap.Alert(key, severity, "t", "b"), now)
            if was_open:
                assert out == []
            else:
                raised_routes[key] = {d.route for d in out}
                assert raised_routes[key] == set(POLICY.routes_for(severity))
        elif op == "resolve":
            out = b.resolve(key, now)
            if out:
                assert {d.route for d in out} <= raised_routes[key]
            assert not b.is_open(key)
        elif op == "due":
            out = b.due(now)
            for d in out:
                if d.kind is ap.DeliveryKind.REPEAT:
                    assert d.severity is ap.Severity.CRITICAL and b.is_open(d.key)
        else:
            out = []
            if outstanding:
                d = outstanding.pop(0)
                b.delivered(d.id, op == "ack_ok", now)
        outstanding.extend(out)
        seen.update(d.id for d in out)
        # The book only tracks deliveries it handed out.
        assert b.pending_ids() <= seen
        assert json.loads(json.dumps(b.to_record())) == b.to_record()


# -- incidents: one page per problem ---------------------------------------------------------

DEGRADED = ap.Alert(
    "gateway:paper-a:degraded",
    ap.Severity.WARNING,
    "paper-a: degraded",
    "Gateway paper-a / fdemo is degraded: API stalled.",
)
STALL = ap.Alert(
    "gateway:paper-a:stall",
    ap.Severity.WARNING,
    "paper-a: API stalled",
    "Gateway paper-a / fdemo: API stalled. ibfleet soft-restarts it if this persists.",
)
FATAL = ap.Alert(
    "gateway:paper-a:fatal",
    ap.Severity.CRITICAL,
    "paper-a: stopped, a human must act",
    "Gateway paper-a / fdemo is FATAL.",
)


def test_incident_of_key_groups_by_owner_and_keeps_standalone_problems_apart() -> None:
    assert ap.incident_of_key("gateway:paper-a:stall") == "gateway:paper-a"
    assert ap.incident_of_key("strategy:meanrev:maybe-live") == "strategy:meanrev"
    assert ap.incident_of_key("gateway:paper-a:2fa") == "gateway:paper-a:2fa"
    assert ap.incident_of_key("gateway:paper-a:reauth") == "gateway:paper-a:reauth"
    assert ap.incident_of_key("plain") == "plain"


def test_a_stall_is_one_notice_and_one_resolved_notice_per_route() -> None:
    b = book()
    first = b.raise_(DEGRADED, T0)
    assert sorted(d.route for d in first) == ["mail", "ops-slack"]
    assert {d.kind for d in first} == {ap.DeliveryKind.RAISE}
    assert {d.key for d in first} == {"gateway:paper-a"}
    ack(b, first, T0)
    assert b.raise_(STALL, T0 + timedelta(seconds=1)) == []
    assert b.open_incidents() == {"gateway:paper-a": {DEGRADED.key, STALL.key}}
    assert b.resolve(DEGRADED.key, T0 + timedelta(minutes=1)) == []
    notices = b.resolve(STALL.key, T0 + timedelta(minutes=1))
    assert sorted(d.route for d in notices) == ["mail", "ops-slack"]
    assert {d.kind for d in notices} == {ap.DeliveryKind.RESOLVE}
    # The resolved notice lists every cause the incident had.
    assert "degraded" in notices[0].title and "API stalled" in notices[0].title
    assert "soft-restarts" in notices[0].body and "is degraded" in notices[0].body
    assert b.open_incidents() == {}


def test_an_update_is_sent_only_when_the_incident_severity_rises() -> None:
    b = book()
    ack(b, b.raise_(DEGRADED, T0), T0)
    update = b.raise_(FATAL, T0 + timedelta(minutes=1))
    assert sorted(d.route for d in update) == ["mail", "oncall-pager", "ops-slack"]
    assert {d.kind for d in update} == {ap.DeliveryKind.UPDATE}
    assert {d.severity for d in update} == {ap.Severity.CRITICAL}
    assert "FATAL" in update[0].body and "is degraded" in update[0].body
    ack(b, update, T0 + timedelta(minutes=1))
    assert b.raise_(STALL, T0 + timedelta(minutes=2)) == []
    # Resolving the critical cause lowers nothing aloud; the last cause closes it everywhere.
    assert b.resolve(FATAL.key, T0 + timedelta(minutes=3)) == []
    assert b.resolve(DEGRADED.key, T0 + timedelta(minutes=3)) == []
    notices = b.resolve(STALL.key, T0 + timedelta(minutes=3))
    assert sorted(d.route for d in notices) == ["mail", "oncall-pager", "ops-slack"]


def test_a_2fa_prompt_is_sent_even_while_its_gateway_incident_is_critical() -> None:
    b = book()
    ack(b, b.raise_(FATAL, T0), T0)
    prompt = b.raise_(TWOFA, T0 + timedelta(seconds=5))
    assert len(prompt) == 3 and {d.key for d in prompt} == {TWOFA.key}


def test_severity_rising_with_the_clock_sends_one_update_from_due() -> None:
    opens = T0 + timedelta(hours=2)

    def market(alert: ap.Alert, now: datetime) -> ap.Severity:
        return ap.Severity.CRITICAL if now >= opens else alert.severity

    policy = ap.AlertPolicy(routes=POLICY.routes, severity_at=market)
    b = ap.AlertBook(policy=policy)
    ack(b, b.raise_(DEGRADED, T0), T0)
    assert b.due(opens - timedelta(seconds=1)) == []
    update = b.due(opens)
    assert {d.kind for d in update} == {ap.DeliveryKind.UPDATE}
    assert "oncall-pager" in {d.route for d in update}
    ack(b, update, opens)
    assert b.due(opens + timedelta(minutes=1)) == []


def test_a_critical_incident_stops_repeating_once_its_severity_falls() -> None:
    closes = T0 + timedelta(minutes=10)

    def market(alert: ap.Alert, now: datetime) -> ap.Severity:
        return ap.Severity.CRITICAL if now < closes else ap.Severity.WARNING

    b = ap.AlertBook(policy=replace_policy(severity_at=market))
    ack(b, b.raise_(DEGRADED, T0), T0)
    assert b.due(T0 + timedelta(minutes=30)) == []
    nxt = b.next_due()
    assert nxt is not None and nxt > T0 + timedelta(minutes=30)  # no busy timer


def replace_policy(**changes: object) -> ap.AlertPolicy:
    return dataclasses.replace(POLICY, **changes)  # type: ignore[arg-type]


def test_incidents_survive_a_restart_without_a_repage() -> None:
    b = book()
    ack(b, b.raise_(DEGRADED, T0), T0)
    again = ap.AlertBook.from_record(json.loads(json.dumps(b.to_record())), policy=POLICY)
    assert again.raise_(STALL, T0 + timedelta(seconds=1)) == []
    assert again.resolve(DEGRADED.key, T0 + timedelta(seconds=2)) == []
    assert len(again.resolve(STALL.key, T0 + timedelta(seconds=2))) == 2


def test_a_record_from_before_incidents_is_read_back() -> None:
    old = {
        "seq": 3,
        "open": [
            {
                "key": DEGRADED.key,
                "severity": "warning",
                "title": DEGRADED.title,
                "body": DEGRADED.body,
                "raised_at": T0.isoformat(),
                "last_sent": T0.isoformat(),
                "routes": ["ops-slack", "mail"],
                "delivered_to": ["ops-slack", "mail"],
            }
        ],
        "pending": [],
    }
    b = ap.AlertBook.from_record(old, policy=POLICY)
    assert b.is_open(DEGRADED.key)
    assert b.raise_(DEGRADED, T0) == []
    assert len(b.resolve(DEGRADED.key, T0)) == 2


_GROUPED_KEYS = st.sampled_from(["gateway:g:a", "gateway:g:b", "gateway:g:2fa", "gateway:h:a"])


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), _GROUPED_KEYS, st.sampled_from(list(ap.Severity)))))
def test_random_causes_page_once_per_incident_opening_and_resolve_once_per_closing(
    ops: list[tuple[bool, str, ap.Severity]],
) -> None:
    b = book()
    for raising, key, severity in ops:
        incident = ap.incident_of_key(key)
        was_open = incident in b.open_incidents()
        if raising:
            out = b.raise_(ap.Alert(key, severity, "t", "b"), T0)
            kinds = {d.kind for d in out}
            assert kinds <= ({ap.DeliveryKind.UPDATE} if was_open else {ap.DeliveryKind.RAISE})
            assert was_open or out
        else:
            closes = b.open_incidents().get(incident) == {key}
            out = b.resolve(key, T0)
            assert bool(out) == closes
            assert {d.kind for d in out} <= {ap.DeliveryKind.RESOLVE}
        ack(b, out, T0)
