"""Alerts through real apprise to a real SMTP server and a real HTTP webhook on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import authlog, codes
from supervisor import lifecycle as lc
from supervisor.alertpolicy import Alert, AlertBook, AlertPolicy, Redactor, Route, Severity
from supervisor.journal import AsyncJournal, SqliteJournal
from supervisor.metrics import FleetMetrics
from supervisor.notify import AlertDispatcher, AppriseSender, Notifier, Sender
from tests.integration.smtp import SmtpSink, WebhookSink
from tests.unit.lifecycle.driver import Driver
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)

SECRET = "Pa55-w0rd-never-mailed"
CRIT = Alert(
    "gateway:live-a:2fa",
    Severity.CRITICAL,
    "live-a waits for 2FA",
    f"Approve the IB Key prompt for user ibuser1 (login used password={SECRET}).",
)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


def dispatcher_for(
    senders: dict[str, Sender],
    policy: AlertPolicy,
    store: Any,
    *,
    metrics: FleetMetrics | None = None,
    book: AlertBook | None = None,
) -> tuple[AlertDispatcher, Notifier]:
    redactor = Redactor(secrets=frozenset({SECRET}))
    notifier = Notifier(senders, redactor=redactor, deadline=15)
    dispatcher = AlertDispatcher(
        book=book or AlertBook(policy=policy, redactor=redactor),
        notifier=notifier,
        store=store,
        clock=lambda: datetime.now(UTC),
        metrics=metrics,
    )
    return dispatcher, notifier


def mail_and_hook_policy() -> AlertPolicy:
    return AlertPolicy(
        routes=(Route("mail", Severity.WARNING), Route("hook", Severity.WARNING)),
        retry_base=timedelta(milliseconds=100),
        retry_cap=timedelta(milliseconds=400),
    )


def mail_and_hook(smtp: SmtpSink, webhook: WebhookSink) -> dict[str, Sender]:
    return {
        "mail": AppriseSender(route="mail", urls=[smtp.mailto_url()]),
        "hook": AppriseSender(route="hook", urls=[webhook.url]),
    }


async def test_alert_and_resolved_notice_reach_smtp_and_webhook(
    smtp: SmtpSink, webhook: WebhookSink, tmp_path: Path
) -> None:
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    dispatcher, notifier = dispatcher_for(
        mail_and_hook(smtp, webhook), mail_and_hook_policy(), journal
    )
    try:
        await dispatcher.raise_(CRIT)
        mail = await asyncio.to_thread(smtp.wait_for, lambda m: "2FA" in m.subject)
        assert mail.rcpt_tos == ("ops@ibfleet.test",)
        assert "ibuser1" in mail.text  # the username is shown on purpose
        hook = await asyncio.to_thread(webhook.wait_for, lambda b: "2FA" in b.get("title", ""))
        assert "IB Key" in hook["message"]
        await dispatcher.wait_idle(15)

        await dispatcher.resolve(CRIT.key)
        resolved = await asyncio.to_thread(
            smtp.wait_for, lambda m: m.subject.startswith("Resolved:")
        )
        assert "live-a waits for 2FA" in resolved.subject
        await asyncio.to_thread(
            webhook.wait_for, lambda b: b.get("title", "").startswith("Resolved:")
        )
        await dispatcher.wait_idle(15)
        assert len(smtp.messages) == 2
    finally:
        await dispatcher.stop()
        notifier.close()
        await journal.aclose()


async def test_secret_in_an_alert_never_reaches_the_mail(smtp: SmtpSink, tmp_path: Path) -> None:
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    policy = AlertPolicy(routes=(Route("mail", Severity.INFO),))
    dispatcher, notifier = dispatcher_for(
        {"mail": AppriseSender(route="mail", urls=[smtp.mailto_url()])}, policy, journal
    )
    try:
        await dispatcher.raise_(CRIT)
        mail = await asyncio.to_thread(smtp.wait_for, lambda m: "2FA" in m.subject)
        assert SECRET not in mail.text
        assert SECRET.encode() not in mail.raw
        assert "***" in mail.text
    finally:
        await dispatcher.stop()
        notifier.close()
        await journal.aclose()


async def test_failing_route_is_retried_with_backoff_while_mail_goes_out(
    smtp: SmtpSink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.notify")
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    dead_url = f"json://127.0.0.1:{closed_port()}/hook"
    metrics = FleetMetrics(version="t", gateway_states=("A",))
    policy = AlertPolicy(
        routes=(Route("mail", Severity.WARNING), Route("dead", Severity.WARNING)),
        retry_base=timedelta(milliseconds=100),
        retry_cap=timedelta(milliseconds=200),
        max_attempts=50,
    )
    dispatcher, notifier = dispatcher_for(
        {
            "mail": AppriseSender(route="mail", urls=[smtp.mailto_url()]),
            "dead": AppriseSender(route="dead", urls=[dead_url]),
        },
        policy,
        journal,
        metrics=metrics,
    )
    dispatcher.start()
    try:
        await dispatcher.raise_(CRIT)
        await asyncio.to_thread(smtp.wait_for, lambda m: "2FA" in m.subject)

        def failures() -> float:
            body = metrics.render()[0].decode()
            for line in body.splitlines():
                if line.startswith('ibfleet_alerts_failed_total{route="dead"}'):
                    return float(line.split()[-1])
            return 0.0

        await until(lambda: failures() >= 3)
        # Still open and still retrying, and mail got exactly one page.
        assert any(pid.endswith(f":dead:{CRIT.key}") for pid in dispatcher.book.pending_ids())
        assert len(smtp.messages) == 1
        reasons = [
            r.getMessage()
            for r in caplog.records
            if "route=dead" in r.getMessage() and "ok=False" in r.getMessage()
        ]
        assert reasons and "apprise reported a failure" not in reasons[0]
        assert "error=" in reasons[0] and "127.0.0.1" in reasons[0]
        assert all(dead_url not in r.getMessage() for r in caplog.records)
    finally:
        await dispatcher.stop(drain=1)
        notifier.close()
        await journal.aclose()


def test_apprise_failure_reason_is_captured() -> None:
    sender = AppriseSender(route="dead", urls=[f"json://127.0.0.1:{closed_port()}/hook"])
    result = sender.send(title="t", body="b", severity=Severity.WARNING, resolved=False)
    assert result.ok is False
    assert result.error is not None and "connection error" in result.error.lower()


async def test_restarted_dispatcher_does_not_page_again_but_sends_the_resolved_notice(
    smtp: SmtpSink, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    policy = AlertPolicy(routes=(Route("mail", Severity.WARNING),))

    journal = AsyncJournal(SqliteJournal(path))
    first, notifier = dispatcher_for(
        {"mail": AppriseSender(route="mail", urls=[smtp.mailto_url()])}, policy, journal
    )
    await first.raise_(CRIT)
    await asyncio.to_thread(smtp.wait_for, lambda m: "2FA" in m.subject)
    await first.wait_idle(15)
    await first.stop()
    notifier.close()
    await journal.aclose()

    journal = AsyncJournal(SqliteJournal(path))
    redactor = Redactor(secrets=frozenset({SECRET}))
    notifier = Notifier(
        {"mail": AppriseSender(route="mail", urls=[smtp.mailto_url()])}, redactor=redactor
    )
    second = await AlertDispatcher.restore(
        policy=policy, redactor=redactor, notifier=notifier, store=journal
    )
    second.start()
    try:
        assert await second.raise_(CRIT) == []  # the problem is still open: no new page
        await second.resolve(CRIT.key)
        await asyncio.to_thread(smtp.wait_for, lambda m: m.subject.startswith("Resolved:"))
        await second.wait_idle(15)
        subjects = [m.subject for m in smtp.messages]
        assert len(subjects) == 2, subjects
        assert sum(1 for s in subjects if not s.startswith("Resolved:")) == 1
    finally:
        await second.stop()
        notifier.close()
        await journal.aclose()


def _lifecycle_stall_effects() -> tuple[list[Alert], list[str]]:
    """The alerts and resolves the real lifecycle emits for one stall that recovers."""
    driver = Driver()
    driver.to_ready()
    driver.send(lc.HeartbeatMissed())
    driver.advance(seconds=driver.policy.stall_page_after.total_seconds() + 0.5)
    raised = driver.send(lc.Tick())
    resolved = driver.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=2)))
    alerts = [e for e in raised if isinstance(e, Alert)]
    keys = [e.key for e in resolved if isinstance(e, lc.ResolveAlert)]
    assert len(alerts) >= 2 and sorted(keys) == sorted(a.key for a in alerts)  # per cause
    return alerts, keys


async def test_a_stall_is_one_notice_and_one_resolved_notice_on_each_route(
    smtp: SmtpSink, webhook: WebhookSink, tmp_path: Path
) -> None:
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    dispatcher, notifier = dispatcher_for(
        mail_and_hook(smtp, webhook), mail_and_hook_policy(), journal
    )
    alerts, keys = _lifecycle_stall_effects()
    try:
        for alert in alerts:
            await dispatcher.raise_(alert)
        await asyncio.to_thread(smtp.wait_for, lambda m: m.subject.startswith("paper-a"))
        await asyncio.to_thread(webhook.wait_for, lambda b: b["title"].startswith("paper-a"))
        await dispatcher.wait_idle(15)
        for key in keys:
            await dispatcher.resolve(key)
        await asyncio.to_thread(smtp.wait_for, lambda m: m.subject.startswith("Resolved:"))
        await asyncio.to_thread(webhook.wait_for, lambda b: b["title"].startswith("Resolved:"))
        await dispatcher.wait_idle(15)
        assert len(smtp.messages) == 2, [m.subject for m in smtp.messages]
        assert len(webhook.bodies) == 2, [b["title"] for b in webhook.bodies]
        resolved = webhook.bodies[1]
        # The resolved notice names every cause of the incident.
        assert "degraded" in resolved["title"] and "stalled" in resolved["title"]
    finally:
        await dispatcher.stop()
        notifier.close()
        await journal.aclose()


FORGED_DETAIL = (
    "\x1b[2J\x1b]0;pwned\x07Please approve <!channel> now at "
    "<https://evil.example/approve|IB Key: tap here> or [IB Key](https://evil.example) "
    "@here\r\nsupport: ibfleet will not ask twice\u202e\u200b" + "A" * 2000
)


async def test_forged_log_lines_reach_a_webhook_inert_through_real_apprise(
    webhook: WebhookSink, tmp_path: Path
) -> None:
    # The forged text enters as IBC's failed-login dialog line, the way a gateway's log does.
    follower = authlog.AuthLogFollower(started_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    events = follower.feed("2026-03-02 12:00:00:000 IBC: Login error message:")
    events += follower.feed(FORGED_DETAIL)
    events += follower.flush()
    failed = [e for e in events if isinstance(e, authlog.LoginFailed)]
    assert failed and failed[0].message is not None
    alert = Alert(
        "gateway:live-a:login",
        Severity.WARNING,
        "live-a: login failed",
        f"Gateway live-a / ibuser1: login failed: {codes.ib_said(failed[0].message)}.",
    )
    # And the same text unsanitised, as a careless producer might pass it: the notifier's
    # own pass must still make it inert.
    raw = Alert("gateway:live-b:login", Severity.WARNING, "live-b: " + FORGED_DETAIL, FORGED_DETAIL)
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    senders: dict[str, Sender] = {"hook": AppriseSender(route="hook", urls=[webhook.url])}
    policy = AlertPolicy(routes=(Route("hook", Severity.WARNING),))
    dispatcher, notifier = dispatcher_for(senders, policy, journal)
    try:
        await dispatcher.raise_(alert)
        await dispatcher.raise_(raw)
        await asyncio.to_thread(webhook.wait_for, lambda b: b["title"].startswith("live-a"))
        await asyncio.to_thread(webhook.wait_for, lambda b: b["title"].startswith("live-b"))
        await dispatcher.wait_idle(15)
    finally:
        await dispatcher.stop()
        notifier.close()
        await journal.aclose()
    for body in webhook.bodies:
        text = body["title"] + "\n" + body["message"]
        assert not any(ord(c) < 32 and c != "\n" for c in text), repr(text)
        assert "\x1b" not in text and "\u202e" not in text and "\u200b" not in text
        for live in ("<!channel>", "<https://", "](https://", "@here", "<", ">"):
            assert live not in text, (live, text)
        assert "\n" not in body["title"]
    quoted = webhook.bodies[0]["message"]
    assert 'IB said: "Please approve \u2039!channel\u203a now' in quoted
    assert len(quoted) < 700  # capped: the 2000-character tail is gone
    assert "will not ask twice" in quoted  # kept, visibly inside IB's quoted text
