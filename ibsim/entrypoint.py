"""Process entry points: the gateway container (``ibfleet sim gateway``) and the broker
process (``ibfleet sim broker``).

The gateway container reads its settings once (:func:`ibsim.settings.read_settings`),
links to the broker and runs :class:`ibsim.process.GatewayProcess`, the same process
model the in-process runtime runs: socat on 4003/4004, ibcstart.sh's JVM loop, IBC's lines on
stdout, and the container's exit status when the loop ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from ibsim import auth
from ibsim.link import BrokerLinkServer, LinkError, RemoteBrokerPort
from ibsim.process import (
    EXIT_2FA_TIMEOUT,
    EXIT_BROKER_LOST,
    EXIT_CONFIG,
    EXIT_CRASHED,
    EXIT_OK,
    GatewayProcess,
)
from ibsim.settings import ConfigError, GatewaySettings, read_settings

log = logging.getLogger(__name__)

__all__ = [
    "EXIT_2FA_TIMEOUT",
    "EXIT_BROKER_LOST",
    "EXIT_CONFIG",
    "EXIT_CRASHED",
    "EXIT_OK",
    "ConfigError",
    "GatewayProcess",
    "run_gateway",
    "serve_broker",
]


async def _connect(port: RemoteBrokerPort, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await port.connect()
            return
        except LinkError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_container(
    settings: GatewaySettings,
    *,
    out: Callable[[str], None],
    host: str = "0.0.0.0",
    connect_timeout: float = 60.0,
    started: Callable[[GatewayProcess], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """The gateway container's main: link to the broker, then the process tree until it ends."""
    assert settings.broker is not None  # read_settings(need_broker=True) guarantees it
    port = RemoteBrokerPort(host=settings.broker[0], port=settings.broker[1])
    try:
        await _connect(port, timeout=connect_timeout)
    except LinkError as exc:
        log.error("sim_gateway_broker_unreachable error=%s", exc)
        return EXIT_BROKER_LOST
    process = GatewayProcess(
        settings,
        broker=port,
        out=out,
        api_host=host,
        command_host=host,
        broker_closed=port.closed,
        stop_requested=stop,
    )
    if started is not None:
        started(process)
    try:
        return await process.run()
    finally:
        await port.close()


def run_gateway(env: Mapping[str, str], *, out: Callable[[str], None] | None = None) -> int:
    """The container entrypoint: returns the exit status (IBC's 1111 shows as 87 in a shell)."""
    printer = out or (lambda line: print(line, flush=True))
    try:
        settings = read_settings(
            env, read_file=lambda path: Path(path).read_bytes(), hostname=socket.gethostname()
        )
    except ConfigError as exc:
        print(f"ibfleet sim gateway: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await run_container(settings, out=printer, stop=stop)

    return asyncio.run(main())


async def serve_broker(
    *,
    host: str,
    link_port: int,
    control_port: int,
    users: list[auth.User],
    seed: int = 7,
    auth_config: auth.AuthorityConfig | None = None,
    ready: Callable[[int, str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """The broker process: link for gateway containers plus the control API, until ``stop``."""
    from ibsim.broker import BrokerConfig
    from ibsim.control import ControlServer, create_app
    from ibsim.service import BrokerService

    service = BrokerService(config=BrokerConfig(seed=seed), users=users, auth_config=auth_config)
    await service.start()
    link = BrokerLinkServer(service, host=host, port=link_port)
    await link.start()
    control = ControlServer(create_app(service=service), host=host, port=control_port)
    url = await control.start()
    if ready is not None:
        ready(link.port, url)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await control.stop()
        await link.stop()
        await service.stop()
