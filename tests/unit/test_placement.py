"""A supervisor in a container: finding its container, dialling gateways on the fleet network,
the firewall helper, and refusing live gateways it cannot protect."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest

from gateway import api_endpoint, docker_self
from gateway.firewall_helper import HelperRunner, helper_name
from supervisor import placement
from supervisor.settings import load_text
from tests.unit import fleetfiles

OWN = "a" * 64
OTHER = "b" * 64
MOUNTINFO = (
    f"612 590 0:51 /docker/containers/{OWN}/resolv.conf /etc/resolv.conf rw - ext4 /dev/sda1\n"
    f"613 590 0:51 /docker/containers/{OWN}/hostname /etc/hostname rw - ext4 /dev/sda1\n"
    "614 590 0:51 /srv/fleet.yaml /etc/ibfleet/fleet.yaml ro - ext4 /dev/sda1\n"
)


class FakeApi:
    """The engine calls placement and the helper make; ``iptables`` says how iptables answers."""

    def __init__(self, containers: dict[str, dict[str, Any]] | None = None) -> None:
        self.containers = dict(containers or {})
        self.iptables: tuple[int, bytes, bytes] = (0, b"-N DOCKER-USER\n", b"")
        self.refuse_create = False
        self.execs: list[tuple[list[str], dict[str, str] | None]] = []
        self.created: list[dict[str, Any]] = []

    def inspect_container(self, name: str) -> dict[str, Any]:
        for key, attrs in self.containers.items():
            if name in (key, attrs["Id"], attrs["Name"].lstrip("/")):
                return attrs
        raise docker.errors.NotFound(f"no container {name}")

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        if self.refuse_create:
            raise docker.errors.APIError("host networking is not allowed here")
        cid = "c" * 64
        self.created.append({"image": image, **kwargs})
        self.containers[kwargs["name"]] = {
            "Id": cid,
            "Name": "/" + kwargs["name"],
            "Image": image,
            "State": {"Running": False},
            "Config": {"Hostname": "helper"},
        }
        return {"Id": cid}

    def start(self, container: str) -> None:
        self.inspect_container(container)["State"]["Running"] = True

    def remove_container(self, container: str, force: bool = False) -> None:
        attrs = self.inspect_container(container)
        self.containers = {k: v for k, v in self.containers.items() if v is not attrs}

    def exec_create(self, container: str, cmd: list[str], **kwargs: Any) -> dict[str, str]:
        self.execs.append((cmd, kwargs.get("environment")))
        return {"Id": "exec1"}

    def exec_start(self, exec_id: str, demux: bool = False) -> tuple[bytes, bytes]:
        return self.iptables[1], self.iptables[2]

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": self.iptables[0]}


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def info(self) -> dict[str, Any]:
        return {"OperatingSystem": "Debian GNU/Linux 12", "SecurityOptions": []}


def supervisor_container(hostname: str = "sup") -> dict[str, Any]:
    return {
        "Id": OWN,
        "Name": "/ibfleet-supervisor",
        "Image": "sha256:" + "1" * 64,
        "State": {"Running": True},
        "Config": {"Hostname": hostname},
    }


def settings(**over: Any) -> Any:
    data = fleetfiles.fleet(**over)
    return load_text(fleetfiles.dump(data), environ=fleetfiles.env_for(data)).settings


# -- finding its own container ------------------------------------------------------------------


def test_candidates_come_from_the_engine_written_mounts_then_cgroup_then_hostname() -> None:
    found = docker_self.container_candidates(
        mountinfo=MOUNTINFO, cgroup=f"12:pids:/docker/{OTHER}\n", hostname="0123456789ab"
    )
    assert found == [OWN, OTHER, "0123456789ab"]


def test_a_host_process_has_no_candidates() -> None:
    found = docker_self.container_candidates(
        mountinfo="22 1 0:21 / / rw - ext4 /dev/sda1\n", cgroup="0::/\n", hostname="vm"
    )
    assert found == []


def test_a_candidate_counts_only_when_the_engine_runs_it_with_this_hostname() -> None:
    api = FakeApi({OWN: supervisor_container(hostname="sup")})
    assert docker_self.own_container(api, [OTHER, OWN], hostname="sup") is not None
    # Another engine's container with the same id (this host itself in a container) is not ours.
    assert docker_self.own_container(api, [OWN], hostname="elsewhere") is None


def test_the_environment_can_name_the_container_or_force_host_mode() -> None:
    api = FakeApi({OWN: supervisor_container()})
    named = placement.find_placement(api, {placement.ENV_CONTAINER: "ibfleet-supervisor"})
    assert named is not None and named.container_id == OWN and named.name == "ibfleet-supervisor"
    assert placement.find_placement(api, {placement.ENV_CONTAINER: "none"}) is None
    with pytest.raises(placement.StartupRefused, match="names no container"):
        placement.find_placement(api, {placement.ENV_CONTAINER: "nope"})


# -- dialling gateways --------------------------------------------------------------------------


def test_on_the_fleet_network_gateways_are_dialled_by_container_name_and_image_port() -> None:
    fleet = settings(
        gateways=[
            fleetfiles.gateway("paper-a"),
            fleetfiles.gateway("live-a", mode="live", account="U1234567", api_port=4013),
        ]
    )
    paper, live = fleet.gateways
    assert api_endpoint.from_host(paper) == ("127.0.0.1", 4002)
    dial = api_endpoint.from_fleet_network(fleet.fleet)
    assert dial(paper) == ("ibfleet-test-paper-a", 4004)
    assert dial(live) == ("ibfleet-test-live-a", 4003)


# -- the firewall helper ------------------------------------------------------------------------


def test_the_helper_runs_in_the_hosts_network_with_only_net_admin_and_net_raw() -> None:
    api = FakeApi()
    runner = HelperRunner(api, image="sha256:" + "1" * 64, supervisor_name="/sup")  # type: ignore[arg-type]
    code, out, _err = runner(["iptables", "-w", "-S", "DOCKER-USER"])
    assert (code, out) == (0, "-N DOCKER-USER\n")
    (made,) = api.created
    assert made["name"] == helper_name("sup") == "ibfleet_firewall_sup"
    host = made["host_config"]
    assert host["network_mode"] == "host"
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] == ["NET_ADMIN", "NET_RAW"]
    # Adopted, not made again, on the next command.
    runner(["iptables", "-w", "-S", "OUTPUT"])
    assert len(api.created) == 1


def test_the_restore_script_travels_in_the_environment_to_iptables_restores_stdin() -> None:
    api = FakeApi()
    runner = HelperRunner(api, image="img", supervisor_name="sup")  # type: ignore[arg-type]
    runner(["iptables-restore", "-w", "--noflush"], "*filter\nCOMMIT\n")
    cmd, env = api.execs[-1]
    assert cmd[:2] == ["/bin/sh", "-c"] and cmd[-3:] == ["iptables-restore", "-w", "--noflush"]
    assert env == {"IBFLEET_IPTABLES_INPUT": "*filter\nCOMMIT\n"}


def test_a_helper_from_an_older_image_is_replaced() -> None:
    api = FakeApi()
    HelperRunner(api, image="old", supervisor_name="sup")(["true"])  # type: ignore[arg-type]
    HelperRunner(api, image="new", supervisor_name="sup")(["true"])  # type: ignore[arg-type]
    assert [c["image"] for c in api.created] == ["old", "new"]


# -- the runtime for where it runs --------------------------------------------------------------


def in_container(api: FakeApi) -> dict[str, str]:
    api.containers[OWN] = supervisor_container()
    return {placement.ENV_CONTAINER: OWN}


def test_in_a_container_the_runtime_admits_its_own_address_and_no_host_user() -> None:
    api = FakeApi()
    setup = placement.docker_runtime_for(FakeClient(api), settings(), environ=in_container(api))  # type: ignore[arg-type]
    assert setup.limits == []
    assert setup.runtime._supervisor_container == OWN
    assert setup.runtime._isolation is not None and setup.runtime._isolation._host_uids == (0,)
    assert setup.endpoint(settings().gateways[0]) == ("ibfleet-test-paper-a", 4004)


def test_on_the_host_nothing_changes() -> None:
    api = FakeApi()
    setup = placement.docker_runtime_for(
        FakeClient(api),  # type: ignore[arg-type]
        settings(),
        environ={placement.ENV_CONTAINER: "none"},
    )
    assert setup.placement is None and setup.runtime._supervisor_container is None
    assert setup.endpoint is api_endpoint.from_host
    assert api.created == []


def test_without_the_helper_paper_gateways_run_unprotected_and_it_says_so() -> None:
    api = FakeApi()
    api.refuse_create = True
    setup = placement.docker_runtime_for(FakeClient(api), settings(), environ=in_container(api))  # type: ignore[arg-type]
    (limit,) = setup.limits
    assert "cannot install the host's firewall rules" in limit and "host networking" in limit
    assert setup.runtime._isolation is None


def test_without_the_rules_live_gateways_are_refused_unless_the_fleet_file_accepts_it() -> None:
    api = FakeApi()
    api.iptables = (4, b"", b"iptables: Permission denied (you must be root)")
    live = [fleetfiles.gateway("live-a", mode="live", account="U1234567")]
    with pytest.raises(placement.StartupRefused, match=r"live gateways \(live-a\) unprotected"):
        placement.docker_runtime_for(
            FakeClient(api),
            settings(gateways=live),
            environ=in_container(api),  # type: ignore[arg-type]
        )
    accepted = settings(gateways=live, runtime={"unprotected_live": True})
    setup = placement.docker_runtime_for(FakeClient(api), accepted, environ=in_container(api))  # type: ignore[arg-type]
    assert setup.runtime._isolation is None and len(setup.limits) == 1
