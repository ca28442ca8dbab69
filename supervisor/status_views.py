"""What the status page reads, built from the parts that own it: the next scheduled events
from the pure schedule code and the settings, open alerts from the alert book, a gateway's
recent heartbeats from its controller's ring buffer.

The supervisor (``supervisor.fleet_loop``) answers the API's ``FleetControl`` reads with these;
nothing here decides anything or keeps state.
"""

from __future__ import annotations

from datetime import datetime

from supervisor import schedules
from supervisor.alertpolicy import AlertBook
from supervisor.api_views import (
    AlertView,
    HeartbeatSampleView,
    HeartbeatsView,
    ScheduledEvent,
    ScheduleKind,
    ScheduleView,
)
from supervisor.heartbeats import HISTORY_SPAN, HeartbeatHistory
from supervisor.settings import FleetSettings


def upcoming(settings: FleetSettings, now: datetime) -> ScheduleView:
    """The reset window in progress (if any) and the next one, the next weekly
    re-authentication and each gateway's next daily restart, soonest first.

    The same schedule functions drive the supervisor's ticks, so the page shows what the
    supervisor will expect."""
    region = settings.region
    events: list[ScheduledEvent] = []
    current = schedules.in_reset_window(region, now)
    if current is not None:
        events.append(_window(current, active=True))
    events.append(_window(schedules.next_window(region, now), active=False))
    events.append(
        ScheduledEvent(
            kind=ScheduleKind.WEEKLY_REAUTH,
            name="weekly re-authentication",
            at=schedules.next_weekly_reauth(now),
        )
    )
    for gw in settings.gateways:
        at = schedules.next_daily(settings.daily_restart(gw), zone=settings.tz, now=now)
        events.append(
            ScheduledEvent(
                kind=ScheduleKind.DAILY_RESTART, name="daily restart", gateway=gw.name, at=at
            )
        )
    events.sort(key=lambda e: (not e.active, e.at, e.gateway or ""))
    return ScheduleView(at=now, timezone=settings.timezone, region=region.value, events=events)


def _window(window: schedules.Window, *, active: bool) -> ScheduledEvent:
    return ScheduledEvent(
        kind=ScheduleKind.RESET_WINDOW,
        name=window.name,
        at=window.start,
        until=window.end,
        active=active,
    )


def open_alerts(book: AlertBook) -> list[AlertView]:
    """The open causes of ``book`` (already redacted), oldest incident first."""
    return [
        AlertView(key=a.key, severity=a.severity.name.lower(), title=a.title, since=since)
        for a, since in book.open_causes()
    ]


def heartbeats(gateway: str, history: HeartbeatHistory, now: datetime) -> HeartbeatsView:
    """``gateway``'s heartbeats of the last :data:`HISTORY_SPAN` before ``now``."""
    return HeartbeatsView(
        gateway=gateway,
        span_seconds=HISTORY_SPAN.total_seconds(),
        samples=[HeartbeatSampleView(at=s.at, rtt_seconds=s.rtt) for s in history.recent(now)],
    )
