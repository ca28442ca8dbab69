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

from supervisor.alertpolicy import Alert, AlertBook, AlertPolicy, Redactor, Route, Severity
from supervisor.journal import AsyncJournal, SqliteJournal
from supervisor.metrics import FleetMetrics
from supervisor.notify import AlertDispatcher, AppriseSender, Notifier, Sender
from tests.integration.smtp import SmtpSink, WebhookSink
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


async def test_alert_and_resolved_notice_reach_smtp_and_webhook(
    smtp: SmtpSink, webhook: WebhookSink, tmp_path: Path
) -> None:
    journal = AsyncJournal(SqliteJournal(tmp_path / "j.sqlite"))
    senders: dict[str, Sender] = {
        "mail": AppriseSender(route="mail", urls=[smtp.mailto_url()]),
        "hook": AppriseSender(route="hook", urls=[webhook.url]),
    }
    dispatcher, notifier = dispatcher_for(senders, mail_and_hook_policy(), journal)
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
