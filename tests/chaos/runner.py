"""Run a seeded chaos schedule against simulator containers on the real Docker engine.

The fleet: three simulated gateways, two on one paper account (``gw-a1``, ``gw-a2``) and one
on another (``gw-b``, whose logins need the phone), the broker container, and ``ibfleet run``
as the process a user runs (so it can be SIGKILLed and SIGTERMed). Three strategies trade:
``rest`` keeps two resting buys on account A (failing over between gw-a1 and gw-a2), ``brk``
is the shipped breakout trading brackets on account A the other way round, ``solo`` rests a
buy on gw-b alone. A "phone" approves every 2FA prompt unless a fault mutes it.

The schedule (:mod:`tests.chaos.schedule`) runs in real time, faults overlapping; when the
last has healed the runner waits for the fleet to come back, reads the final records and
hands the :class:`~tests.chaos.history.History` to :func:`tests.chaos.invariants.check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import yaml

from supervisor import schedules
from tests.chaos import invariants
from tests.chaos.history import Entry, Fault, History, Page
from tests.chaos.schedule import FaultKind, FleetShape, Step, counts, plan
from tests.integration.realday import DayFleet, GatewayPlan, StrategyPlan, next_daily
from tests.integration.smtp import WebhookSink
from tests.waiting import until

__all__ = ["ChaosFleet", "ChaosResult", "run_chaos"]

log = logging.getLogger("tests.chaos")

ACCOUNT_B = "DU7100002"
GATEWAYS = ("gw-a1", "gw-a2", "gw-b")
TWOFA = ("gw-b",)
#: Each gateway's IBC daily restart (UTC, the fleet's zone): the early-restart fault's target.
DAILY = {"gw-a1": dt.time(22, 0), "gw-a2": dt.time(22, 20), "gw-b": dt.time(22, 40)}
LOGINS_PER_HOUR = 12
#: Strategy -> (plugin, params, gateways, client id from its primary's range, on_disconnect).
STRATEGIES: dict[str, tuple[str, dict[str, Any], tuple[str, ...], int, str]] = {
    "rest": (
        "tests.integration.plugins.strategies:Resting",
        {"count": 2},
        ("gw-a1", "gw-a2"),
        10,
        "cancel",
    ),
    # Exits close enough that the schedule's market moves fill them, so brackets trade again.
    "brk": (
        "breakout",
        {"symbol": "AAPL", "window": 3, "quantity": 2, "target": 0.004, "risk": 0.004},
        ("gw-a2", "gw-a1"),
        60,
        "hold",
    ),
    "solo": (
        "tests.integration.plugins.strategies:Resting",
        {"count": 1},
        ("gw-b",),
        110,
        "cancel",
    ),
}


class ChaosFleet(DayFleet):
    """The real day's fleet with three gateways on two accounts and three strategies."""

    def __init__(self, **kw: Any) -> None:
        plans = [
            GatewayPlan(g, daily=DAILY[g].strftime("%H:%M"), twofa=g in TWOFA) for g in GATEWAYS
        ]
        super().__init__(gateways=plans, strategy=StrategyPlan(), **kw)

    def _fleet_text(self, hook: WebhookSink) -> str:
        data = yaml.safe_load(super()._fleet_text(hook))
        for gw in data["gateways"]:
            gw["logins_per_hour"] = LOGINS_PER_HOUR
            if gw["name"] == "gw-b":
                gw["account"] = ACCOUNT_B
        # Two shared cores and eight test runs: a heartbeat a second, two seconds to answer.
        data["health"] = {"heartbeat_every": "1s", "heartbeat_deadline": "2s"}
        data["strategies"] = [
            {
                "name": name,
                "plugin": plugin,
                "params": params,
                "gateways": list(gateways),
                "client_id": client_id,
                "safe_state": {"on_disconnect": on_disconnect, "grace": "3s"},
                # The resting buys sit far under the market on purpose.
                "limits": {"price_collar_pct": None},
            }
            for name, (plugin, params, gateways, client_id, on_disconnect) in STRATEGIES.items()
        ]
        return yaml.safe_dump(data, sort_keys=False)

    async def strategies(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.api("/api/v1/strategies")
        return rows


class Phone:
    """Approves every pending 2FA prompt, unless muted (a prompt left unanswered)."""

    def __init__(self, fleet: ChaosFleet) -> None:
        self.fleet = fleet
        self.muted = 0
        self.approved = 0

    async def run(self) -> None:
        while True:
            if not self.muted:
                with contextlib.suppress(httpx.HTTPError, AssertionError):
                    for prompt in await self.fleet.broker.get("/2fa"):
                        # A second's wait, as a person takes to pick up the phone.
                        await asyncio.sleep(1.0)
                        if self.muted:
                            break
                        await self.fleet.broker.approve(prompt["username"])
                        self.approved += 1
            await asyncio.sleep(0.5)


class PageClock:
    """Stamps each webhook body with the time it was first seen (polled every 50 ms)."""

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink
        self.pages: list[Page] = []

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(0.05)

    def poll(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for body in self.sink.bodies[len(self.pages) :]:
            self.pages.append(
                Page(
                    now,
                    str(body.get("title", "")),
                    str(body.get("type", "")),
                    str(body.get("message", "")),
                )
            )


@dataclass
class ChaosResult:
    """A run's history, its violations and its figures."""

    history: History
    violations: list[invariants.Violation]
    steps: list[Step]
    seconds: float
    errors: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        orders = self.history.broker_orders
        return {
            "seed": self.history.seed,
            "events": len(self.steps),
            "faults_by_kind": {k: n for k, n in counts(self.steps).items() if n},
            "violations": len(self.violations),
            "violations_by_invariant": _tally(v.invariant for v in self.violations),
            "orders_placed": len(orders),
            "orders_filled": sum(1 for o in orders if o["status"] == "Filled"),
            "executions": len(self.history.executions),
            "duplicates": sum(1 for v in self.violations if v.invariant == "duplicate-order-ref"),
            "pages": sum(1 for p in self.history.pages if not p.resolved),
            "resolved_notices": sum(1 for p in self.history.pages if p.resolved),
            "fault_errors": len(self.errors),
            "seconds": round(self.seconds, 1),
        }

    def text(self) -> str:
        head = json.dumps(self.figures(), indent=2)
        body = invariants.report(self.history, self.violations)
        return f"{head}\n{body}"


def _tally(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


class Runner:
    """Executes one schedule against a running :class:`ChaosFleet` and records what it did."""

    def __init__(self, fleet: ChaosFleet, phone: Phone) -> None:
        self.fleet = fleet
        self.phone = phone
        self.faults: list[Fault] = []
        self.entries: list[Entry] = []
        self.errors: list[str] = []
        self._supervisor = asyncio.Lock()

    def note(self, kind: str, gateway: str | None = None, detail: str = "") -> None:
        self.entries.append(Entry(dt.datetime.now(dt.UTC), "runner", kind, gateway, detail))

    async def run(self, steps: list[Step]) -> None:
        start = time.monotonic()
        tasks = []
        for step in steps:
            # The schedule's clock: each step starts at its time (later if the runner is behind).
            delay = start + step.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._step(step)))
        await asyncio.gather(*tasks)

    async def _step(self, step: Step) -> None:
        began = dt.datetime.now(dt.UTC)
        gateways = GATEWAYS if step.kind.fleet_wide else ((step.gateway,) if step.gateway else ())
        try:
            await self._do(step)
        except Exception as exc:  # a fault that could not be applied is recorded, not fatal
            self.errors.append(f"{step.describe()}: {type(exc).__name__}: {exc}")
            self.note("fault-error", step.gateway, f"{step.describe()}: {exc!r}"[:300])
        self.faults.append(
            Fault(
                index=step.index,
                kind=step.kind.value,
                start=began,
                end=dt.datetime.now(dt.UTC),
                gateways=tuple(gateways),
                planned=step.kind.planned,
                describe=step.describe(),
            )
        )

    async def _container(self, gateway: str) -> str:
        info = await self.fleet.inspect(gateway)
        return str(info["Id"])

    async def _do(self, step: Step) -> None:
        fleet, broker, gw = self.fleet, self.fleet.broker, step.gateway
        api = fleet.docker.api
        match step.kind:
            case FaultKind.MARKET:
                price = float((await broker.get("/prices"))["AAPL"])
                async with httpx.AsyncClient(base_url=broker.url, timeout=10) as client:
                    response = await client.put(
                        "/prices/AAPL", json={"price": round(price * (1 + step.value), 2)}
                    )
                response.raise_for_status()
            case FaultKind.KILL:
                assert gw is not None
                await asyncio.to_thread(api.kill, await self._container(gw))
            case FaultKind.PAUSE:
                assert gw is not None
                cid = await self._container(gw)
                await asyncio.to_thread(api.pause, cid)
                try:
                    await asyncio.sleep(step.duration)
                finally:
                    await asyncio.to_thread(api.unpause, cid)
            case FaultKind.PARTITION:
                assert gw is not None
                await self._partition(gw, step.duration)
            case FaultKind.LINK:
                assert gw is not None
                await broker.post(f"/gateways/{gw}/link", {"up": False})
                try:
                    await asyncio.sleep(step.duration)
                finally:
                    lost = step.variant == "data_lost"
                    await broker.post(f"/gateways/{gw}/link", {"up": True, "data_lost": lost})
            case FaultKind.FARM:
                assert gw is not None
                await broker.fault(gw, step.variant, active=True)
                try:
                    await asyncio.sleep(step.duration)
                finally:
                    await broker.fault(gw, step.variant, active=False)
            case FaultKind.TWOFA_UNANSWERED:
                assert gw is not None
                self.phone.muted += 1
                try:
                    await asyncio.to_thread(api.kill, await self._container(gw))
                    await asyncio.sleep(step.duration)
                finally:
                    self.phone.muted -= 1
            case FaultKind.LOGIN_REFUSED:
                assert gw is not None
                await broker.post("/logins/reject", {"active": True})
                try:
                    await asyncio.to_thread(api.kill, await self._container(gw))
                    await asyncio.sleep(step.duration)
                finally:
                    await broker.post("/logins/reject", {"active": False})
            case FaultKind.SUPERVISOR_SIGKILL | FaultKind.SUPERVISOR_SIGTERM:
                await self._stop_supervisor(step)
            case FaultKind.DAILY_RESTART:
                assert gw is not None
                await self._daily_restart(gw, step.duration)

    async def _partition(self, gateway: str, seconds: float) -> None:
        info = await self.fleet.inspect(gateway)
        cid = str(info["Id"])
        net = info["NetworkSettings"]["Networks"].get(self.fleet.network) or {}
        aliases = [a for a in (net.get("Aliases") or []) if a != cid[:12]]
        api = self.fleet.docker.api
        await asyncio.to_thread(api.disconnect_container_from_network, cid, self.fleet.network)
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(
                api.connect_container_to_network, cid, self.fleet.network, aliases=aliases
            )

    async def _stop_supervisor(self, step: Step) -> None:
        async with self._supervisor:
            fleet = self.fleet
            proc = fleet.process
            if proc is None or proc.poll() is not None:
                # It ended by itself: what it said last is the finding.
                tail = fleet.process_log()[-1500:].replace("\n", " | ")
                self.note(
                    "supervisor-not-running",
                    detail=f"{step.describe()}; {fleet.exited()[:40]} {tail}",
                )
            elif step.kind is FaultKind.SUPERVISOR_SIGKILL:
                fleet.process = None
                proc.kill()
                await asyncio.to_thread(proc.wait, 30)
            else:
                code = await fleet.end_process(signal.SIGTERM, timeout=60)
                self.note("supervisor-exited", detail=f"SIGTERM exit code {code}")
            await asyncio.sleep(step.duration)
            fleet.start_process()
            self.note("supervisor-started", detail=f"log {len(fleet._process_logs) - 1}")

    async def _daily_restart(self, gateway: str, bound: float) -> None:
        fleet = self.fleet
        mark = await fleet.log_mark(gateway)
        at = next_daily(dt.datetime.now(dt.UTC), DAILY[gateway]) - dt.timedelta(seconds=3)
        await fleet.broker.move_clock(gateway, at)
        try:
            await fleet.until_log(gateway, "Re-starting session", mark=mark, timeout=bound)
            await fleet.until_log(gateway, "IBC returned exit status", mark=mark, timeout=10)
        finally:
            # IBC's relaunched JVM keeps the clock; back to true time for the rest of the run.
            await fleet.broker.fault(gateway, "clock", active=False)

    async def heal(self) -> None:
        """Whatever a step left behind: the supervisor running, the phone answering."""
        if self.fleet.process is None or self.fleet.process.poll() is not None:
            self.note("supervisor-restarted-by-heal")
            self.fleet.start_process()
        self.phone.muted = 0
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            await self.fleet.broker.post("/logins/reject", {"active": False})


async def _healthy(fleet: ChaosFleet) -> bool:
    try:
        views = await fleet.api("/api/v1/gateways")
        rows = await fleet.strategies()
    except (httpx.HTTPError, AssertionError):
        return False
    if not views or not all(v["state"] == "API_READY" and v["ready"] for v in views):
        return False
    if any(v.get("open_alerts") for v in views):
        return False
    by_name = {r["name"]: r for r in rows}
    return all(
        name in by_name
        and by_name[name]["state"] == "RUNNING"
        and by_name[name]["gateway"] in spec[2]
        for name, spec in STRATEGIES.items()
    )


def _journal(path: Path) -> tuple[list[dict[str, Any]], list[Entry]]:
    """The journal's intents and events, read-only (the supervisor may still be writing)."""
    if not path.exists():
        return [], []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        intents = [
            {
                "key": r[0],
                "strategy": r[1],
                "gateway": r[2],
                "status": r[3],
                "filled": r[4],
                "perm_id": r[5],
                "created_at": r[6],
                "updated_at": r[7],
            }
            for r in db.execute(
                "SELECT intent_key, strategy, gateway, status, filled, perm_id, created_at,"
                " updated_at FROM order_intents ORDER BY created_at"
            )
        ]
        events = [
            Entry(_parse(r[0]), "journal", r[1], r[2], f"{r[3] or ''} {r[4]}".strip())
            for r in db.execute(
                "SELECT at, kind, gateway, strategy, message FROM events ORDER BY id"
            )
        ]
    return intents, events


def _parse(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _login_times(raw: bytes) -> list[dt.datetime]:
    """IBC's ``Login attempt`` lines in ``docker logs --timestamps`` output, as times."""
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if "Login attempt: " not in line:
            continue
        stamp = line.split(" ", 1)[0]
        # The engine writes nanoseconds; Python reads microseconds.
        head, _, frac = stamp.rstrip("Z").partition(".")
        out.append(_parse(f"{head}.{frac[:6] or '0'}+00:00"))
    return out


async def _records(fleet: ChaosFleet, history: History) -> None:
    """The final records: the broker's orders and executions, the journal, the logins."""
    history.broker_orders = await fleet.broker.orders()
    history.executions = await fleet.broker.get("/executions")
    intents, events = await asyncio.to_thread(_journal, fleet.settings.storage.path)
    history.intents = intents
    history.entries.extend(events)
    for order in history.broker_orders:
        for change in order["history"]:
            history.entries.append(
                Entry(
                    _parse(change["at"]),
                    "broker",
                    f"order {change['status']}",
                    order["gateway"],
                    f"{order['order_ref']} perm {order['perm_id']} {change['note']}".strip(),
                )
            )
    for gateway in GATEWAYS:
        row = fleet._find(gateway)
        raw: bytes = (
            await asyncio.to_thread(fleet.docker.api.logs, row["Id"], timestamps=True)
            if row
            else b""
        )
        history.logins = {**history.logins, fleet.user(gateway): _login_times(raw)}
        history.login_budget = {**history.login_budget, fleet.user(gateway): LOGINS_PER_HOUR}


async def run_chaos(
    *,
    seed: int,
    events: int,
    docker_client: docker.DockerClient,
    image: str,
    workdir: Path,
    mean_gap: float = 2.5,
    heal_timeout: float = 240.0,
    say: Callable[[str], None] = print,
    keep: Path | None = None,
) -> ChaosResult:
    """Start the fleet, run ``events`` steps of seed ``seed``, heal, read and judge the history."""
    say(f"chaos seed {seed} ({events} events; replay: IBFLEET_CHAOS_SEED={seed})")
    started = time.monotonic()
    shape = FleetShape(gateways=GATEWAYS, twofa=TWOFA)
    steps = plan(seed, events=events, shape=shape, mean_gap=mean_gap)
    with WebhookSink() as hook:
        fleet = ChaosFleet(docker_client=docker_client, image=image, workdir=workdir, hook=hook)
        phone, clock = Phone(fleet), PageClock(hook)
        helpers = [asyncio.create_task(phone.run()), asyncio.create_task(clock.run())]
        runner = Runner(fleet, phone)
        history = History(
            seed=seed, strategy_gateways={n: list(s[2]) for n, s in STRATEGIES.items()}
        )
        run_start = dt.datetime.now(dt.UTC)
        try:
            fleet.start_process()
            try:
                await until(lambda: _healthy(fleet), 240, what="the chaos fleet ready", step=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{await fleet.diagnosis()}") from None
            runner.note("fleet-ready")
            say(f"fleet ready after {time.monotonic() - started:.0f} s; running the schedule")
            await runner.run(steps)
            await runner.heal()
            history.healed_at = dt.datetime.now(dt.UTC)
            runner.note("healed")
            try:
                await until(lambda: _healthy(fleet), heal_timeout, what="healed", step=0.5)
            except AssertionError as exc:
                runner.note("not-healed", detail=str(exc))
            await _settle(fleet)
            history.checked_at = dt.datetime.now(dt.UTC)
            try:
                history.gateways = await fleet.api("/api/v1/gateways")
                history.strategies = await fleet.strategies()
            except (httpx.HTTPError, AssertionError) as exc:
                runner.note("api-unanswered", detail=repr(exc))
            await _records(fleet, history)
            clock.poll()
            if keep is not None:
                await _keep_logs(fleet, workdir, keep)
        finally:
            for task in helpers:
                task.cancel()
            with contextlib.suppress(Exception):
                if fleet.process is not None:
                    await fleet.end_process(signal.SIGTERM, timeout=60)
            await asyncio.to_thread(fleet.cleanup)
        history.entries.extend(runner.entries)
        history.faults = runner.faults
        history.pages = clock.pages
        history.reset_windows = [
            (w.start, w.end)
            for w in schedules.windows_between(
                fleet.settings.region, run_start, dt.datetime.now(dt.UTC)
            )
        ]
    violations = invariants.check(history)
    result = ChaosResult(history, violations, steps, time.monotonic() - started, runner.errors)
    if keep is not None:
        timeline = "\n".join(e.line() for e in history.timeline())
        (keep / "history.txt").write_text(timeline + "\n")
        say(f"logs and the whole history kept in {keep}")
    say(result.text())
    return result


async def _keep_logs(fleet: ChaosFleet, workdir: Path, keep: Path) -> None:
    """The supervisor's logs, the fleet file and each container's log, for a finding's story."""
    keep.mkdir(parents=True, exist_ok=True)
    for path in [*workdir.glob("supervisor-*.log"), workdir / "fleet.yaml"]:
        if path.exists():
            (keep / path.name).write_bytes(path.read_bytes())
    for gateway in (*GATEWAYS, "sim-broker"):
        text = await fleet.logs(gateway)
        (keep / f"{gateway}.log").write_text(text)


async def _settle(fleet: ChaosFleet) -> None:
    """Wait until the broker's record and the journal's intents stop changing (two reads a
    couple of seconds apart agree), so the records are read after the last reconcile."""
    last: list[Any] = [None]

    async def stable() -> bool:
        orders = await fleet.broker.orders()
        intents, _ = await asyncio.to_thread(_journal, fleet.settings.storage.path)
        now = (
            [(o["order_ref"], o["status"], o["filled"]) for o in orders],
            [(i["key"], i["status"], i["filled"]) for i in intents],
        )
        same, last[0] = now == last[0], now
        return same

    with contextlib.suppress(AssertionError):
        await until(stable, 60, what="the records settled", step=3.0)
