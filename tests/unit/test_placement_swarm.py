"""``runtime.kind: swarm``: the supervisor must be a service on the fleet's overlay network of a
manager; its address there is what ControlFrom admits; live gateways need consent."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.swarm_runtime import SwarmRuntime
from supervisor import placement
from supervisor.settings import load_text
from tests.unit import fleetfiles
from tests.unit.test_placement import OWN, FakeApi, supervisor_container

ON_NETWORK = {
    **supervisor_container(),
    "NetworkSettings": {"Networks": {"ibfleet": {"IPAddress": "10.0.9.4"}}},
}


class SwarmClient:
    def __init__(self, api: FakeApi, swarm: dict[str, Any]) -> None:
        self.api = api
        self._swarm = swarm

    def info(self) -> dict[str, Any]:
        return {"Swarm": self._swarm}


MANAGER = {"LocalNodeState": "active", "ControlAvailable": True}


def settings(**over: Any) -> Any:
    data = fleetfiles.fleet(**{"runtime": {"kind": "swarm"}, **over})
    return load_text(fleetfiles.dump(data), environ=fleetfiles.env_for(data)).settings


def setup_for(client: SwarmClient, fleet: Any) -> placement.DockerSetup:
    return placement.swarm_runtime_for(
        client,  # type: ignore[arg-type]
        fleet,
        environ={placement.ENV_CONTAINER: OWN},
        secret_key=b"k" * 32,
    )


def test_a_service_on_the_overlay_network_gets_the_swarm_runtime() -> None:
    setup = setup_for(SwarmClient(FakeApi({OWN: ON_NETWORK}), MANAGER), settings())
    assert isinstance(setup.runtime, SwarmRuntime)
    assert setup.runtime._control_sources == ("10.0.9.4",)
    assert setup.limits == [placement.SWARM_LIMIT]
    gw = GatewayConfig.model_validate(fleetfiles.gateway("paper-a"))
    assert setup.endpoint(gw) == ("ibfleet-test-paper-a", 4004)
    setup.runtime.close()


@pytest.mark.parametrize(
    ("swarm", "words"),
    [
        ({"LocalNodeState": "inactive"}, "in no Swarm"),
        ({"LocalNodeState": "active", "ControlAvailable": False}, "Swarm worker"),
    ],
)
def test_an_engine_that_is_no_swarm_manager_is_refused(swarm: dict[str, Any], words: str) -> None:
    with pytest.raises(placement.StartupRefused, match=words):
        setup_for(SwarmClient(FakeApi({OWN: ON_NETWORK}), swarm), settings())


def test_a_supervisor_off_the_overlay_network_is_refused() -> None:
    with pytest.raises(placement.StartupRefused, match="attached to the overlay network ibfleet"):
        setup_for(SwarmClient(FakeApi({OWN: supervisor_container()}), MANAGER), settings())


def test_live_gateways_on_swarm_need_consent() -> None:
    live = [fleetfiles.gateway("live-a", mode="live", account="U1234567", allow_live=True)]
    client = SwarmClient(FakeApi({OWN: ON_NETWORK}), MANAGER)
    with pytest.raises(placement.StartupRefused, match="live-a"):
        setup_for(client, settings(gateways=live, strategies=[]))
    fleet = settings(
        gateways=live, strategies=[], runtime={"kind": "swarm", "unprotected_live": True}
    )
    setup = placement.swarm_runtime_for(
        client,  # type: ignore[arg-type]
        fleet,
        environ={placement.ENV_CONTAINER: OWN},
        secret_key=b"k" * 32,
    )
    assert isinstance(setup.runtime, SwarmRuntime)
    setup.runtime.close()


def test_a_simulator_fleet_on_swarm_runs_its_broker_as_one_more_service() -> None:
    from pydantic import SecretStr

    from gateway.spec import GatewaySecrets
    from supervisor import wiring

    fleet = settings(simulator={"enabled": True}, strategies=[])
    secrets = {
        gw.name: GatewaySecrets(username=SecretStr(f"u-{gw.name}"), password=SecretStr("p"))
        for gw in fleet.gateways
    }
    specs = wiring.desired_specs(fleet, secrets, fingerprint_key=b"k" * 32)
    assert "sim-broker" in {spec.gateway for spec in specs}
