"""``ibfleet fleet down``: stop and remove the fleet's containers, its networks and its rules.

A running supervisor would recreate whatever is removed, so the command refuses while one runs
against the fleet: when another process holds the journal's lock (held, here, for as long as the
fleet goes down, so no supervisor starts meanwhile) or the fleet's API answers. Only what carries
the fleet's ``io.ibfleet.fleet`` label is removed; a container that merely has the fleet's name
is named and left alone, as reconcile leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console

from gateway.runtime import ContainerGone, ContainerState, ObservedContainer, RuntimeFailure
from gateway.spec import LABEL_FLEET
from supervisor.cli_common import ConfigOption, api_target, render_problems
from supervisor.fleet_settings import RuntimeKind
from supervisor.settings import ConfigError, load_settings

if TYPE_CHECKING:
    from gateway.docker_runtime import DockerRuntime
    from gateway.firewall import Iptables
    from gateway.swarm_runtime import SwarmRuntime

fleet_app = typer.Typer(help="The fleet as a whole: take it down.")


@dataclass(frozen=True, slots=True)
class DownPlan:
    """What ``fleet down`` removes, and what it finds but leaves alone."""

    fleet: str
    containers: tuple[ObservedContainer, ...]
    foreign: tuple[ObservedContainer, ...]
    networks: tuple[str, ...]
    chains: tuple[str, ...]
    #: Firewall helper containers of a containerised supervisor of this fleet: (id, name).
    helpers: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.chains or self.helpers)

    def lines(self) -> list[str]:
        """The plan as the operator reads it before confirming."""
        out = [f"container {c.name} ({c.state.value})" for c in self.containers]
        out += [f"firewall helper container {name}" for _, name in self.helpers]
        out += [f"network {n}" for n in self.networks]
        out += [f"iptables chain {c}" for c in self.chains]
        return out


def plan_down(
    fleet: str,
    observed: Sequence[ObservedContainer],
    *,
    networks: Sequence[str],
    chains: Sequence[str],
    helpers: Sequence[tuple[str, str]] = (),
) -> DownPlan:
    """The fleet's own containers (by label) to remove; those only named like them to leave."""
    ours = tuple(sorted((c for c in observed if c.labels.get(LABEL_FLEET) == fleet), key=_name))
    foreign = tuple(sorted((c for c in observed if c.labels.get(LABEL_FLEET) != fleet), key=_name))
    return DownPlan(fleet, ours, foreign, tuple(networks), tuple(chains), tuple(helpers))


def _name(container: ObservedContainer) -> str:
    return container.name


@contextlib.contextmanager
def journal_lock(path: Path) -> Iterator[str | None]:
    """Hold the journal's lock while the fleet goes down; yield why it is held elsewhere, or None.

    The lock file is the one the supervisor's journal takes (``<journal>.lock``, holding the
    owner's pid, see :mod:`supervisor.journal`); without one no supervisor has run here yet.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    except OSError as exc:
        yield f"the journal's lock {lock} cannot be opened ({exc.strerror})"
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            yield f"a supervisor{pid} holds the journal {path}"
            return
        yield None
    finally:
        os.close(fd)


def api_answers(base: str) -> bool:
    """Whether a supervisor's API answers at ``base`` (any reply counts)."""
    try:
        httpx.get(f"{base}/healthz", timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0, help="Seconds each gateway gets to stop before it is killed."),
]


@fleet_app.command("down")
def fleet_down(
    config: ConfigOption = None, yes: YesOption = False, timeout: TimeoutOption = 30.0
) -> None:
    """Stop and remove the fleet's containers, its networks and its firewall rules.

    Refused while a supervisor runs against the fleet (stop it first: it would recreate them).
    The journal, the spec key and the secrets stay: `ibfleet run` brings the fleet up again.
    """
    err = Console(stderr=True, highlight=False, markup=False)
    source = str(config or os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    try:
        settings = load_settings(config, environ=os.environ).settings
    except ConfigError as exc:
        render_problems(Console(stderr=True), exc.problems, source)
        raise typer.Exit(2) from None
    if settings.runtime.kind is RuntimeKind.IN_PROCESS:
        typer.echo(
            f"fleet {settings.fleet}: runtime in-process; it lives and ends in its supervisor"
        )
        return
    base, _token = api_target(config, None)
    with journal_lock(settings.storage.path) as held:
        reason = held or (f"a supervisor answers at {base}" if api_answers(base) else None)
        if reason is not None:
            err.print(f"fleet down {settings.fleet}: refused: {reason}; stop it first")
            raise typer.Exit(1)
        _down(
            settings.fleet,
            yes=yes,
            timeout=timeout,
            err=err,
            swarm=settings.runtime.kind is RuntimeKind.SWARM,
        )


def _swarm_supervisors(api: Any, fleet: str) -> list[str]:
    """The names of the fleet's supervisor services with a task running or starting."""
    from gateway.swarm_api import LABEL_SUPERVISOR_OF

    names = []
    for service in api.services(filters={"label": f"{LABEL_SUPERVISOR_OF}={fleet}"}):
        tasks = api.tasks(filters={"service": [service["ID"]], "desired-state": "running"})
        if tasks:
            names.append(str((service.get("Spec") or {}).get("Name") or service["ID"][:12]))
    return sorted(names)


def _down(fleet: str, *, yes: bool, timeout: float, err: Console, swarm: bool = False) -> None:
    import docker
    import docker.errors

    from gateway.docker_runtime import DockerRuntime
    from gateway.firewall import Iptables
    from gateway.firewall_helper import fleet_helpers
    from gateway.swarm_runtime import SwarmRuntime

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        err.print(f"fleet down {fleet}: no Docker engine answers: {exc}")
        raise typer.Exit(3) from None
    if swarm and (running := _swarm_supervisors(client.api, fleet)):
        # On a Swarm the supervisor runs on some node as a service: this host's journal lock
        # and API port say nothing about it, and a live one would recreate what goes.
        err.print(
            f"fleet down {fleet}: refused: its supervisor services run ({', '.join(running)}); "
            "scale them to 0 first (docker service scale NAME=0)"
        )
        raise typer.Exit(1)
    firewall = Iptables()
    # On a Swarm the services, their secrets and the overlay network go; there are no rules.
    firewall_problem = None if swarm else firewall.problem()
    # Without iptables access the containers still go; the rules are left for root to remove.
    runtime: DockerRuntime | SwarmRuntime = (
        SwarmRuntime(client.api)
        if swarm
        else DockerRuntime(client, isolate=firewall_problem is None, firewall=firewall)
    )
    try:
        rules = firewall if firewall_problem is None and not swarm else None
        plan = asyncio.run(_plan(runtime, fleet, rules))
        if not swarm:
            plan = dataclasses.replace(plan, helpers=tuple(fleet_helpers(client.api, fleet)))
        for container in plan.foreign:
            typer.echo(f"left alone: container {container.name} (named like the fleet's, no label)")
        if firewall_problem is not None:
            err.print(f"fleet down {fleet}: {firewall_problem}; its iptables chains, if any, stay")
        if plan.empty:
            typer.echo(f"fleet {fleet}: nothing to take down")
            raise typer.Exit(1 if firewall_problem else 0)
        typer.echo(f"fleet {fleet} will lose:")
        for line in plan.lines():
            typer.echo(f"  {line}")
        if not yes and not typer.confirm(f"Take fleet {fleet} down?", default=False):
            typer.echo("nothing removed")
            raise typer.Exit(1)
        failures = asyncio.run(_execute(runtime, plan, timeout=timeout))
        for helper_id, name in plan.helpers:
            # Its supervisor is not running (refused above otherwise): it serves nobody now,
            # and a supervisor started again makes a new one on first use.
            try:
                client.api.remove_container(helper_id, force=True)
                typer.echo(f"removed firewall helper container {name}")
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                failures.append(f"firewall helper container {name}: {exc.explanation or exc}")
        left = firewall.present(fleet) if rules is not None else ()
        for chain in plan.chains:
            if chain not in left:
                typer.echo(f"removed iptables chain {chain}")
        failures += [f"iptables chain {c} is still there" for c in left]
    finally:
        runtime.close()
    for failure in failures:
        err.print(f"fleet down {fleet}: {failure}")
    if failures or firewall_problem is not None:
        raise typer.Exit(1)
    typer.echo(f"fleet {fleet} is down")


async def _plan(
    runtime: DockerRuntime | SwarmRuntime, fleet: str, firewall: Iptables | None
) -> DownPlan:
    observed = await runtime.list(fleet=fleet)
    networks = await runtime.fleet_networks(fleet=fleet)
    chains = firewall.present(fleet) if firewall is not None else ()
    return plan_down(fleet, observed, networks=networks, chains=chains)


async def _execute(
    runtime: DockerRuntime | SwarmRuntime, plan: DownPlan, *, timeout: float
) -> list[str]:
    """Remove the plan's containers and networks, printing each, then the fleet's rules.

    The failures are returned to report at the end: one that failed does not stop the rest.
    """
    failures: list[str] = []
    for container in plan.containers:
        try:
            if container.state is ContainerState.RUNNING:
                await runtime.stop(container.id, timeout=timeout)
            await runtime.remove(container.id)
        except ContainerGone:
            pass  # gone meanwhile: as good as removed
        except RuntimeFailure as exc:
            failures.append(str(exc))
            continue
        typer.echo(f"removed container {container.name}")
    for network in plan.networks:
        try:
            await runtime.remove_network(network)
        except ContainerGone:
            pass
        except RuntimeFailure as exc:
            failures.append(f"{exc} (a container outside the fleet may still be attached)")
            continue
        typer.echo(f"removed network {network}")
    try:
        await runtime.teardown(plan.fleet)
    except RuntimeFailure as exc:
        failures.append(str(exc))
    return failures
