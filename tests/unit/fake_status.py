"""A hand-written fake of the running supervisor with everything the status page reads."""

from __future__ import annotations

import datetime as dt

from supervisor.api_views import (
    AlertView,
    HeartbeatSampleView,
    HeartbeatsView,
    ScheduledEvent,
    ScheduleKind,
    ScheduleView,
)
from tests.unit.test_api import NOW, FakeFleet

__all__ = ["NOW", "FakeStatusFleet"]


class FakeStatusFleet(FakeFleet):
    """The API tests' fake fleet, with heartbeats, alerts and a schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.alert_title = "paper-b: approve the IB Key prompt"
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

    def heartbeats(self, gateway: str) -> HeartbeatsView:
        return HeartbeatsView(gateway=gateway, span_seconds=300.0, samples=self.samples[gateway])

    def alerts(self) -> list[AlertView]:
        return [
            AlertView(
                key="gateway:paper-b:2fa",
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
