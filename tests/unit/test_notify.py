"""The alert adapter with hand-written senders behind the Sender Protocol (no network)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apprise
import apprise.decorators
import pytest

from supervisor.alertpolicy import (
    Alert,
    AlertBook,
    AlertPolicy,
    Delivery,
    DeliveryKind,
    Redactor,
    Route,
    Severity,
)
from supervisor.journal import AsyncJournal, SqliteJournal
from supervisor.metrics import FleetMetrics
from supervisor.notify import (
    REPEAT_NOTE,
    AlertDispatcher,
    AppriseSender,
    ConsoleSender,
    DeliveryResult,
    Notifier,
    NotifyConfigError,
    build_routes,
    fleet_redactor,
    make_sender,
    url_secrets,
)
from supervisor.settings import AlertRoute, AlertSettings, FleetSettings
from tests.unit import fleetfiles as ff
from tests.waiting import until

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeSender:
    """Records what it was asked to send; can fail, raise or block on a gate."""

    def __init__(self, *, fail_times: int = 0, error: str = "refused", raises: bool = False):
        self.sent: list[dict[str, Any]] = []
        self.fail_times = fail_times
        self.error = error
        self.raises = raises
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("fake",)

    def send(self, *, title: str, body: str, severity: Severity, resolved: bool) -> DeliveryResult:
        if self.gate is not None:
            self.gate.wait(30)
        with self._lock:
            self.sent.append(
                {"title": title, "body": body, "severity": severity, "resolved": resolved}
            )
            if self.raises:
                raise RuntimeError(self.error)
            if self.fail_times > 0:
                self.fail_times -= 1
                return DeliveryResult(ok=False, error=self.error)
        return DeliveryResult(ok=True)


class MemoryStore:
    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None
        self.saves = 0

    async def save_alert_book(self, record: Mapping[str, Any], *, now: datetime) -> None:
        self.record = dict(record)
        self.saves += 1

    async def load_alert_book(self) -> dict[str, Any] | None:
        return self.record


POLICY = AlertPolicy(
    routes=(Route("ops", Severity.WARNING), Route("pager", Severity.CRITICAL)),
    repeat_critical_every=timedelta(minutes=10),
    retry_base=timedelta(seconds=10),
    retry_cap=timedelta(minutes=1),
)
CRIT = Alert("gateway:paper-a:2fa", Severity.CRITICAL, "paper-a needs 2FA", "approve on phone")
WARN = Alert("gateway:paper-a:farm", Severity.WARNING, "farm broken", "usfarm broken")


def make(
    senders: Mapping[str, FakeSender],
    *,
    clock: FakeClock | None = None,
    store: MemoryStore | None = None,
    redactor: Redactor | None = None,
    deadline: float = 5.0,
    metrics: FleetMetrics | None = None,
    policy: AlertPolicy = POLICY,
) -> tuple[AlertDispatcher, Notifier]:
    red = redactor or Redactor()
    notifier = Notifier(senders, redactor=red, deadline=deadline)
    dispatcher = AlertDispatcher(
        book=AlertBook(policy=policy, redactor=red),
        notifier=notifier,
        store=store or MemoryStore(),
        clock=clock or FakeClock(),
        metrics=metrics,
    )
    return dispatcher, notifier


async def test_warning_goes_only_to_routes_that_take_warnings() -> None:
    ops, pager = FakeSender(), FakeSender()
    dispatcher, notifier = make({"ops": ops, "pager": pager})
    try:
        await dispatcher.raise_(WARN)
        await dispatcher.wait_idle(5)
        assert [m["title"] for m in ops.sent] == ["farm broken"]
        assert pager.sent == []
        assert dispatcher.book.pending_ids() == frozenset()
    finally:
        notifier.close()


async def test_same_problem_raised_twice_pages_once() -> None:
    ops, pager = FakeSender(), FakeSender()
    dispatcher, notifier = make({"ops": ops, "pager": pager})
    try:
        assert len(await dispatcher.raise_(CRIT)) == 2
        assert await dispatcher.raise_(CRIT) == []
        await dispatcher.wait_idle(5)
        assert len(ops.sent) == 1 and len(pager.sent) == 1
    finally:
        notifier.close()


async def test_resolve_sends_a_resolved_notice_to_routes_that_heard() -> None:
    ops, pager = FakeSender(), FakeSender()
    dispatcher, notifier = make({"ops": ops, "pager": pager})
    try:
        await dispatcher.raise_(CRIT)
        await dispatcher.wait_idle(5)
        await dispatcher.resolve(CRIT.key)
        await dispatcher.wait_idle(5)
        assert ops.sent[-1]["resolved"] is True
        assert ops.sent[-1]["title"].startswith("Resolved: ")
        assert pager.sent[-1]["resolved"] is True
    finally:
        notifier.close()


async def test_failed_delivery_is_retried_after_backoff_and_counted() -> None:
    clock = FakeClock()
    ops = FakeSender(fail_times=1, error="503 from server")
    metrics = FleetMetrics(version="t", gateway_states=("A",), clock=lambda: 0.0)
    dispatcher, notifier = make({"ops": ops, "pager": FakeSender()}, clock=clock, metrics=metrics)
    try:
        await dispatcher.raise_(WARN)
        await dispatcher.wait_idle(5)
        assert len(ops.sent) == 1
        assert len(dispatcher.book.pending_ids()) == 1  # waiting for its retry
        clock.now = T0 + timedelta(seconds=9)
        assert await dispatcher.tick() == []  # not due yet
        clock.now = T0 + timedelta(seconds=10)
        [retry] = await dispatcher.tick()
        assert retry.attempt == 2
        await dispatcher.wait_idle(5)
        assert len(ops.sent) == 2
        assert dispatcher.book.pending_ids() == frozenset()
        body = metrics.render()[0].decode()
        assert 'ibfleet_alerts_failed_total{route="ops"} 1.0' in body
        assert 'ibfleet_alerts_sent_total{route="ops",severity="warning"} 1.0' in body
    finally:
        notifier.close()


async def test_slow_route_does_not_hold_back_another_route() -> None:
    ops, pager = FakeSender(), FakeSender()
    pager.gate = threading.Event()
    dispatcher, notifier = make({"ops": ops, "pager": pager})
    try:
        await dispatcher.raise_(CRIT)
        await until(lambda: len(ops.sent) == 1)
        # ops is done and recorded while pager is still blocked in its send.
        await until(lambda: len(dispatcher.book.pending_ids()) == 1)
        assert pager.sent == []
        pager.gate.set()
        await dispatcher.wait_idle(5)
        assert len(pager.sent) == 1
    finally:
        pager.gate.set()
        notifier.close()


async def test_hung_route_fails_at_the_deadline_without_stalling_the_loop() -> None:
    hung = FakeSender()
    hung.gate = threading.Event()
    notifier = Notifier({"ops": hung}, redactor=Redactor(), deadline=0.2)
    delivery = Delivery("1:raise:ops:k", "k", "ops", DeliveryKind.RAISE, Severity.WARNING, "t", "b")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        result = await notifier.deliver(delivery)
        assert result.ok is False
        assert result.error is not None and "no answer within 0.2s" in result.error
        assert ticks >= 5  # the loop kept running while the send hung
    finally:
        task.cancel()
        hung.gate.set()
        notifier.close()


async def test_sender_exception_becomes_a_failed_result() -> None:
    notifier = Notifier(
        {"ops": FakeSender(raises=True, error="socket exploded")}, redactor=Redactor()
    )
    delivery = Delivery("1:raise:ops:k", "k", "ops", DeliveryKind.RAISE, Severity.WARNING, "t", "b")
    try:
        result = await notifier.deliver(delivery)
        assert result == DeliveryResult(ok=False, error="RuntimeError: socket exploded")
        missing = await notifier.deliver(
            Delivery("2", "k", "nowhere", DeliveryKind.RAISE, Severity.WARNING, "t", "b")
        )
        assert missing.ok is False and "nowhere" in (missing.error or "")
    finally:
        notifier.close()


async def test_a_possible_repeat_says_so_first_in_its_body() -> None:
    ops = FakeSender()
    notifier = Notifier({"ops": ops}, redactor=Redactor())
    base = Delivery("1:raise:ops:k", "k", "ops", DeliveryKind.RAISE, Severity.WARNING, "t", "b")
    try:
        assert (await notifier.deliver(base)).ok
        assert (await notifier.deliver(replace(base, repeat=True))).ok
        first, again = ops.sent
        assert first["body"] == "b"
        assert again["body"] == f"{REPEAT_NOTE}\nb" and again["title"] == first["title"]
    finally:
        notifier.close()


async def test_secrets_are_redacted_from_messages_and_errors() -> None:
    secret = "s3cr3t-IB-password"
    ops = FakeSender(fail_times=1, error=f"server said: bad {secret}")
    dispatcher, notifier = make(
        {"ops": ops, "pager": FakeSender()}, redactor=Redactor(secrets=frozenset({secret}))
    )
    try:
        await dispatcher.raise_(
            Alert("k", Severity.WARNING, f"login failed with {secret}", f"pw={secret} token=abc")
        )
        await dispatcher.wait_idle(5)
        [message] = ops.sent
        assert secret not in message["title"] and secret not in message["body"]
        assert "***" in message["title"]
        delivery = Delivery("x", "k", "ops", DeliveryKind.RAISE, Severity.WARNING, "t", secret)
        ops.fail_times = 1
        result = await notifier.deliver(delivery)
        assert result.error is not None and secret not in result.error
        assert secret not in ops.sent[-1]["body"]
    finally:
        notifier.close()


async def test_book_is_persisted_after_every_change() -> None:
    store = MemoryStore()
    dispatcher, notifier = make({"ops": FakeSender(), "pager": FakeSender()}, store=store)
    try:
        await dispatcher.raise_(WARN)
        assert store.saves >= 1
        assert store.record is not None and len(store.record["pending"]) == 1  # in flight
        await dispatcher.wait_idle(5)
        await until(lambda: store.record is not None and store.record["pending"] == [])
        assert store.record["incidents"][0]["delivered_to"] == ["ops"]
    finally:
        notifier.close()


async def test_restarted_dispatcher_does_not_page_again_but_sends_resolved(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "journal.sqlite"
    first_ops, first_pager = FakeSender(), FakeSender()
    journal = AsyncJournal(SqliteJournal(path))
    dispatcher, notifier = make({"ops": first_ops, "pager": first_pager}, clock=clock)
    dispatcher = AlertDispatcher(
        book=dispatcher.book, notifier=notifier, store=journal, clock=clock
    )
    await dispatcher.raise_(CRIT)
    await dispatcher.wait_idle(5)
    await dispatcher.stop()
    notifier.close()
    await journal.aclose()

    ops, pager = FakeSender(), FakeSender()
    journal = AsyncJournal(SqliteJournal(path))
    notifier = Notifier({"ops": ops, "pager": pager}, redactor=Redactor())
    clock.now = T0 + timedelta(minutes=1)
    restored = await AlertDispatcher.restore(
        policy=POLICY, redactor=Redactor(), notifier=notifier, store=journal, clock=clock
    )
    try:
        assert await restored.raise_(CRIT) == []
        assert await restored.tick() == []
        await restored.resolve(CRIT.key)
        await restored.wait_idle(5)
        assert [m["resolved"] for m in ops.sent] == [True]
        assert [m["resolved"] for m in pager.sent] == [True]
    finally:
        await restored.stop()
        notifier.close()
        await journal.aclose()


async def test_timer_sends_due_retries_by_itself() -> None:
    policy = AlertPolicy(
        routes=(Route("ops", Severity.INFO),),
        retry_base=timedelta(milliseconds=50),
        retry_cap=timedelta(milliseconds=100),
    )
    ops = FakeSender(fail_times=2)
    notifier = Notifier({"ops": ops}, redactor=Redactor())
    dispatcher = AlertDispatcher(
        book=AlertBook(policy=policy),
        notifier=notifier,
        store=MemoryStore(),
        clock=lambda: datetime.now(UTC),
    )
    dispatcher.start()
    try:
        await dispatcher.raise_(WARN)
        await until(lambda: len(ops.sent) == 3 and not dispatcher.book.pending_ids())
    finally:
        await dispatcher.stop()
        notifier.close()


# -- senders and building from settings --------------------------------------------------------


def test_console_sender_prints_severity_title_and_body() -> None:
    out = io.StringIO()
    sender = ConsoleSender(route="demo", stream=out)
    assert sender.send(title="T", body="B", severity=Severity.CRITICAL, resolved=False).ok
    sender.send(title="T2", body="B2", severity=Severity.CRITICAL, resolved=True)
    text = out.getvalue()
    assert "[ibfleet alert CRITICAL] T" in text and "B" in text
    assert "[ibfleet alert RESOLVED] T2" in text


def test_console_url_makes_a_console_sender() -> None:
    assert isinstance(make_sender(route="r", urls=["console://"]), ConsoleSender)


def test_unknown_url_is_refused_naming_route_and_scheme_but_not_the_url() -> None:
    with pytest.raises(NotifyConfigError) as caught:
        AppriseSender(route="routes[1]", urls=["json://127.0.0.1/x", "nosuch://tok-SECRET-9876"])
    message = str(caught.value)
    assert "routes[1]" in message and "URL #2" in message and "nosuch://" in message
    assert "tok-SECRET-9876" not in message


def test_url_secrets_include_password_and_long_tokens() -> None:
    found = url_secrets("slack://TOKENAAAA1/TOKENBBBB2/TOKENCCCC3/#chan")
    assert {"TOKENAAAA1", "TOKENBBBB2", "TOKENCCCC3"} <= found
    found = url_secrets("mailto://alerts:p4ssw0rd-x@mail.example.test?to=ops@example.test")
    assert "p4ssw0rd-x" in found
    assert "ops@example.test" not in found


def test_build_routes_names_routes_and_resolves_env_urls() -> None:
    settings = AlertSettings(
        routes=[
            AlertRoute(urls=[{"env": "ALERT_URL"}], min_severity="critical"),
            AlertRoute(urls=["console://"], min_severity="info"),
        ],
        repeat_critical_every="5m",
    )
    policy, senders, secrets = build_routes(
        settings, environ={"ALERT_URL": "json://hook:pw-123456789@127.0.0.1:9/x"}
    )
    assert [r.name for r in policy.routes] == ["routes[0]", "routes[1]"]
    assert [r.min_severity for r in policy.routes] == [Severity.CRITICAL, Severity.INFO]
    assert policy.repeat_critical_every == timedelta(minutes=5)
    assert senders["routes[0]"].schemes == ("json",)
    assert isinstance(senders["routes[1]"], ConsoleSender)
    assert "pw-123456789" in secrets


def test_fleet_redactor_hides_passwords_and_urls_but_not_usernames() -> None:
    data = ff.fleet(
        alerts={"routes": [{"urls": [{"env": "ALERT_URL"}]}]},
        api={"token": {"env": "API_TOKEN"}},
    )
    env = ff.env_for(data)
    env["ALERT_URL"] = "json://user:hookpass-1234@127.0.0.1:9/path"
    env["API_TOKEN"] = "api-token-abcdef"
    settings = FleetSettings(**data)
    redactor = fleet_redactor(settings, environ=env)
    text = (
        f"user {env['USER_PAPER_A']} pw {env['PASS_PAPER_A']} "
        f"token {env['API_TOKEN']} url {env['ALERT_URL']} hookpass-1234"
    )
    clean = redactor.redact(text)
    assert env["USER_PAPER_A"] in clean
    for secret in (env["PASS_PAPER_A"], env["API_TOKEN"], "hookpass-1234"):
        assert secret not in clean


async def test_every_message_is_made_inert_before_any_sender_sees_it() -> None:
    ops = FakeSender()
    notifier = Notifier({"ops": ops}, redactor=Redactor())
    forged = "go <!channel> <https://evil.example|IB Key>\x1b[2J\x07 [tap](https://x) @here"
    try:
        delivery = Delivery(
            "x", "k", "ops", DeliveryKind.RAISE, Severity.WARNING, "t\n" + forged, "a\n" + forged
        )
        assert (await notifier.deliver(delivery)).ok
        [message] = ops.sent
        assert "\n" not in message["title"]
        assert message["body"].startswith("a\n")  # the book's own lines are kept
        for text in (message["title"], message["body"]):
            for live in ("<", ">", "\x1b", "\x07", "](", "@here"):
                assert live not in text, (live, text)
    finally:
        notifier.close()


def test_apprise_is_told_the_body_is_plain_text() -> None:
    # A custom apprise plugin records what apprise hands a target: the declared body format.
    seen: list[object] = []

    @apprise.decorators.notify(on="ibfleettest")  # type: ignore[misc]
    def _record(body: str, title: str, notify_type: str, meta: dict[str, Any], **kw: Any) -> bool:
        seen.append(kw.get("body_format"))
        return True

    sender = AppriseSender(route="ops", urls=["ibfleettest://x"])
    assert sender.send(title="t", body="<!channel>", severity=Severity.WARNING, resolved=False).ok
    assert seen == [apprise.NotifyFormat.TEXT]
