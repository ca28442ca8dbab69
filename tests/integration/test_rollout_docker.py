"""Rolling replacement on the real engine: a supervisor restarted with a changed fleet file rolls
the new image out one gateway at a time.

- An image change on a two-gateway fleet (one account) with the pinger trading: the two
  gateways' API ports are never both unanswered, the strategy is moved once (a planned move,
  no safe state) and keeps placing orders while its gateway is replaced, no orderRef reaches
  the broker twice, and the simulator's broker container is the same one throughout.
- A canary on a broken image (its entrypoint exits): rolled back onto the very container it ran
  before, the other gateway untouched, exactly one page, and nothing more happens until
  ``ibfleet apply`` asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from supervisor.simfleet import BROKER_GATEWAY
from tests.integration import test_real_day
from tests.integration.realday import (
    EXE,
    MIDDAY,
    DayFleet,
    MovableClock,
    StrategyPlan,
    image_tag,
    set_image,
)
from tests.waiting import until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The real day's fleet of two gateways on one account and its webhook sink, as fixtures here.
hook = test_real_day.hook
make_fleet = test_real_day.make_fleet

ROLLOUT_PAGE = "rollout stopped"
#: Lifecycle states with the session up (answering probes, perhaps degraded).
SESSION = frozenset({"API_READY", "DEGRADED", "RESET_WINDOW"})


def pinger(data: dict[str, Any]) -> None:
    # Probes at the defaults' pace: the harness's 1 s deadline reads a loaded CI machine's
    # pause as a stall, which is not what this test is about.
    data["health"] = {"heartbeat_every": "1s", "heartbeat_deadline": "3s"}
    (strategy,) = data["strategies"]
    strategy["plugin"] = "plugins.examples.pinger:Pinger"
    strategy["params"] = {"interval_seconds": 0.5}


async def answers(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Sampler:
    """Samples both gateways' API ports, their lifecycle states and the broker's orders every
    ``every`` seconds until stopped: the record the no-outage assertions read."""

    def __init__(self, fleet: DayFleet, *, every: float = 0.2) -> None:
        self.fleet = fleet
        self.every = every
        self.ports = {g.name: g.api_port for g in fleet.settings.gateways}
        self.both_down: list[float] = []
        self.port_samples = 0
        self.states: list[dict[str, str]] = []
        self.orders_while_replacing: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            up = await asyncio.gather(*(answers(p) for p in self.ports.values()))
            self.port_samples += 1
            if not any(up):
                self.both_down.append(time.monotonic())
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                views = await self.fleet.api("/api/v1/gateways")
                states = {v["name"]: v["state"] for v in views}
                self.states.append(states)
                if states.get("gw-a") != "API_READY":
                    # gw-a is being replaced: what the strategy sends now goes through gw-b.
                    orders = await self.fleet.broker.orders()
                    self.orders_while_replacing |= {
                        o["order_ref"] for o in orders if o["gateway"] == "gw-b"
                    }
            await asyncio.sleep(self.every)  # a sampling period, not a wait for a condition


async def rollout(fleet: DayFleet) -> dict[str, Any]:
    body: dict[str, Any] = await fleet.api("/api/v1/rollout")
    return body


async def until_rollout(
    fleet: DayFleet, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 150.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        try:
            body = await rollout(fleet)
        except (httpx.HTTPError, AssertionError):
            return None
        return body if done(body) else None

    try:
        found: dict[str, Any] = await until(check, timeout, what=what, step=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await fleet.diagnosis()}") from None
    return found


def duplicates(orders: list[dict[str, Any]]) -> list[str]:
    return sorted(ref for ref, n in Counter(o["order_ref"] for o in orders).items() if n > 1)


async def test_image_change_rolls_one_gateway_at_a_time_while_the_strategy_trades(
    make_fleet: Callable[..., DayFleet], docker_client: docker.DockerClient, sim_image: str
) -> None:
    fleet = make_fleet(strategy=StrategyPlan(on_shutdown="hold"))
    fleet.reconfigure(pinger)
    clock = MovableClock(MIDDAY)
    await fleet.start(clock)
    await fleet.until_ready()

    async def pinged_on(gateway: str, more_than: int) -> bool:
        return len([o for o in await fleet.broker.orders() if o["gateway"] == gateway]) > more_than

    await until(lambda: pinged_on("gw-a", 2), 90, what="the pinger trading on gw-a", step=0.25)
    broker_id = (await fleet.identity(BROKER_GATEWAY))[0]
    old = {g: (await fleet.identity(g))[0] for g in ("gw-a", "gw-b")}
    mark = fleet.pages.mark()

    with image_tag(docker_client, sim_image, f"roll-{fleet.fleet}", broken=False) as upgraded:
        sampler = Sampler(fleet)
        sampler.start()
        try:
            # The operator's upgrade: a new image in the fleet file, the supervisor restarted.
            await fleet.stop()
            fleet.reconfigure(set_image(upgraded, "gw-a", "gw-b"))
            await fleet.start(clock)
            body = await until_rollout(
                fleet,
                lambda b: len(b["replacements"]) >= 2 or b["blocked"] is not None,
                "both gateways replaced",
            )
            await fleet.until_ready()
            await until(lambda: pinged_on("gw-b", 2), 60, what="pings on gw-b", step=0.25)
        finally:
            await sampler.stop()

        assert body["blocked"] is None, body
        # The gateway no strategy starts on goes first (the canary); the strategy's primary last.
        assert [(r["gateway"], r["outcome"]) for r in body["replacements"]] == [
            ("gw-b", "replaced"),
            ("gw-a", "replaced"),
        ], body
        assert body["replacements"][0]["canary"] is True
        for gateway in ("gw-a", "gw-b"):
            info = await fleet.inspect(gateway)
            assert info["Config"]["Image"] == upgraded
            assert info["Id"] != old[gateway]
    # Never both gateways of the account unanswered at once.
    assert sampler.port_samples > 50
    assert sampler.both_down == [], f"{len(sampler.both_down)} samples with both ports down"
    both = [
        (i, s)
        for i, s in enumerate(sampler.states)
        if s.get("gw-a") not in SESSION and s.get("gw-b") not in SESSION
    ]
    assert both == [], (both, len(sampler.states))
    # Moved once, as a planned move: no safe state; it kept trading while gw-a was replaced.
    status = await fleet.strategy_status()
    assert status["state"] == "RUNNING" and status["gateway"] == "gw-b", status
    assert status["failovers"] == 1 and status["safe_state_runs"] == 0, status
    assert sampler.orders_while_replacing, "no order went through gw-b during gw-a's replacement"
    orders = await fleet.broker.orders()
    assert duplicates(orders) == []
    # The broker is not recreated because the gateways' spec changed; nobody was paged.
    assert (await fleet.identity(BROKER_GATEWAY))[0] == broker_id
    assert fleet.pages.raised(mark) == [], "\n".join(
        [*await fleet.states_seen("gw-a"), "--", *await fleet.states_seen("gw-b")]
    )


async def test_broken_canary_is_rolled_back_and_the_rest_waits_for_apply(
    make_fleet: Callable[..., DayFleet], docker_client: docker.DockerClient, sim_image: str
) -> None:
    fleet = make_fleet(strategy=None)
    clock = MovableClock(MIDDAY)
    await fleet.start(clock)
    await fleet.until_ready()
    before = {g: await fleet.identity(g) for g in ("gw-a", "gw-b")}
    images = {g: (await fleet.inspect(g))["Config"]["Image"] for g in ("gw-a", "gw-b")}
    mark = fleet.pages.mark()

    with image_tag(docker_client, sim_image, f"broken-{fleet.fleet}", broken=True) as broken:
        await fleet.stop()
        fleet.reconfigure(set_image(broken, "gw-a", "gw-b"))
        running = await fleet.start(clock)
        body = await until_rollout(fleet, lambda b: b["blocked"] is not None, "a blocked rollout")
        assert body["blocked"]["gateway"] == "gw-a" and body["blocked"]["canary"] is True
        assert body["blocked"]["outcome"] == "rolled_back"
        await fleet.until_ready()
        # Back on the very container it ran before; the other gateway was never touched.
        assert (await fleet.identity("gw-a"))[0] == before["gw-a"][0]
        assert (await fleet.inspect("gw-a"))["Config"]["Image"] == images["gw-a"]
        assert await fleet.identity("gw-b") == before["gw-b"]
        page = await fleet.pages.wait(ROLLOUT_PAGE, mark=mark)
        assert "gw-a" in page
        assert [c["status"] for c in body["pending"]] == ["blocked", "blocked"]

        # Passes go on, the rollout does not: it waits for the operator.
        orch = running.supervisor.orchestrator
        passes = orch.passes
        await until(lambda: orch.passes >= passes + 3, 30, what="three more passes", step=0.2)
        assert len((await rollout(fleet))["replacements"]) == 1
        assert await fleet.identity("gw-b") == before["gw-b"]
        assert fleet.pages.raised(mark) == [page], "more than one page for one failed canary"

        # `ibfleet apply` asks again: the canary is tried (and, still broken, rolled back) again.
        applied = await asyncio.to_thread(
            subprocess.run,
            [EXE, "apply", "--url", fleet.api_url],
            capture_output=True,
            text=True,
            env={**os.environ, **fleet.environ},
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        assert "retrying after the failure of gw-a" in applied.stdout
        body = await until_rollout(
            fleet,
            lambda b: len(b["replacements"]) >= 2 and b["blocked"] is not None,
            "the canary tried again",
        )
        assert [r["gateway"] for r in body["replacements"]] == ["gw-a", "gw-a"]
        await fleet.until_ready()
        assert await fleet.identity("gw-b") == before["gw-b"]
