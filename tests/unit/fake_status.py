"""A hand-written fake of the running supervisor with everything the status page reads."""

from __future__ import annotations

import datetime as dt

from supervisor.api import (
    Action,
    AlertView,
    CommandResult,
    EventView,
    GatewayView,
    HeartbeatSampleView,
    HeartbeatsView,
    ScheduledEvent,
    ScheduleKind,
    ScheduleView,
)

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


class FakeStatusFleet:
    def __init__(self) -> None:
        self.views = {
            "paper-a": GatewayView(
                name="paper-a",
                state="API_READY",
                ready=True,
                should_run=True,
                mode="paper",
                account="DU1",
                since=NOW - dt.timedelta(minutes=12),
                reason="API answered",
                heartbeat_rtt_seconds=0.004,
            ),
            "paper-b": GatewayView(
                name="paper-b",
                state="DEGRADED",
                ready=False,
                should_run=True,
                mode="paper",
                account="DU1",
                since=NOW - dt.timedelta(seconds=40),
                reason="api stalled: heartbeat deadline exceeded",
                open_alerts=["gateway:paper-b:stall"],
            ),
        }
        self.alert_title = "paper-b: API stalled"
        self.samples = {
            "paper-a": [
                HeartbeatSampleView(at=NOW - dt.timedelta(seconds=s), rtt_seconds=0.002 + s / 1e4)
                for s in range(60, 0, -1)
            ],
            "paper-b": [
                HeartbeatSampleView(at=NOW - dt.timedelta(seconds=5), rtt_seconds=0.003),
                HeartbeatSampleView(at=NOW - dt.timedelta(seconds=4), rtt_seconds=None),
            ],
        }

    def gateways(self) -> list[GatewayView]:
        return list(self.views.values())

    async def events(
        self, *, since_id: int | None, limit: int, gateway: str | None
    ) -> list[EventView]:
        return []

    async def command(self, gateway: str, action: Action) -> CommandResult:
        return CommandResult(gateway=gateway, action=action, accepted=True, detail="done")

    def metrics(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4"

    def heartbeats(self, gateway: str) -> HeartbeatsView:
        return HeartbeatsView(gateway=gateway, span_seconds=300.0, samples=self.samples[gateway])

    def alerts(self) -> list[AlertView]:
        return [
            AlertView(
                key="gateway:paper-b:stall",
                severity="critical",
                title=self.alert_title,
                since=NOW - dt.timedelta(seconds=39),
            )
        ]

    def schedule(self) -> ScheduleView:
        return ScheduleView(
            at=NOW,
            timezone="America/New_York",
            region="america",
            events=[
                ScheduledEvent(
                    kind=ScheduleKind.RESET_WINDOW,
                    name="na-daily",
                    at=NOW + dt.timedelta(hours=4, minutes=30),
                    until=NOW + dt.timedelta(hours=6),
                ),
                ScheduledEvent(
                    kind=ScheduleKind.DAILY_RESTART,
                    name="daily restart",
                    gateway="paper-a",
                    at=NOW + dt.timedelta(hours=5),
                ),
                ScheduledEvent(
                    kind=ScheduleKind.WEEKLY_REAUTH,
                    name="weekly re-authentication",
                    at=NOW + dt.timedelta(days=4),
                ),
            ],
        )
