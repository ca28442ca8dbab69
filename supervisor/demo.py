"""``ibfleet demo``: a small simulated fleet under the real supervisor, with scripted faults.

No IB account and no configuration: two paper gateways run against the built-in simulator
(in-process), the supervisor watches them exactly as it would watch real ones, and a script
injects the faults users meet at 3 a.m. (a 2FA prompt approved after a few seconds, an IB link
loss, a stalled gateway). Alerts go to the console; the metrics and the API are served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import httpx
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway import addresses
from supervisor import simfleet
from supervisor.api_views import Action
from supervisor.settings import FleetSettings, load_text
from supervisor.wiring import (
    Running,
    StartupError,
    desired_specs,
    resolve_credentials,
    start_supervisor,
)

log = logging.getLogger("ibfleet.demo")

DEMO_USERS = {"demo-a": "demouser-a", "demo-b": "demouser-b"}
DEMO_ACCOUNT = "DU1000001"


def demo_fleet(
    *, workdir: Path, api_port: int, base_port: int, docker: bool = False, control_port: int = 8780
) -> tuple[FleetSettings, dict[str, str]]:
    """The demo's fleet file (two paper gateways on one account) and its secret environment."""
    environ = {"IBFLEET_API_TOKEN": secrets.token_urlsafe(24)}
    gateways = []
    for index, (name, user) in enumerate(DEMO_USERS.items()):
        var = name.upper().replace("-", "_")
        environ[f"{var}_USER"] = user
        environ[f"{var}_PASSWORD"] = secrets.token_urlsafe(12)
        gateways.append(
            {
                "name": name,
                "mode": "paper",
                "account": DEMO_ACCOUNT,
                "username": {"env": f"{var}_USER"},
                "password": {"env": f"{var}_PASSWORD"},
                "api_port": base_port + index,
                "client_ids": {"start": 1 + 50 * index, "end": 49 + 50 * index},
                "probes": [{"symbol": "AAPL", "expect": "realtime"}],
            }
        )
    fleet = {
        # A fleet name of its own, so the demo never touches another fleet's containers.
        "fleet": f"demo-{secrets.token_hex(3)}",
        "runtime": {
            "kind": "docker" if docker else "in-process",
            "network": f"ibfleet-demo-{secrets.token_hex(3)}",
        },
        "simulator": {
            "enabled": True,
            "control_port": control_port,
            "twofa_gateways": ["demo-a"],
        },
        "gateways": gateways,
        "alerts": {
            "routes": [{"urls": ["console://"], "min_severity": "info"}],
            "repeat_critical_every": "10m",
        },
        # Port 0 (any free port) is the demo's own option; the file needs a real one.
        "api": {"listen": f"127.0.0.1:{api_port or 8710}", "token": {"env": "IBFLEET_API_TOKEN"}},
        "storage": {"path": str(workdir / "journal.sqlite")},
        # A hosted strategy on demo-b that fails over to demo-a when demo-b is lost.
        "strategies": [
            {
                "name": "pinger",
                "plugin": "pinger",
                "gateways": ["demo-b", "demo-a"],
                "client_id": 60,
                "safe_state": {"on_disconnect": "cancel", "grace": "3s"},
                "params": {"symbol": "AAPL", "interval_seconds": 2, "offset": 0.02},
            }
        ],
    }
    loaded = load_text(yaml.safe_dump(fleet, sort_keys=False), source="demo", environ={})
    return loaded.settings, environ


@dataclass
class Step:
    at: float  # seconds after the start
    says: str
    act: Callable[[], Awaitable[None] | None]
    #: The gateway this step breaks (a fault whose detection the summary times), if any.
    breaks: str | None = None
    #: The gateway this step mends (the summary times its return to API_READY), if any.
    mends: str | None = None


@dataclass
class Played:
    """A step as it happened: when (UTC) and how long after the start."""

    step: Step
    at: dt.datetime
    elapsed: float


def _after(
    states: list[tuple[dt.datetime, str, str]], gateway: str, since: dt.datetime, *, ready: bool
) -> tuple[float, str] | None:
    """Seconds from ``since`` to ``gateway``'s first state change leaving (or reaching)
    API_READY, and the change, from the journal's state events."""
    for at, name, change in states:
        if name != gateway or at < since:
            continue
        if change.split(":")[0].endswith("-> API_READY") is ready:
            return (at - since).total_seconds(), change.split(":")[0]
    return None


def summary_lines(
    played: list[Played],
    states: list[tuple[dt.datetime, str, str]],
    *,
    pages: int,
    orders: dict[str, int],
    failovers: int,
    elapsed: float,
    next_step: Step | None,
) -> list[str]:
    """The closing summary: faults injected, detected in how long, pages, orders, failovers."""
    faults = [p for p in played if p.step.breaks is not None]
    out = [f"What happened in {elapsed:.0f} s:"]
    out.append(f"  faults injected: {len(faults)}")
    for p in played:
        line = f"  t+{p.elapsed:.0f}s {p.step.says}"
        if p.step.breaks is not None:
            seen = _after(states, p.step.breaks, p.at, ready=False)
            line += f": detected in {seen[0]:.1f} s ({seen[1]})" if seen else ": not detected yet"
        elif p.step.mends is not None:
            back = _after(states, p.step.mends, p.at, ready=True)
            line += f": back in {back[0]:.1f} s ({back[1]})" if back else ": not back yet"
        out.append(line)
    if next_step is not None:
        out.append(f"  (stopped before t+{next_step.at:.0f}s: {next_step.says})")
    out.append(f"  pages sent: {pages} (console route, resolved notices included)")
    sent = ", ".join(f"{name} {n}" for name, n in sorted(orders.items())) or "none"
    out.append(f"  orders sent: {sent}; failovers: {failovers}")
    return out


def _counter_total(registry: Any, name: str) -> int:
    """The sum of a Prometheus counter's series (``name`` without ``_total``)."""
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == f"{name}_total":
                total += sample.value
    return int(total)


def status_table(running: Running, title: str) -> Table | Group:
    table = Table(title=title, expand=False)
    for column in ("gateway", "state", "ready", "heartbeat", "reason", "alerts"):
        table.add_column(column)
    for view in running.supervisor.gateways():
        rtt = view.heartbeat_rtt_seconds
        table.add_row(
            view.name,
            view.state,
            "yes" if view.ready else "no",
            f"{rtt * 1000:.1f} ms" if rtt is not None else "-",
            view.reason[:48],
            ", ".join(a.split(":")[-1] for a in view.open_alerts) or "-",
        )
    if running.host is None:
        return table
    strategies = Table(expand=False)
    for column in ("strategy", "state", "gateway", "open orders", "sent", "safe-state runs"):
        strategies.add_column(column)
    for s in running.host.strategies():
        strategies.add_row(
            s.name,
            s.state.name,
            s.gateway or "-",
            str(s.open_orders),
            str(s.orders_sent),
            str(s.safe_state_runs),
        )
    return Group(table, strategies)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker_client() -> Any | None:
    """A Docker client when an engine answers, else None (the demo then runs in-process)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return None
    return client


async def run_demo(
    *,
    duration: float | None,
    api_port: int = 8710,
    base_port: int = 4601,
    out: TextIO | None = None,
    live: bool = True,
    runtime_kind: str = "auto",
    log_file: Path | None = None,
) -> None:
    """Run the demo until ``duration`` seconds pass (None: until Ctrl-C).

    ``runtime_kind``: ``docker`` (simulator containers), ``in-process``, or ``auto`` (Docker
    when an engine answers, in-process otherwise).
    """
    console = Console(file=out, highlight=False)
    client = None if runtime_kind == "in-process" else _docker_client()
    if runtime_kind == "docker" and client is None:
        raise StartupError("no Docker engine answers (try --runtime in-process)")
    with tempfile.TemporaryDirectory(prefix="ibfleet-demo-") as tmp:
        settings, environ = demo_fleet(
            workdir=Path(tmp),
            api_port=api_port,
            base_port=base_port,
            docker=client is not None,
            control_port=_free_port(),
        )
        where = "Docker containers" if client is not None else "in-process"
        # The banner comes first: alerts of the starting fleet (demo-a's 2FA) follow it.
        console.print(
            f"[bold]ibfleet demo[/bold]: fleet {settings.fleet!r}, 2 simulated paper gateways "
            f"on one account ({where}) and the example strategy 'pinger'"
            + (f"\n  logs      {log_file}" if log_file is not None else "")
        )
        if client is not None:
            await _demo_on_docker(client, settings, environ, console, duration, live, api_port)
        else:
            await _demo_in_process(settings, environ, console, duration, live, api_port)


async def _demo_in_process(
    settings: FleetSettings,
    environ: dict[str, str],
    console: Console,
    duration: float | None,
    live: bool,
    api_port: int,
) -> None:
    from ibsim.runtime import InProcessRuntime

    runtime = InProcessRuntime(twofa_users={DEMO_USERS["demo-a"]})
    async with runtime:
        control_url = await runtime.start_control(settings.simulator.control_port)
        credentials = resolve_credentials(settings, environ)
        specs = desired_specs(settings, credentials, fingerprint_key=secrets.token_bytes(32))
        running = await start_supervisor(
            settings,
            environ=environ,
            runtime=runtime,
            specs=specs,
            console=cast(TextIO, console.file),
            api_port=api_port,
            supervisor_options={"reconcile_interval": 5.0},
        )
        await _play(running, control_url, console, duration, live)


async def _demo_on_docker(
    client: Any,
    settings: FleetSettings,
    environ: dict[str, str],
    console: Console,
    duration: float | None,
    live: bool,
    api_port: int,
) -> None:
    from gateway.docker_runtime import DockerRuntime
    from ibsim.image import ImageBuildError, build_sim_image

    try:
        client.images.get(settings.simulator.image)
    except Exception:
        console.print(f"building the simulator image {settings.simulator.image} (once)...")
        try:
            await asyncio.to_thread(
                build_sim_image, docker_client=client, tag=settings.simulator.image
            )
        except ImageBuildError as exc:
            raise StartupError(f"cannot build the simulator image: {exc}") from None
    runtime = DockerRuntime(client)
    credentials = resolve_credentials(settings, environ)
    specs = desired_specs(settings, credentials, fingerprint_key=secrets.token_bytes(32))
    try:
        running = await start_supervisor(
            settings,
            environ=environ,
            runtime=runtime,
            specs=specs,
            console=cast(TextIO, console.file),
            api_port=api_port,
            supervisor_options={"reconcile_interval": 5.0},
        )
        control_url = addresses.local_url(simfleet.CONTROL_HOST, settings.simulator.control_port)
        await _play(running, control_url, console, duration, live)
    finally:
        # The demo's containers and network are its own: leave nothing behind.
        await asyncio.to_thread(_remove_fleet, client, settings)
        runtime.close()


def _remove_fleet(client: Any, settings: FleetSettings) -> None:
    from gateway.spec import LABEL_FLEET

    for item in client.api.containers(
        all=True, filters={"label": f"{LABEL_FLEET}={settings.fleet}"}
    ):
        with contextlib.suppress(Exception):
            client.api.remove_container(item["Id"], force=True)
    for net in client.api.networks(names=[settings.runtime.network]):
        with contextlib.suppress(Exception):
            client.api.remove_network(net["Id"])


async def _play(
    running: Running,
    control_url: str,
    console: Console,
    duration: float | None,
    live: bool,
) -> None:
    """Show the fleet live and play the fault script through the simulator's control API."""

    async def control(path: str, body: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=control_url, timeout=10) as client:
            response = await client.post(path, json=body)
        if response.status_code >= 400:
            console.print(f"[red]simulator refused {path}: {response.text}[/red]")

    async def command(gateway: str, action: Action) -> None:
        await running.supervisor.command(gateway, action)

    user_a = DEMO_USERS["demo-a"]
    script = [
        Step(
            8,
            "approving demo-a's IB Key prompt (as if on the phone)",
            lambda: control(f"/2fa/{user_a}/approve", {}),
        ),
        Step(
            20,
            "IB link lost on demo-b (error 1100)",
            lambda: control("/gateways/demo-b/link", {"up": False}),
            breaks="demo-b",
        ),
        Step(
            30,
            "IB link restored on demo-b (1102)",
            lambda: control("/gateways/demo-b/link", {"up": True}),
            mends="demo-b",
        ),
        Step(
            40,
            "demo-b stalls: socket open, no answers",
            lambda: control("/gateways/demo-b/faults/stall", {"active": True}),
            breaks="demo-b",
        ),
        Step(
            55,
            "demo-b answers again",
            lambda: control("/gateways/demo-b/faults/stall", {"active": False}),
            mends="demo-b",
        ),
        Step(
            70,
            "demo-b is stopped for good: the pinger's order is cancelled, it fails over to demo-a",
            lambda: command("demo-b", Action.STOP),
        ),
        Step(
            95,
            "demo-b starts again (the pinger stays on demo-a: no flapping)",
            lambda: command("demo-b", Action.START),
            mends="demo-b",
        ),
    ]
    console.print(
        f"  page      {running.api_url}/   (the status page: open it in a browser)\n"
        f"  metrics   {running.api_url}/metrics\n"
        f"  status    {running.api_url}/api/v1/gateways   (or: ibfleet status --url "
        f"{running.api_url})\n"
        f"  simulator {control_url}   (the broker's control API)\n"
        + "  Ctrl-C to stop; ibfleet status --watch --url ... shows the same table."
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = loop.time()
    pending = list(script)
    played: list[Played] = []
    title = "ibfleet demo (live)"
    context = (
        Live(status_table(running, title), console=console, refresh_per_second=2)
        if live
        else contextlib.nullcontext()
    )
    try:
        with context as view:
            while not stop.is_set():
                elapsed = loop.time() - started
                while pending and pending[0].at <= elapsed:
                    step = pending.pop(0)
                    played.append(Played(step, dt.datetime.now(dt.UTC), elapsed))
                    console.print(f"[cyan]t+{step.at:.0f}s[/cyan] {step.says}")
                    result = step.act()
                    if result is not None:
                        await result
                if view is not None:
                    view.update(status_table(running, title))
                if duration is not None and elapsed >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await stop.wait()
        console.print(status_table(running, "ibfleet demo (final)"))
        await _summarise(running, console, played, loop.time() - started, pending)
    finally:
        await running.close()


async def _summarise(
    running: Running, console: Console, played: list[Played], elapsed: float, pending: list[Step]
) -> None:
    events = await running.journal.events(limit=1000)
    states = [(e.at, e.gateway or "", e.message) for e in events if e.kind == "state"]
    registry = running.supervisor.deps.metrics.registry
    orders = {s.name: s.orders_sent for s in running.host.strategies()} if running.host else {}
    lines = summary_lines(
        played,
        states,
        pages=_counter_total(registry, "ibfleet_alerts_sent"),
        orders=orders,
        failovers=_counter_total(registry, "ibfleet_failovers"),
        elapsed=elapsed,
        next_step=pending[0] if pending else None,
    )
    for line in lines:
        console.print(Text(line))


def main(
    *,
    duration: float | None,
    api_port: int,
    live: bool,
    runtime: str = "auto",
    log_file: Path | None = None,
) -> None:
    asyncio.run(
        run_demo(
            duration=duration,
            api_port=api_port,
            live=live,
            runtime_kind=runtime,
            log_file=log_file,
        )
    )
