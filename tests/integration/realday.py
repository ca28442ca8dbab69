"""The harness for a gateway's real day: a simulator fleet on the real Docker engine, the
supervisor (in this process, or as the ``ibfleet run`` process a user runs), a strategy resting
one GTC order, and the four records every day-in-the-life test asserts:

- the broker's order record (the control API's ``/orders``: every order ever received);
- the pages sent (a json:// webhook receiver behind apprise);
- the logins counted: by IBC in the gateway container (``Login attempt: N``, one per login with
  the password) and by the supervisor (the login ledger in its journal, ``ibfleet_logins_total``);
- where the strategy trades (``GET /api/v1/strategies``).

Gateways' clocks move through the simulator's control API, so IBC's daily auto-restart or
Sunday's cold restart comes to now; the supervisor's clock is a :class:`MovableClock` the test
owns, so a deadline of minutes (a stall, a 2FA window) passes in a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import yaml
from pydantic import SecretStr

from gateway.docker_runtime import DockerRuntime
from gateway.secret_files import load_or_create_fingerprint_key
from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, ContainerSpec
from supervisor import simfleet
from supervisor.settings import FleetSettings, load_text
from supervisor.wiring import (
    Running,
    desired_specs,
    fingerprint_key_path,
    resolve_credentials,
    start_supervisor,
)
from tests.integration.smtp import WebhookSink
from tests.net import free_port
from tests.waiting import until

_REPO = str(Path(__file__).resolve().parents[2])

EXE = str(Path(sys.executable).with_name("ibfleet"))
ACCOUNT = "DU7100001"
STRATEGY = "resting"
#: Order statuses after which IB never acts on an order again.
DONE = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
#: A Wednesday at noon in New York: outside every region's reset window, so outages page.
MIDDAY = dt.datetime(2026, 11, 18, 17, 0, tzinfo=dt.UTC)


class MovableClock:
    """Real time plus an offset the test can move forward (the supervisor's injected clock)."""

    def __init__(self, start: dt.datetime) -> None:
        self._offset = start - dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset

    def advance(self, delta: dt.timedelta) -> None:
        self._offset += delta


@dataclass(frozen=True)
class GatewayPlan:
    """One gateway of the test fleet, as the fleet file will say it."""

    name: str
    daily: str | None = None  # restart.daily, "HH:MM" in the fleet's time zone
    weekly_cold: str | None = None  # restart.weekly_cold, "Sun HH:MM"
    twofa: bool = False  # its username needs a 2FA approval at the broker
    wrong_password: bool = False  # the gateway is given a password the broker does not know
    logins_per_hour: int = 4
    twofa_timeout_action: str | None = None  # two_factor.timeout_action
    twofa_exit_interval: str | None = None  # two_factor.exit_interval, e.g. "10s"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def var(self) -> str:
        return self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class StrategyPlan:
    """The strategy: one resting GTC order on its first gateway, the others its failovers."""

    gateways: tuple[str, ...] = ("gw-a", "gw-b")
    on_disconnect: str = "cancel"
    grace: str = "3s"
    on_shutdown: str | None = None  # safe_state.on_shutdown; None leaves the default


def _order_done(order: dict[str, Any]) -> bool:
    return order["status"] in DONE


@dataclass
class Broker:
    """The simulated IB servers, through their control API and their container's log."""

    url: str
    fleet: DayFleet

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.post(path, json=body or {})
        assert response.status_code == 200, f"POST {path}: {response.status_code} {response.text}"
        return response.json()

    async def orders(self) -> list[dict[str, Any]]:
        """Every order the broker ever received, with its status history."""
        found: list[dict[str, Any]] = await self.get("/orders")
        return found

    async def working(self, gateway: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for o in await self.orders()
            if not _order_done(o) and (gateway is None or o["gateway"] == gateway)
        ]

    async def pending_2fa(self, username: str) -> bool:
        return any(p["username"] == username for p in await self.get("/2fa"))

    async def approve(self, username: str) -> None:
        await self.post(f"/2fa/{username}/approve")

    async def fault(self, gateway: str, fault: str, *, active: bool, value: float = 0.0) -> None:
        await self.post(f"/gateways/{gateway}/faults/{fault}", {"active": active, "value": value})

    async def move_clock(self, gateway: str, to: dt.datetime) -> None:
        """Set the gateway's wall clock to ``to`` (it keeps running from there, across IBC's
        relaunches): the simulator's ``clock`` fault, an offset in seconds."""
        offset = (to - dt.datetime.now(dt.UTC)).total_seconds()
        await self.fault(gateway, "clock", active=True, value=offset)


class Pages:
    """What reached the webhook: every alert raised and every resolution, in order."""

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink

    def mark(self) -> int:
        return len(self.sink.bodies)

    def since(self, mark: int = 0) -> list[str]:
        return [str(b.get("title", "")) for b in self.sink.bodies[mark:]]

    def raised(self, mark: int = 0) -> list[str]:
        return [t for t in self.since(mark) if not t.startswith("Resolved")]

    def resolved(self, mark: int = 0) -> list[str]:
        return [t for t in self.since(mark) if t.startswith("Resolved")]

    async def wait(self, text: str, *, mark: int = 0, timeout: float = 60.0) -> str:
        found: str = await until(
            lambda: next((t for t in self.since(mark) if text in t), None),
            timeout,
            what=f"a page with {text!r} (got {self.since(mark)})",
            step=0.1,
        )
        return found


class DayFleet:
    """A simulator fleet, its supervisor, and the records the tests read."""

    def __init__(
        self,
        *,
        docker_client: docker.DockerClient,
        image: str,
        workdir: Path,
        hook: WebhookSink,
        gateways: Sequence[GatewayPlan],
        strategy: StrategyPlan | None = StrategyPlan(),
        broker_twofa_timeout: float | None = None,
    ) -> None:
        self.docker = docker_client
        self.image = image
        self.workdir = workdir
        self.plans = {g.name: g for g in gateways}
        self.strategy = strategy
        self.broker_twofa_timeout = broker_twofa_timeout
        self.fleet = f"d{uuid.uuid4().hex[:10]}"
        self.network = f"ibfleet-{self.fleet}"
        self.pages = Pages(hook)
        self.environ = {"IBFLEET_API_TOKEN": uuid.uuid4().hex}
        for plan in gateways:
            self.environ[f"{plan.var}_USER"] = f"{plan.name}-{uuid.uuid4().hex[:6]}"
            self.environ[f"{plan.var}_PASSWORD"] = uuid.uuid4().hex
        # The broker knows another password for these users (stable, so a restarted supervisor
        # renders the same broker container and does not recreate it).
        self._wrong = {
            self.environ[f"{p.var}_USER"]: SecretStr(f"broker-{uuid.uuid4().hex}")
            for p in gateways
            if p.wrong_password
        }
        self.api_port = free_port()
        self.control_port = free_port()
        self.text = self._fleet_text(hook)
        self.path = workdir / "fleet.yaml"
        self.path.write_text(self.text)
        self.settings: FleetSettings = load_text(self.text, environ={}).settings
        self.broker = Broker(f"http://127.0.0.1:{self.control_port}", self)
        self.runtime = DockerRuntime(docker_client, call_timeout=60.0)
        self.running: Running | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._process_logs: list[Path] = []

    # -- the fleet file ------------------------------------------------------------------

    def user(self, gateway: str) -> str:
        return self.environ[f"{self.plans[gateway].var}_USER"]

    def _fleet_text(self, hook: WebhookSink) -> str:
        gateways = []
        for index, plan in enumerate(self.plans.values()):
            gw: dict[str, Any] = {
                "name": plan.name,
                "mode": "paper",
                "account": ACCOUNT,
                "username": {"env": f"{plan.var}_USER"},
                "password": {"env": f"{plan.var}_PASSWORD"},
                "api_port": free_port(),
                "memory_limit": "256m",
                "client_ids": {"start": 1 + 50 * index, "end": 49 + 50 * index},
                "logins_per_hour": plan.logins_per_hour,
            }
            restart = {
                k: v for k, v in (("daily", plan.daily), ("weekly_cold", plan.weekly_cold)) if v
            }
            if restart:
                gw["restart"] = restart
            two = {
                k: v
                for k, v in (
                    ("timeout_action", plan.twofa_timeout_action),
                    ("exit_interval", plan.twofa_exit_interval),
                )
                if v
            }
            if two:
                gw["two_factor"] = two
            if plan.env:
                gw["env"] = dict(plan.env)
            gateways.append(gw)
        data: dict[str, Any] = {
            "fleet": self.fleet,
            "timezone": "UTC",
            "runtime": {"network": self.network},
            "simulator": {
                "enabled": True,
                "image": self.image,
                "control_port": self.control_port,
                "twofa_gateways": [p.name for p in self.plans.values() if p.twofa],
            },
            "gateways": gateways,
            "alerts": {"routes": [{"urls": [hook.url], "min_severity": "warning"}]},
            "api": {
                "listen": f"127.0.0.1:{self.api_port}",
                "token": {"env": "IBFLEET_API_TOKEN"},
            },
            "storage": {"path": str(self.workdir / "journal.sqlite")},
            "health": {"heartbeat_every": "500ms", "heartbeat_deadline": "1s"},
        }
        if self.strategy is not None:
            safe: dict[str, Any] = {
                "on_disconnect": self.strategy.on_disconnect,
                "grace": self.strategy.grace,
            }
            if self.strategy.on_shutdown is not None:
                safe["on_shutdown"] = self.strategy.on_shutdown
            data["strategies"] = [
                {
                    "name": STRATEGY,
                    "plugin": "tests.integration.plugins.strategies:RestingGtc",
                    "gateways": list(self.strategy.gateways),
                    "client_id": 10,
                    "safe_state": safe,
                    # It rests at half the market on purpose: no price collar.
                    "limits": {"price_collar_pct": None},
                }
            ]
        return yaml.safe_dump(data, sort_keys=False)

    def reconfigure(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Edit the fleet file (as an operator does) and what the next supervisor start reads."""
        data = yaml.safe_load(self.text)
        edit(data)
        self.text = yaml.safe_dump(data, sort_keys=False)
        self.path.write_text(self.text)
        self.settings = load_text(self.text, environ={}).settings

    def specs(self) -> list[ContainerSpec]:
        """The desired containers; the broker's users changed where a plan asks for it."""
        credentials = resolve_credentials(self.settings, self.environ)
        key = load_or_create_fingerprint_key(fingerprint_key_path(self.settings))
        specs = desired_specs(self.settings, credentials, fingerprint_key=key)
        if self.broker_twofa_timeout is None and not self._wrong:
            return specs
        users = [
            dataclasses.replace(u, password=self._wrong[u.username.get_secret_value()])
            if u.username.get_secret_value() in self._wrong
            else u
            for u in simfleet.sim_users(
                self.settings.gateways,
                credentials,
                twofa_users=[self.user(p.name) for p in self.plans.values() if p.twofa],
            )
        ]
        broker = simfleet.render_broker_spec(
            fleet=self.fleet,
            network=self.network,
            image=self.image,
            users=users,
            fingerprint_key=key,
            control_port=self.control_port,
            twofa_timeout=self.broker_twofa_timeout,
        )
        return [broker if s.gateway == simfleet.BROKER_GATEWAY else s for s in specs]

    # -- the supervisor, in this process -------------------------------------------------

    async def start(self, clock: Callable[[], dt.datetime]) -> Running:
        self.running = await start_supervisor(
            self.settings,
            environ=self.environ,
            runtime=self.runtime,
            specs=self.specs(),
            clock=clock,
            api_port=self.api_port,
            supervisor_options={"reconcile_interval": 2.0, "tick_every": 0.2},
        )
        return self.running

    async def stop(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            await running.dispatcher.wait_idle(30)
            await running.close()

    # -- the supervisor as a process -----------------------------------------------------

    def start_process(self) -> subprocess.Popen[bytes]:
        """``ibfleet run -c fleet.yaml`` as a user runs it (stderr to a file per run)."""
        assert not self._wrong, "in-process only"
        assert self.broker_twofa_timeout is None, "in-process only"
        log_path = self.workdir / f"supervisor-{len(self._process_logs)}.log"
        self._process_logs.append(log_path)
        with log_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [EXE, "run", "-c", str(self.path)],
                # The test strategy lives in this repository's tests package, as a user's
                # own plugin module would live on their PYTHONPATH.
                env={**os.environ, **self.environ, "PYTHONPATH": _REPO},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return self.process

    def exited(self) -> str:
        """Whether the supervisor process ended, and its log's tail."""
        code = self.process.poll() if self.process is not None else None
        return f"supervisor process exit code: {code}\n{self.process_log()[-4000:]}"

    def process_log(self) -> str:
        return self._process_logs[-1].read_text(errors="replace") if self._process_logs else ""

    async def end_process(self, sig: signal.Signals, *, timeout: float = 30.0) -> int:
        proc, self.process = self.process, None
        assert proc is not None
        proc.send_signal(sig)
        try:
            return await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(
                f"the supervisor ignored {sig.name}:\n{self.process_log()[-3000:]}"
            ) from None

    # -- the supervisor's API ------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def api(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=10) as client:
            response = await client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    async def command(self, gateway: str, action: str) -> None:
        headers = {"Authorization": f"Bearer {self.environ['IBFLEET_API_TOKEN']}"}
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as client:
            response = await client.post(f"/api/v1/gateways/{gateway}/{action}", headers=headers)
        assert response.status_code == 200, response.text

    async def state(self, gateway: str) -> str:
        view = await self.api(f"/api/v1/gateways/{gateway}")
        return str(view["state"])

    async def until_state(self, gateway: str, *states: str, timeout: float = 90.0) -> str:
        async def reached() -> str | None:
            try:
                state = await self.state(gateway)
            except httpx.HTTPError:
                return None
            return state if state in states else None

        found: str = await until(reached, timeout, what=f"{gateway} in {states}", step=0.2)
        return found

    async def until_ready(self, timeout: float = 120.0) -> None:
        async def ready() -> bool:
            try:
                views = await self.api("/api/v1/gateways")
            except (httpx.HTTPError, AssertionError):
                return False
            return bool(views) and all(v["state"] == "API_READY" and v["ready"] for v in views)

        try:
            await until(ready, timeout, what="every gateway ready", step=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await self.diagnosis()}") from None

    async def diagnosis(self) -> str:
        """What a failing wait reports: gateway states and the supervisor process's log tail."""
        try:
            views = await self.api("/api/v1/gateways")
            states = ", ".join(f"{v['name']}={v['state']} ({v['reason']})" for v in views)
            troubled = [v["name"] for v in views if v["state"] != "API_READY"]
        except (httpx.HTTPError, AssertionError) as exc:
            states = f"the supervisor's API does not answer: {exc!r}"
            troubled = []
        text = f"gateways: {states}"
        for name in troubled:
            text += "\n" + await self.story(name)
        if self._process_logs:
            text += f"\n--- supervisor log tail ---\n{self.process_log()[-4000:]}"
        return text

    async def states_seen(self, gateway: str, *, since_id: int = 0) -> list[str]:
        """The lifecycle's transitions from the journal, ``FROM -> TO: reason`` each."""
        events = await self.api(f"/api/v1/events?gateway={gateway}&limit=1000&since_id={since_id}")
        return [e["message"] for e in events if e["kind"] == "state"]

    async def story(self, gateway: str) -> str:
        """For an assertion's message: the gateway's transitions and its log's tail."""
        try:
            seen = "\n".join(await self.states_seen(gateway))
        except (httpx.HTTPError, AssertionError) as exc:
            seen = f"(no supervisor API: {exc!r})"
        return (
            f"--- {gateway} transitions ---\n{seen}\n--- {gateway} log tail ---\n"
            + (await self.logs(gateway))[-3000:]
        )

    async def last_event_id(self) -> int:
        events = await self.api("/api/v1/events?limit=1000")
        return max((int(e["id"]) for e in events), default=0)

    async def strategy_status(self) -> dict[str, Any]:
        rows = await self.api("/api/v1/strategies")
        found: dict[str, Any] = next(r for r in rows if r["name"] == STRATEGY)
        return found

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of the supervisor's Prometheus metrics (0 when absent)."""
        try:
            async with httpx.AsyncClient(base_url=self.api_url, timeout=10) as client:
                text = (await client.get("/metrics")).text
        except httpx.ConnectError:
            raise AssertionError(f"the supervisor does not answer\n{self.exited()}") from None
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def ledger(self, gateway: str) -> int:
        """Login attempts the supervisor's journal holds against ``gateway``'s username."""
        path = self.settings.storage.path
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT value FROM state WHERE name = 'login_ledger'").fetchall()
        if not rows:
            return 0
        record: dict[str, list[str]] = json.loads(rows[0][0])
        return len(record.get(self.user(gateway), []))

    # -- the containers ------------------------------------------------------------------

    def _find(self, gateway: str) -> dict[str, Any] | None:
        found = self.docker.api.containers(
            all=True,
            filters={"label": [f"{LABEL_FLEET}={self.fleet}", f"{LABEL_GATEWAY}={gateway}"]},
        )
        return found[0] if found else None

    async def inspect(self, gateway: str) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            row = self._find(gateway)
            assert row is not None, f"no container for {gateway}"
            info: dict[str, Any] = self.docker.api.inspect_container(row["Id"])
            return info

        return await asyncio.to_thread(get)

    async def identity(self, gateway: str) -> tuple[str, str]:
        """The container's id and StartedAt: both stay put through any IBC relaunch."""
        info = await self.inspect(gateway)
        return str(info["Id"]), str(info["State"]["StartedAt"])

    async def running_state(self, gateway: str) -> str:
        info = await self.inspect(gateway)
        return str(info["State"]["Status"])

    async def logs(self, gateway: str) -> str:
        def get() -> str:
            row = self._find(gateway)
            if row is None:
                return ""
            raw: bytes = self.docker.api.logs(row["Id"], stdout=True, stderr=True)
            return raw.decode("utf-8", errors="replace")

        return await asyncio.to_thread(get)

    async def password_logins(self, gateway: str) -> int:
        """Logins with the password IBC made in this container (``Login attempt: N``): what IB
        counts against the account. A token relaunch prints ``Re-starting session`` instead."""
        return (await self.logs(gateway)).count("Login attempt: ")

    async def relaunches(self, gateway: str) -> int:
        """JVM exits IBC's start script saw in this container (each relaunches or ends it)."""
        return (await self.logs(gateway)).count("IBC returned exit status")

    async def log_mark(self, gateway: str) -> int:
        return len(await self.logs(gateway))

    async def logs_since(self, gateway: str, mark: int) -> str:
        return (await self.logs(gateway))[mark:]

    async def until_log(
        self, gateway: str, text: str, *, mark: int = 0, timeout: float = 90.0
    ) -> str:
        async def found() -> str | None:
            tail = await self.logs_since(gateway, mark)
            return tail if text in tail else None

        try:
            tail: str = await until(found, timeout, what=f"{text!r} in {gateway}'s log", step=0.2)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- {gateway} log since the mark ---\n"
                f"{(await self.logs_since(gateway, mark))[-3000:]}"
            ) from None
        return tail

    async def starts(self, gateway: str, *, since: dt.datetime) -> int:
        """Container starts of ``gateway`` the engine reported since ``since`` (whichever
        container: a recreated one counts too)."""

        def count() -> int:
            events = self.docker.api.events(
                since=since,
                # The engine takes whole seconds: a second more, so nothing just now is missed.
                until=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
                filters={
                    "type": "container",
                    "event": "start",
                    "label": [f"{LABEL_FLEET}={self.fleet}", f"{LABEL_GATEWAY}={gateway}"],
                },
                decode=True,
            )
            return sum(1 for _ in events)

        return await asyncio.to_thread(count)

    async def kill(self, gateway: str) -> None:
        info = await self.inspect(gateway)
        await asyncio.to_thread(self.docker.api.kill, info["Id"])

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        for item in self.docker.api.containers(
            all=True, filters={"label": f"{LABEL_FLEET}={self.fleet}"}
        ):
            with contextlib.suppress(docker.errors.NotFound):
                self.docker.api.remove_container(item["Id"], force=True, v=True)
        for net in self.docker.api.networks(names=[self.network]):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.docker.api.remove_network(net["Id"])
        self.runtime.close()

    # -- composite waits -----------------------------------------------------------------

    async def resting_order(self, gateway: str, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until the strategy's one order works at the broker on ``gateway``."""

        async def one() -> dict[str, Any] | None:
            working = await self.broker.working(gateway)
            return working[0] if working else None

        try:
            order: dict[str, Any] = await until(
                one, timeout, what=f"the strategy's resting order on {gateway}", step=0.2
            )
        except AssertionError as exc:
            try:
                strategy: Any = await self.strategy_status()
            except (httpx.HTTPError, AssertionError, StopIteration) as why:
                strategy = repr(why)
            raise AssertionError(
                f"{exc}\nstrategy: {strategy}\nbroker orders: {await self.broker.orders()}\n"
                f"{await self.diagnosis()}"
            ) from None
        return order


@contextlib.contextmanager
def image_tag(client: docker.DockerClient, base: str, tag: str, *, broken: bool) -> Iterator[str]:
    """``base`` under another tag; ``broken``: built from it with an entrypoint that exits."""
    repo = base.rpartition(":")[0]
    name = f"{repo}:{tag}"
    if broken:
        dockerfile = f'FROM {base}\nENTRYPOINT ["/bin/sh", "-c", "exit 3"]\n'
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True)
    else:
        client.images.get(base).tag(repo, tag)
    try:
        yield name
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(name, force=True)


def set_image(image: str, *gateways: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for gw in data["gateways"]:
            if gw["name"] in gateways:
                gw["image"] = image

    return edit


def only(items: Iterable[Any], what: str) -> Any:
    listed = list(items)
    assert len(listed) == 1, f"expected exactly one {what}, got {listed}"
    return listed[0]


def next_weekday(now: dt.datetime, weekday: int, at: dt.time) -> dt.datetime:
    """The next ``weekday`` (Monday 0) at ``at`` strictly after ``now``, in ``now``'s zone."""
    day = now.date() + dt.timedelta(days=(weekday - now.weekday()) % 7)
    candidate = dt.datetime.combine(day, at, tzinfo=now.tzinfo)
    if candidate <= now:
        candidate += dt.timedelta(days=7)
    return candidate


def next_daily(now: dt.datetime, at: dt.time) -> dt.datetime:
    candidate = dt.datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    return candidate if candidate > now else candidate + dt.timedelta(days=1)


SIGTERM = signal.SIGTERM
SIGKILL = signal.SIGKILL
