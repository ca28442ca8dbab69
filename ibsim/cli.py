"""``ibfleet sim``: the simulator's command line (the lead mounts ``app`` under ``ibfleet``).

    ibfleet sim --gateways 2 --port-base 4100 --control-port 8780   # process mode
    ibfleet sim broker --port 7500 --control-port 8780              # broker container
    ibfleet sim gateway                                             # gateway container (env)

``ibfleet sim image`` (building the images) is added by the lead from ibsim.image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import MarketDataEntitlement, TradingMode
from ibsim import auth

app = typer.Typer(
    name="sim",
    help="The IB Gateway simulator: broker, gateways, control API.",
    no_args_is_help=False,
    add_completion=False,
)


def load_users(path: Path | None, *, count: int, twofa: bool) -> list[auth.User]:
    """Users from a JSON file (list of objects), or simuser1..N on paper accounts."""
    from ibsim.fleet import default_users

    if path is None:
        return default_users(count, twofa=twofa)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"{path}: cannot read users ({exc})") from None
    if not isinstance(rows, list):
        raise typer.BadParameter(f"{path}: expected a JSON list of users")
    users = []
    for index, row in enumerate(rows):
        try:
            users.append(
                auth.User(
                    username=str(row["username"]),
                    password=str(row["password"]),
                    accounts=tuple(row["accounts"]),
                    mode=TradingMode(row.get("mode", "paper")),
                    twofa_required=bool(row.get("twofa_required", False)),
                    market_data=MarketDataEntitlement(row.get("market_data", "realtime")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise typer.BadParameter(f"{path}: user #{index}: {exc!r}") from None
    return users


async def _until_signalled() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    gateways: Annotated[int, typer.Option(min=1, max=500, help="Number of gateways.")] = 2,
    port_base: Annotated[
        int, typer.Option(help="Gateway i listens on port-base + i (0 = ephemeral).")
    ] = 4100,
    control_port: Annotated[int, typer.Option(help="Control API port (0 = ephemeral).")] = 8780,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    twofa: Annotated[
        bool, typer.Option("--2fa", help="Users need 2FA (approve via the control API).")
    ] = False,
    tick_rate: Annotated[float, typer.Option(min=0.0, help="Ticks/s per market data line.")] = 20.0,
    twofa_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to approve a 2FA push.")
    ] = 180.0,
) -> None:
    """Process mode: a broker and N gateways in one process (paper accounts)."""
    if ctx.invoked_subcommand is not None:
        return
    from ibsim.fleet import SimFleet

    async def main() -> None:
        stop = await _until_signalled()
        async with SimFleet.start(
            gateways=gateways,
            twofa=twofa,
            port_base=port_base,
            control_port=control_port,
            host=host,
            tick_rate=tick_rate,
            auth_config=auth.AuthorityConfig(twofa_timeout=timedelta(seconds=twofa_timeout)),
            login=True,
        ) as sim:
            logins = (
                [asyncio.create_task(_login_quietly(sim, i)) for i in range(gateways)]
                if twofa
                else []
            )
            for spec, gateway in zip(sim.specs, sim.gateways, strict=True):
                typer.echo(
                    f"gateway {spec.name}: user {spec.username} port "
                    f"{gateway.port if gateway.ready.is_set() else spec.port or '(after login)'}"
                )
            typer.echo(f"control API: {sim.control_url}")
            if twofa:
                typer.echo(f"approve logins: POST {sim.control_url}/2fa/<username>/approve")
            await stop.wait()
            for task in logins:
                task.cancel()

    asyncio.run(main())


async def _login_quietly(sim: object, index: int) -> None:
    from ibsim.fleet import SimFleet

    assert isinstance(sim, SimFleet)
    outcome = await sim.login(index)
    typer.echo(f"gateway {sim.specs[index].name}: {outcome.kind.value} port {sim.ports[index]}")


def parse_user_spec(spec: str) -> auth.User:
    """``username:password:account[,account...][:2fa][:delayed|:none]`` from ``--user``."""
    parts = spec.split(":")
    if len(parts) < 3 or not all(parts[:3]):
        raise typer.BadParameter(
            f"--user {spec!r}: expected username:password:account[:2fa][:delayed|:none]"
        )
    flags = {p.lower() for p in parts[3:]}
    unknown = flags - {"2fa", "delayed", "none", "realtime", "live", "paper"}
    if unknown:
        raise typer.BadParameter(f"--user {spec!r}: unknown flag(s) {sorted(unknown)}")
    market = next((m for m in ("delayed", "none") if m in flags), "realtime")
    return auth.User(
        username=parts[0],
        password=parts[1],
        accounts=tuple(a for a in parts[2].split(",") if a),
        mode=TradingMode.LIVE if "live" in flags else TradingMode.PAPER,
        twofa_required="2fa" in flags,
        market_data=MarketDataEntitlement(market),
    )


@app.command("broker")
def broker(
    port: Annotated[
        int, typer.Option("--port", "--link-port", help="Broker link port for gateway containers.")
    ] = 7500,
    control_port: Annotated[int, typer.Option(help="Control API port.")] = 8780,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",
    users: Annotated[int, typer.Option(min=1, help="simuser1..N when no users file.")] = 4,
    users_file: Annotated[Path | None, typer.Option(help="JSON list of users.")] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(help="username:password:account[:2fa][:delayed|:none]; repeatable."),
    ] = None,
    twofa: Annotated[bool, typer.Option("--2fa", help="Default users need 2FA.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the price random walk.")] = 7,
    twofa_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to approve a 2FA push.")
    ] = 180.0,
    max_failures: Annotated[int, typer.Option(min=1, help="Failed logins before a lockout.")] = 3,
    lockout: Annotated[float, typer.Option(min=0.0, help="Lockout period in seconds.")] = 300.0,
) -> None:
    """Run the broker alone (the broker container): link + control API."""
    from ibsim.entrypoint import serve_broker

    if user:
        people = [parse_user_spec(spec) for spec in user]
    else:
        people = load_users(users_file, count=users, twofa=twofa)

    async def main() -> None:
        stop = await _until_signalled()
        await serve_broker(
            host=host,
            link_port=port,
            control_port=control_port,
            users=people,
            seed=seed,
            auth_config=auth.AuthorityConfig(
                twofa_timeout=timedelta(seconds=twofa_timeout),
                max_failures=max_failures,
                lockout=timedelta(seconds=lockout),
            ),
            ready=lambda link, url: typer.echo(f"broker link: {host}:{link}\ncontrol API: {url}"),
            stop=stop,
        )

    asyncio.run(main())


@app.command("gateway")
def gateway() -> None:
    """The gateway container's entrypoint: reads the gnzsnz env contract, exits with IBC's codes.

    A 2FA timeout exits with IBC's 1111, which a shell sees as 87 (1111 % 256).
    """
    from ibsim.entrypoint import run_gateway

    raise typer.Exit(run_gateway(os.environ) % 256)


@app.command("image")
def image(
    tag: Annotated[str, typer.Option("--tag", help="Tag of the image to build.")] = (
        "ibfleet-sim:latest"
    ),
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base image (Python 3.11, Debian bookworm) to build on."),
    ] = None,
    rebuild_base: Annotated[
        bool, typer.Option("--rebuild-base", help="Rebuild the local debootstrap base.")
    ] = False,
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="Debian mirror for debootstrap (default: apt's).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
) -> None:
    """Build the simulator image with no container registry (a local base when none can be
    pulled, cached); a second build takes seconds."""
    from ibsim.image import image_command

    image_command(tag=tag, base=base, rebuild_base=rebuild_base, mirror=mirror, quiet=quiet)
