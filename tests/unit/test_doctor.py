"""``ibfleet doctor``'s checks over a fake host: each unfit fact is a failure with its fix."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from supervisor import doctor
from supervisor.doctor import Alert, Engine, PortUse, Status, TimeSync
from supervisor.settings import FleetSettings, load_text
from tests.unit import fleetfiles as ff

NOW = dt.datetime(2026, 3, 9, 14, 0, tzinfo=dt.UTC)


@dataclass
class FakeHost:
    """A fit host; each field is a fault switch."""

    engine_seen: Engine = field(default_factory=lambda: Engine("27.0", "1.46", clock=NOW))
    images: set[str] = field(default_factory=lambda: {"ghcr.io/gnzsnz/ib-gateway:stable"})
    taken: dict[int, str | None] = field(default_factory=dict)
    running: dict[str, tuple[str, int]] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    sync: TimeSync = field(default_factory=lambda: TimeSync(True, "timedatectl"))
    free: int | None = 50 * 1024**3
    write_error: str | None = None
    route_error: str | None = None
    alert: Alert = field(default_factory=lambda: Alert(ok=True))
    sent: list[int] = field(default_factory=list)

    def engine(self) -> Engine:
        return self.engine_seen

    def image_present(self, image: str) -> bool | None:
        return image in self.images

    def port(self, host: str, port: int) -> PortUse:
        if port in self.taken:
            return PortUse(in_use=True, container=self.taken[port])
        return PortUse(in_use=False)

    def command_servers(self, fleet: str) -> dict[str, tuple[str, int]]:
        return self.running

    def connect(self, host: str, port: int) -> str | None:
        return "Connection refused" if host in self.unreachable else None

    def time_sync(self) -> TimeSync:
        return self.sync

    def free_bytes(self, directory: Path) -> int | None:
        return self.free

    def writable(self, journal: Path) -> str | None:
        return self.write_error

    def route_problem(self, index: int) -> str | None:
        return self.route_error

    def send_test_alert(self, index: int) -> Alert:
        self.sent.append(index)
        return self.alert


def fleet(**over: object) -> FleetSettings:
    data = ff.fleet(alerts={"routes": [{"urls": ["json://localhost/hook"]}]}, **over)
    return load_text(ff.dump(data)).settings


def examine(host: FakeHost, settings: FleetSettings | None = None, **options: object):
    opts = doctor.Options(**options)  # type: ignore[arg-type]
    return doctor.examine(settings or fleet(), host, now=NOW, options=opts)


def failed(report: doctor.Report) -> dict[str, doctor.Finding]:
    return {f.check: f for f in doctor.failures(report.findings)}


def test_a_fit_host_is_fit() -> None:
    report = examine(FakeHost())
    assert report.fit, report.findings
    assert {f.check for f in report.findings} >= {"docker", "clock", "disk", "journal"}


def test_no_engine_fails_with_how_to_start_it_and_skips_what_needs_it() -> None:
    host = FakeHost(engine_seen=Engine(error="connection refused", endpoint="unix:///x.sock"))
    report = examine(host, docker_host="unix:///x.sock")
    (found,) = failed(report).values()
    assert found.check == "docker" and "unix:///x.sock" in found.detail
    assert "systemctl start docker" in found.fix and "DOCKER_HOST" in found.fix


def test_a_missing_gateway_image_says_to_pull_it() -> None:
    found = failed(examine(FakeHost(images=set())))
    assert (
        "docker pull ghcr.io/gnzsnz/ib-gateway:stable"
        in found["image ghcr.io/gnzsnz/ib-gateway:stable"].fix
    )


def test_a_missing_simulator_image_says_how_to_build_it() -> None:
    settings = fleet(simulator={"enabled": True})
    found = failed(examine(FakeHost(images=set()), settings))
    assert "ibfleet sim image --tag ibfleet-sim:latest" in found["image ibfleet-sim:latest"].fix


def test_an_occupied_port_names_its_setting_and_holder() -> None:
    found = failed(examine(FakeHost(taken={4012: None, 4002: "postgres"})))
    assert "gateways[1].api_port" in found["port 127.0.0.1:4012"].fix
    assert "docker stop postgres" in found["port 127.0.0.1:4002"].fix


def test_a_port_published_by_the_fleets_own_gateway_is_fine() -> None:
    assert examine(FakeHost(taken={4002: "ibfleet-test-paper-a"})).fit


def test_an_unreachable_command_server_fails_with_the_network_to_join() -> None:
    host = FakeHost(running={"paper-a": ("172.18.0.2", 7462)}, unreachable={"172.18.0.2"})
    found = failed(examine(host))["IBC command server paper-a"]
    assert "172.18.0.2:7462" in found.detail and "'ibfleet'" in found.fix


def test_an_engine_clock_offset_fails() -> None:
    late = Engine("27.0", "1.46", clock=NOW + dt.timedelta(seconds=30))
    found = failed(examine(FakeHost(engine_seen=late)))["clock"]
    assert "30.0 s" in found.detail


def test_an_unsynchronised_clock_fails_and_an_unknown_one_warns() -> None:
    assert "set-ntp" in failed(examine(FakeHost(sync=TimeSync(False, "x"))))["clock"].fix
    report = examine(FakeHost(sync=TimeSync(None)))
    assert report.fit
    assert [f.status for f in report.findings if f.check == "clock"] == [Status.WARN]


def test_low_disk_and_unwritable_journal_fail() -> None:
    found = failed(examine(FakeHost(free=10 * 1024**2, write_error="permission denied")))
    assert "10 MiB free" in found["disk"].detail
    assert "permission denied" in found["journal"].detail


def test_test_alert_is_sent_only_when_asked_and_its_failure_reported() -> None:
    host = FakeHost(alert=Alert(ok=False, error="401 from json://localhost"))
    assert examine(host).fit and host.sent == []
    found = failed(examine(host, send_test_alert=True))
    assert host.sent == [0]
    assert "401" in found["alerts.routes[0]"].detail


def test_a_route_that_cannot_be_built_fails() -> None:
    found = failed(examine(FakeHost(route_error="IBFLEET_HOOK is not set")))
    assert "IBFLEET_HOOK" in found["alerts.routes[0]"].detail


def test_without_a_fleet_file_only_the_host_is_checked() -> None:
    report = doctor.examine(None, FakeHost(), now=NOW)
    assert [f.check for f in report.findings] == ["docker", "network isolation", "clock"]


def test_the_simulators_control_port_is_checked_where_the_broker_publishes_it() -> None:
    from supervisor import simfleet

    settings = fleet(simulator={"enabled": True})
    port = settings.simulator.control_port
    spec = simfleet.render_broker_spec(
        fleet="test", network="net", image="img", users=[], fingerprint_key=b"k" * 32
    )
    (published,) = spec.ports
    asked: list[tuple[str, int]] = []

    class RecordingHost(FakeHost):
        def port(self, host: str, port: int) -> PortUse:
            asked.append((host, port))
            return super().port(host, port)

    examine(RecordingHost(), settings)
    assert (published.host_ip, port) in asked
