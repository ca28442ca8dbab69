"""``ibfleet doctor``: is this host fit to run the fleet? Pure checks over observed facts.

Every check reads the host through :class:`Host` (Docker, ports, clock, disk, alert routes) and
turns what it saw into a :class:`Finding` with a fix an operator can act on. The adapter that
talks to the real host is :mod:`supervisor.doctor_host`; tests drive these checks with a fake.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from supervisor import simfleet
from supervisor.settings import FleetSettings, RuntimeKind

#: Beyond this offset 2FA deadlines and restart schedules drift visibly.
MAX_CLOCK_OFFSET = dt.timedelta(seconds=2)
#: Below this the journal may fill the disk within days of a busy fleet.
MIN_FREE_BYTES = 200 * 1024**2
LOW_FREE_BYTES = 1024**3


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: what was seen, and what to do when it is not fit."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Engine:
    """What the Docker engine answered, or why it did not (``error``)."""

    version: str = ""
    api_version: str = ""
    clock: dt.datetime | None = None
    error: str | None = None
    endpoint: str = ""
    #: Why this engine keeps ibfleet's network isolation from being enforced (rootless, Docker
    #: Desktop: ``gateway.firewall.isolation_limits`` of its ``docker info``); empty: it can.
    isolation_limits: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TimeSync:
    """The host's own view of clock synchronisation (timedatectl, chrony); None: unknown."""

    synchronized: bool | None
    source: str = ""


@dataclass(frozen=True, slots=True)
class PortUse:
    """A port that cannot be bound, and who publishes it when it is a container."""

    in_use: bool
    container: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """A test notification's outcome on one route."""

    ok: bool
    error: str | None = None


class Host(Protocol):
    """The host as doctor sees it; every method reports failure in its return value."""

    def engine(self) -> Engine: ...

    def image_present(self, image: str) -> bool | None:
        """True/False, None when the engine cannot be asked."""
        ...

    def port(self, host: str, port: int) -> PortUse: ...

    def command_servers(self, fleet: str) -> dict[str, tuple[str, int]]:
        """Running gateways of the fleet and their IBC command server address."""
        ...

    def connect(self, host: str, port: int) -> str | None:
        """None when a TCP connection opens, else why not."""
        ...

    def time_sync(self) -> TimeSync: ...

    def free_bytes(self, directory: Path) -> int | None: ...

    def writable(self, journal: Path) -> str | None:
        """None when the journal can be created or written there, else why not."""
        ...

    def route_problem(self, index: int) -> str | None:
        """None when route ``index``'s URLs resolve and parse, else why not (redacted)."""
        ...

    def send_test_alert(self, index: int) -> Alert: ...


@dataclass(frozen=True, slots=True)
class Options:
    send_test_alert: bool = False
    docker_host: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def fit(self) -> bool:
        return not any(f.status is Status.FAIL for f in self.findings)

    def add(self, check: str, status: Status, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, status, detail, fix))


def examine(
    settings: FleetSettings | None,
    host: Host,
    *,
    now: dt.datetime,
    options: Options = Options(),
) -> Report:
    """Every check, in the order an operator fixes things: engine, image, ports, time, disk."""
    report = Report()
    uses_docker = settings is None or settings.runtime.kind is RuntimeKind.DOCKER
    engine = host.engine() if uses_docker else None
    _docker(report, engine, options)
    _isolation(report, engine)
    if settings is not None:
        _images(report, settings, host, engine)
        _ports(report, settings, host)
        _command_servers(report, settings, host, engine)
    _clock(report, engine, host.time_sync(), now)
    if settings is not None:
        _disk(report, settings, host)
        _alerts(report, settings, host, options)
    return report


def _docker(report: Report, engine: Engine | None, options: Options) -> None:
    if engine is None:
        report.add("docker", Status.SKIP, "runtime.kind is in-process: no engine needed")
        return
    if engine.error is not None:
        where = f"DOCKER_HOST={options.docker_host}" if options.docker_host else "the local socket"
        report.add(
            "docker",
            Status.FAIL,
            f"no engine answers at {engine.endpoint or where}: {engine.error}",
            "start the engine (`sudo systemctl start docker`), or point DOCKER_HOST at a "
            f"running one (now {where}); check with `docker version`",
        )
        return
    report.add("docker", Status.OK, f"engine {engine.version} (API {engine.api_version})")


def _isolation(report: Report, engine: Engine | None) -> None:
    if engine is None or engine.error is not None:
        return
    if not engine.isolation_limits:
        report.add(
            "network isolation",
            Status.OK,
            "the engine is rootful and not Docker Desktop: ibfleet's iptables rules apply on its "
            "host (the supervisor needs root or CAP_NET_ADMIN there to install them)",
        )
        return
    report.add(
        "network isolation",
        Status.WARN,
        "cannot be enforced on this engine: " + "; ".join(engine.isolation_limits),
        "run the fleet on a rootful Docker engine on a Linux host; here a gateway is created "
        "only once its iptables rules are installed",
    )


def gateway_images(settings: FleetSettings) -> dict[str, list[str]]:
    """Each image the fleet runs and the gateways that run it (as wiring.desired_specs picks)."""
    sim = settings.simulator
    default = sim.image if sim.enabled else settings.runtime.image
    out: dict[str, list[str]] = {}
    for gw in settings.gateways:
        image = sim.image if sim.enabled else (gw.image or default)
        out.setdefault(image, []).append(gw.name)
    return out


def _images(report: Report, settings: FleetSettings, host: Host, engine: Engine | None) -> None:
    if settings.runtime.kind is not RuntimeKind.DOCKER:
        return
    if engine is None or engine.error is not None:
        report.add("image", Status.SKIP, "no engine to ask", "fix docker first")
        return
    for image, names in gateway_images(settings).items():
        present = host.image_present(image)
        if present:
            report.add(f"image {image}", Status.OK, f"present (for {', '.join(names)})")
        elif present is None:
            report.add(f"image {image}", Status.SKIP, "the engine did not answer")
        elif settings.simulator.enabled:
            report.add(
                f"image {image}",
                Status.FAIL,
                "the simulator image is not built",
                f"build it: `ibfleet sim image --tag {image}`",
            )
        else:
            report.add(
                f"image {image}",
                Status.FAIL,
                f"not on this engine (for {', '.join(names)}); ibfleet does not pull images",
                f"pull it: `docker pull {image}`",
            )


def _ports(report: Report, settings: FleetSettings, host: Host) -> None:
    wanted: list[tuple[str, str, int]] = [("api.listen", settings.api.host, settings.api.port)]
    docker = settings.runtime.kind is RuntimeKind.DOCKER
    for i, gw in enumerate(settings.gateways):
        if docker:
            wanted.append((f"gateways[{i}].api_port", str(gw.bind), gw.api_port))
    if settings.simulator.enabled:
        control = (simfleet.CONTROL_HOST, settings.simulator.control_port)
        wanted.append(("simulator.control_port", *control))
    prefix = f"ibfleet-{settings.fleet}-"
    for where, bind, port in wanted:
        use = host.port(bind, port)
        name = f"port {bind}:{port}"
        if not use.in_use:
            report.add(name, Status.OK, f"free ({where})")
        elif use.container is not None and use.container.startswith(prefix):
            report.add(name, Status.OK, f"published by this fleet's {use.container} ({where})")
        else:
            holder = f"container {use.container}" if use.container else "another process"
            report.add(
                name,
                Status.FAIL,
                f"{where} is taken by {holder}",
                f"stop what listens there (`ss -ltnp 'sport = :{port}'`"
                + (f", `docker stop {use.container}`" if use.container else "")
                + f"), or change {where} in the fleet file",
            )


def _command_servers(
    report: Report, settings: FleetSettings, host: Host, engine: Engine | None
) -> None:
    if settings.runtime.kind is not RuntimeKind.DOCKER or engine is None or engine.error:
        return
    running = host.command_servers(settings.fleet)
    if not running:
        report.add(
            "IBC command server",
            Status.SKIP,
            "no gateway of the fleet runs yet; checked once one does",
        )
        return
    for name, (address, port) in sorted(running.items()):
        error = host.connect(address, port)
        if error is None:
            report.add(f"IBC command server {name}", Status.OK, f"{address}:{port} answers")
        else:
            report.add(
                f"IBC command server {name}",
                Status.FAIL,
                f"{address}:{port} from here: {error}",
                f"run the supervisor on the Docker host or attach it to network "
                f"{settings.runtime.network!r}; soft restarts and 2FA relogins need this port",
            )


def _clock(report: Report, engine: Engine | None, sync: TimeSync, now: dt.datetime) -> None:
    if engine is not None and engine.clock is not None:
        offset = abs(engine.clock - now)
        if offset > MAX_CLOCK_OFFSET:
            report.add(
                "clock",
                Status.FAIL,
                f"the Docker engine's clock is {offset.total_seconds():.1f} s off this host's",
                "synchronise both clocks (chrony or systemd-timesyncd); an offset moves restart "
                "schedules and 2FA deadlines",
            )
            return
    if sync.synchronized is False:
        report.add(
            "clock",
            Status.FAIL,
            f"not synchronised ({sync.source})",
            "enable time sync: `sudo timedatectl set-ntp true`, or start chronyd",
        )
    elif sync.synchronized is True:
        report.add("clock", Status.OK, f"synchronised ({sync.source})")
    else:
        seen = "matches the engine's; " if engine is not None and engine.clock else ""
        report.add(
            "clock",
            Status.WARN,
            f"{seen}cannot tell whether it is synchronised (no timedatectl or chrony answer)",
            "run chrony or systemd-timesyncd so restart schedules and 2FA deadlines hold",
        )


def _disk(report: Report, settings: FleetSettings, host: Host) -> None:
    journal = settings.storage.path
    directory = journal.parent
    free = host.free_bytes(directory)
    if free is None:
        report.add("disk", Status.SKIP, f"{directory} does not exist yet")
    elif free < MIN_FREE_BYTES:
        report.add(
            "disk",
            Status.FAIL,
            f"{free // 1024**2} MiB free at {directory}",
            "free space there, or move storage.path to a disk with at least 1 GiB free",
        )
    elif free < LOW_FREE_BYTES:
        report.add(
            "disk",
            Status.WARN,
            f"{free // 1024**2} MiB free at {directory}",
            "keep at least 1 GiB free for the journal",
        )
    else:
        report.add("disk", Status.OK, f"{free / 1024**3:.1f} GiB free at {directory}")
    error = host.writable(journal)
    if error is None:
        report.add("journal", Status.OK, f"{journal} is writable")
    else:
        report.add(
            "journal",
            Status.FAIL,
            f"{journal}: {error}",
            f"create {directory} and give the supervisor's user write access, or change "
            "storage.path",
        )


def _alerts(report: Report, settings: FleetSettings, host: Host, options: Options) -> None:
    routes = settings.alerts.routes
    if not routes:
        report.add(
            "alerts",
            Status.WARN,
            "no alert routes: nobody is told when a login needs a phone",
            "add alerts.routes with an apprise URL (slack://, mailto://, ...)",
        )
        return
    for i in range(len(routes)):
        name = f"alerts.routes[{i}]"
        problem = host.route_problem(i)
        if problem is not None:
            report.add(name, Status.FAIL, problem, "correct the URL or set its secret")
            continue
        if not options.send_test_alert:
            report.add(name, Status.SKIP, "configured; not sent", "pass --send-test-alert")
            continue
        sent = host.send_test_alert(i)
        if sent.ok:
            report.add(name, Status.OK, "test notification sent; check that it arrived")
        else:
            report.add(
                name,
                Status.FAIL,
                f"test notification failed: {sent.error}",
                "check the URL's credentials and that this host reaches the service",
            )


def failures(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.status is Status.FAIL]
