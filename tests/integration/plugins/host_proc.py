"""A strategy host in its own process, for the SIGKILL test: ``python -m ... PORT_A PORT_B
JOURNAL``. It prints ``ready`` once the strategy runs, then trades until killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from plugins.host import GatewayEndpoint, HostSettings, StrategyHost
from supervisor.journal import SqliteJournal
from tests.integration.plugins.helpers import ACCOUNT, RecordingAlerts, strategy


async def main(port_a: int, port_b: int, journal_path: Path) -> None:
    journal = SqliteJournal(journal_path)
    host = StrategyHost(
        strategies=[strategy("burst", "tests.integration.plugins.strategies:Resting", count=40)],
        endpoints={
            "gw-a": GatewayEndpoint("gw-a", "127.0.0.1", port_a, account=ACCOUNT),
            "gw-b": GatewayEndpoint("gw-b", "127.0.0.1", port_b, account=ACCOUNT),
        },
        store=journal,
        alerts=RecordingAlerts(),
        settings=HostSettings(connect_timeout=1.0, request_timeout=2.0),
    )
    await host.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
