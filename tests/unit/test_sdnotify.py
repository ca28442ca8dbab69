"""The systemd notification driver: watchdog interval, STATUS line, when pings stop."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from supervisor import sdnotify
from supervisor.api_views import GatewayView
from tests.waiting import until


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self) -> None:
        self.sent.append("READY=1")

    def watchdog(self) -> None:
        self.sent.append("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.sent.append(f"STATUS={text}")

    def stopping(self) -> None:
        self.sent.append("STOPPING=1")


def view(name: str, state: str, ready: bool) -> GatewayView:
    return GatewayView(
        name=name,
        state=state,
        ready=ready,
        should_run=True,
        mode="paper",
        account="DU1",
        since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        reason="",
        last_heartbeat=None,
        heartbeat_rtt_seconds=None,
        container_id=None,
        restarts={},
        open_alerts=[],
    )


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert sdnotify.watchdog_interval({}, pid=7) is None


def test_watchdog_meant_for_another_process_is_not_ours() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "8"}
    assert sdnotify.watchdog_interval(env, pid=7) is None
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_PID": "7"}, pid=7) == 0.5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WATCHDOG_USEC": "30s"}, "WATCHDOG_USEC"),
        ({"WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"),
        ({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "me"}, "WATCHDOG_PID"),
    ],
)
def test_a_bad_watchdog_variable_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(sdnotify.ServiceNotifyError, match=named):
        sdnotify.watchdog_interval(env, pid=7)


def test_no_notify_socket_means_no_notifications() -> None:
    assert isinstance(sdnotify.from_environment({}), sdnotify.NullNotifier)
    notifier = sdnotify.from_environment({"NOTIFY_SOCKET": "/run/x"})
    assert isinstance(notifier, sdnotify.LibsystemdNotifier)


def test_fleet_summary_names_the_gateways_not_ready() -> None:
    text = sdnotify.fleet_summary(
        [view("b", "LOGGING_IN", False), view("a", "API_READY", True), view("c", "FATAL", False)]
    )
    assert text == "1/3 gateways ready; b LOGGING_IN, c FATAL"
    assert sdnotify.fleet_summary([view("a", "API_READY", True)]) == "1/1 gateways ready"


async def test_status_before_ready_then_pings_and_status_only_on_change() -> None:
    rec = Recorder()
    summary = ["0/1 gateways ready"]
    service = sdnotify.SystemdService(rec, interval=0.01, summary=lambda: summary[0])
    service.ready()
    assert rec.sent[:2] == ["STATUS=0/1 gateways ready", "READY=1"]
    await until(lambda: rec.sent.count("WATCHDOG=1") >= 3, what="pings")
    summary[0] = "1/1 gateways ready"
    await until(lambda: "STATUS=1/1 gateways ready" in rec.sent, what="new status")
    assert rec.sent.count("STATUS=0/1 gateways ready") == 1
    await service.stopping()
    assert rec.sent[-2:] == ["STOPPING=1", "STATUS=stopping: closing order gates"]


async def test_pings_stop_when_the_supervisor_stops_working() -> None:
    rec = Recorder()
    alive = [True]
    service = sdnotify.SystemdService(
        rec, interval=0.01, summary=lambda: "ok", alive=lambda: alive[0]
    )
    service.ready()
    await until(lambda: rec.sent.count("WATCHDOG=1") >= 2, what="pings")
    alive[0] = False
    await until(lambda: service._task is not None and service._task.done(), what="stopped")
    count = rec.sent.count("WATCHDOG=1")
    await asyncio.sleep(0.05)  # several intervals: no ping may follow
    assert rec.sent.count("WATCHDOG=1") == count
    await service.stopping()


async def test_a_broken_summary_does_not_stop_the_watchdog() -> None:
    rec = Recorder()

    def broken() -> str:
        raise RuntimeError("no summary")

    service = sdnotify.SystemdService(rec, interval=0.01, summary=broken)
    service.ready()
    await until(lambda: rec.sent.count("WATCHDOG=1") >= 2, what="pings")
    await service.stopping()


async def test_without_a_watchdog_only_status_is_kept_up() -> None:
    rec = Recorder()
    service = sdnotify.SystemdService(rec, interval=None, summary=lambda: "ok")
    service.ready()
    await asyncio.sleep(0)
    await service.stopping()
    assert "WATCHDOG=1" not in rec.sent and "READY=1" in rec.sent
