"""Schemathesis against the running supervisor's API, with and without the token: no 5xx.

Every path but ``/readyz`` (503 by contract while a gateway is not ready), fuzzed and stateful.

The supervisor runs in-process on a fake runtime whose gateways never answer the TWS API, with a
strategy configured, so every POST meets the states that used to fail with 500 (resume or kill
while the gateway is down). The schema comes from the running API (``api.docs: true``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.secret_refs import SecretRef
from supervisor.settings import ApiSettings, load_text
from tests.unit import fleetfiles as ff
from tests.unit.test_supervisor_owners import Harness

TOKEN = "schemathesis-token-0123456789"
ST = shutil.which("st", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(ST is None, reason="schemathesis is not installed")


@pytest.fixture
async def harness(tmp_path: Path) -> Any:
    made = Harness(tmp_path)
    data = made.settings.model_dump(mode="json", exclude_none=True)
    data["gateways"][0].update(username={"env": "GW_USER"}, password={"env": "GW_PASSWORD"})
    data["strategies"] = [ff.strategy("probe-st", plugin="pinger", gateways=["gw"])]
    data.pop("api", None)
    made.settings = load_text(ff.dump(data), environ={}).settings.model_copy(
        update={"api": ApiSettings(token=SecretRef(env="API_TOKEN"), docs=True)}
    )
    made.environ = {**made.environ, "API_TOKEN": TOKEN}
    yield made
    await made.stop()


async def _schemathesis(url: str, *extra: str) -> tuple[int, str]:
    assert ST is not None
    proc = await asyncio.create_subprocess_exec(
        ST,
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "60",
        "--seed",
        "1",
        "--no-color",
        # /readyz answers 503 by contract while a gateway is down (tested on its own).
        "--exclude-path",
        "/readyz",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    return proc.returncode or 0, out.decode(errors="replace")


def _cases(report: str) -> int:
    found = re.findall(r"(\d+) generated", report)
    return int(found[-1]) if found else -1


@pytest.mark.timeout(900)
async def test_no_5xx_with_and_without_the_token(harness: Harness) -> None:
    running = await harness.start()
    url = f"http://127.0.0.1:{running.api.port}"
    async with httpx.AsyncClient(base_url=url) as client:
        # The case schemathesis found as 500: resume while the gateway is down.
        r = await client.post(
            "/api/v1/strategies/probe-st/resume",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={},
        )
        assert r.status_code == 409, r.text
        assert "cannot connect" in r.json()["detail"]
    # The two runs are independent (the same seed and cases each way, one supervisor): side by
    # side they take the time of the longer one, not of both.
    (code_anon, anon), (code_auth, auth) = await asyncio.gather(
        _schemathesis(url), _schemathesis(url, "-H", f"Authorization: Bearer {TOKEN}")
    )
    print(f"schemathesis without token: {_cases(anon)} cases\n{anon[-1500:]}")
    print(f"schemathesis with token: {_cases(auth)} cases\n{auth[-1500:]}")
    assert _cases(anon) > 0 and _cases(auth) > 0
    assert code_anon == 0, anon[-4000:]
    assert code_auth == 0, auth[-4000:]
