"""A gateway's spec as a Swarm service: restarts left to the lifecycle, secrets as files, the
labels adoption needs, published ports, placement; and the manager's replies read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.runtime import ContainerState, EventKind
from gateway.spec import (
    CONFIG_INI_PATH,
    LABEL_FLEET,
    LABEL_GATEWAY,
    LABEL_SPEC_HASH,
    ContainerSpec,
    GatewaySecrets,
    SpecError,
)
from gateway.spec_render import render_spec
from gateway.swarm_replies import (
    TaskView,
    log_line,
    observe_service,
    task_address,
    task_events,
    task_may_run,
)
from gateway.swarm_spec import (
    LABEL_NAME,
    LABEL_SERVICE,
    forced,
    render_service,
    scaled,
    secret_name,
    service_name,
    tmpfs_options,
    with_secret_ids,
)

PASSWORD = "s3cret-Pa55word"
KEY = b"k" * 32


def spec_of(password: str = PASSWORD, **overrides: Any) -> ContainerSpec:
    data: dict[str, Any] = {
        "name": "paper-1",
        "mode": "paper",
        "account": "DU1234567",
        "username": {"env": "IB_USER"},
        "password": {"env": "IB_PASS"},
        "api_port": 4102,
    }
    data.update(overrides)
    return render_spec(
        GatewayConfig.model_validate(data),
        fleet="prod",
        network="ibfleet",
        image="ghcr.io/gnzsnz/ib-gateway:stable",
        timezone="America/New_York",
        secrets=GatewaySecrets(username=SecretStr("fleetuser1"), password=SecretStr(password)),
        fingerprint_key=KEY,
    )


def test_the_service_starts_with_no_replica_and_swarm_never_restarts_it() -> None:
    body = render_service(spec_of(), suffix="abc123", key=KEY).body
    assert body["Mode"] == {"Replicated": {"Replicas": 0}}
    assert body["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert body["UpdateConfig"]["Order"] == "stop-first"
    assert body["UpdateConfig"]["Parallelism"] == 1


def test_service_labels_carry_the_spec_labels_and_the_container_name() -> None:
    spec = spec_of()
    body = render_service(spec, suffix="abc123", key=KEY).body
    assert body["Labels"][LABEL_SPEC_HASH] == spec.spec_hash
    assert body["Labels"][LABEL_FLEET] == "prod"
    assert body["Labels"][LABEL_GATEWAY] == "paper-1"
    assert body["Labels"][LABEL_NAME] == "ibfleet-prod-paper-1"
    assert body["Name"] == "ibfleet-prod-paper-1-abc123"
    # Task containers carry no fleet label: a one-engine supervisor on a node leaves them be.
    assert body["TaskTemplate"]["ContainerSpec"]["Labels"] == {LABEL_SERVICE: body["Name"]}


def test_credentials_are_secret_files_never_in_the_service_spec() -> None:
    plan = render_service(spec_of(), suffix="abc123", key=KEY, owner=(1000, 1000, 0o400))
    text = json.dumps(plan.body)
    assert PASSWORD not in text and "fleetuser1" not in text
    assert "_FILE" not in text and "TWS_PASSWORD" not in text
    refs = plan.body["TaskTemplate"]["ContainerSpec"]["Secrets"]
    paths = {ref["File"]["Name"]: ref for ref in refs}
    assert CONFIG_INI_PATH in paths
    assert paths[CONFIG_INI_PATH]["File"] == {
        "Name": CONFIG_INI_PATH,
        "UID": "1000",
        "GID": "1000",
        "Mode": 0o400,
    }
    config = next(s for s in plan.secrets if s.path == CONFIG_INI_PATH)
    assert PASSWORD in config.content.get_secret_value()
    assert PASSWORD not in repr(plan.secrets)


def test_a_named_image_user_gets_files_any_user_can_read() -> None:
    plan = render_service(spec_of(), suffix="abc123", key=KEY, owner=(0, 0, 0o444))
    refs = plan.body["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert {ref["File"]["Mode"] for ref in refs} == {0o444}


def test_secret_names_follow_the_content_and_fit_swarm() -> None:
    one = render_service(spec_of(), suffix="abc123", key=KEY).secrets
    same = render_service(spec_of(), suffix="abc123", key=KEY).secrets
    other = render_service(spec_of(password="another-Pa55"), suffix="abc123", key=KEY).secrets
    assert [s.name for s in one] == [s.name for s in same]
    changed = {s.path for s, t in zip(one, other, strict=True) if s.name != t.name}
    assert CONFIG_INI_PATH in changed
    assert all(len(s.name) <= 64 for s in one)
    # The digest is keyed: another key, another name for the same content.
    assert secret_name("svc", "/a", SecretStr("x"), key=KEY) != secret_name(
        "svc", "/a", SecretStr("x"), key=b"z" * 32
    )
    with pytest.raises(SpecError):
        secret_name("svc", "/a", SecretStr("x"), key=b"")


def test_long_names_are_shortened_to_fit() -> None:
    long = "ibfleet-" + "f" * 60 + "-" + "g" * 60
    assert len(service_name(long, "abc123")) <= 63
    assert service_name(long, "abc123").endswith("-abc123")
    assert (
        len(secret_name(service_name(long, "abc123"), CONFIG_INI_PATH, SecretStr("x"), key=KEY))
        <= 64
    )
    with pytest.raises(SpecError):
        service_name("x", "Bad!")


def test_a_loopback_bind_publishes_nothing_and_another_publishes_in_host_mode() -> None:
    local = render_service(spec_of(), suffix="a1", key=KEY).body["EndpointSpec"]
    assert local == {"Mode": "dnsrr", "Ports": []}
    public = render_service(
        spec_of(bind="0.0.0.0", allow_public_bind=True), suffix="a1", key=KEY
    ).body["EndpointSpec"]
    assert public["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 4004, "PublishedPort": 4102, "PublishMode": "host"}
    ]


def test_placement_and_network_aliases() -> None:
    spec = spec_of(
        placement={
            "constraints": ["node.labels.zone==a"],
            "preferences": ["spread=node.labels.rack"],
        }
    )
    task = render_service(spec, suffix="a1", key=KEY).body["TaskTemplate"]
    assert task["Placement"] == {
        "Constraints": ["node.labels.zone==a"],
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.rack"}}],
    }
    assert task["Networks"] == [
        {"Target": "ibfleet", "Aliases": ["paper-1", "ibfleet-prod-paper-1"]}
    ]
    # Placement is part of the spec: a change of it is drift.
    assert spec.spec_hash != spec_of().spec_hash


def test_confinement_and_a_read_only_root() -> None:
    spec = spec_of(resources={"read_only_root": True, "pids": 512, "cpus": 1.5})
    task = render_service(spec, suffix="a1", key=KEY).body["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Privileges"] == {"NoNewPrivileges": True}
    assert container["Mounts"] == [
        {
            "Type": "tmpfs",
            "Target": "/tmp",
            "TmpfsOptions": {"SizeBytes": 64 * 1024**2, "Mode": 0o1777},
        }
    ]
    assert task["Resources"]["Limits"] == {
        "MemoryBytes": spec.memory_bytes,
        "NanoCPUs": 1_500_000_000,
        "Pids": 512,
    }
    assert task["LogDriver"]["Name"] == "json-file"
    with pytest.raises(SpecError, match="tmpfs size"):
        tmpfs_options("size=lots", where="x")


def test_start_stop_and_restart_are_spec_changes() -> None:
    body = render_service(spec_of(), suffix="a1", key=KEY).body
    assert scaled(body, 1)["Mode"]["Replicated"]["Replicas"] == 1
    stopped = scaled(body, 0, stop_grace=12)
    assert stopped["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 12_000_000_000
    again = forced(forced(body))
    assert again["TaskTemplate"]["ForceUpdate"] == 2
    assert again["Mode"]["Replicated"]["Replicas"] == 1
    assert body["TaskTemplate"]["ForceUpdate"] == 0  # the input is left as it was


def test_secret_ids_are_filled_in_by_name() -> None:
    plan = render_service(spec_of(), suffix="a1", key=KEY)
    ids = {s.name: f"id-{i}" for i, s in enumerate(plan.secrets)}
    refs = with_secret_ids(plan.body, ids)["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert sorted(r["SecretID"] for r in refs) == sorted(ids.values())
    with pytest.raises(SpecError, match="was not created"):
        with_secret_ids(plan.body, {})


# -- the manager's replies ------------------------------------------------------------------


def service(replicas: int = 1) -> dict[str, Any]:
    return {
        "ID": "svc1",
        "Spec": {
            "Name": "ibfleet-prod-paper-1-a1",
            "Labels": {
                LABEL_FLEET: "prod",
                LABEL_GATEWAY: "paper-1",
                LABEL_NAME: "ibfleet-prod-paper-1",
            },
            "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": {"Image": "img:1@sha256:abc"}},
        },
    }


def task(
    tid: str,
    state: str,
    *,
    desired: str = "running",
    created: str = "2026-12-01T12:00:00Z",
    node: str = "n1",
    code: int | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Timestamp": created}
    if code is not None:
        status["ContainerStatus"] = {"ExitCode": code}
    return {
        "ID": tid,
        "ServiceID": "svc1",
        "NodeID": node,
        "CreatedAt": created,
        "DesiredState": desired,
        "Status": status,
    }


@pytest.mark.parametrize(
    ("tasks", "replicas", "down", "state"),
    [
        ([], 0, set(), ContainerState.CREATED),
        ([], 1, set(), ContainerState.RESTARTING),
        ([task("t1", "running")], 1, set(), ContainerState.RUNNING),
        ([task("t1", "running")], 1, {"n1"}, ContainerState.EXITED),
        ([task("t1", "pending")], 1, set(), ContainerState.RESTARTING),
        ([task("t1", "failed", desired="shutdown", code=1)], 1, set(), ContainerState.EXITED),
        ([task("t1", "shutdown", desired="shutdown")], 0, set(), ContainerState.EXITED),
        # A stop-first update's new task waits as ``ready`` until the old one stopped: it is
        # on its way, not a dead gateway (a start then would force a second update).
        ([task("t1", "ready", desired="ready")], 1, set(), ContainerState.RESTARTING),
    ],
)
def test_a_service_is_seen_as_its_current_task(
    tasks: list[dict[str, Any]], replicas: int, down: set[str], state: ContainerState
) -> None:
    seen = observe_service(service(replicas), tasks, down_nodes=frozenset(down))
    assert seen.state is state
    assert seen.id == "svc1" and seen.name == "ibfleet-prod-paper-1"
    assert seen.gateway == "paper-1" and seen.image == "img:1"


def test_the_newest_task_is_the_current_one() -> None:
    tasks = [
        task("new", "running", created="2026-12-01T12:00:05.5Z"),
        task("old", "failed", desired="shutdown", created="2026-12-01T12:00:01.25Z", code=137),
    ]
    seen = observe_service(service(), tasks)
    assert seen.state is ContainerState.RUNNING
    assert seen.started_at == datetime(2026, 12, 1, 12, 0, 5, 500000, tzinfo=UTC)
    ended = observe_service(service(), [tasks[1]])
    assert ended.exit_code == 137 and ended.finished_at is not None


def test_a_task_holds_the_username_until_it_can_no_longer_run() -> None:
    assert task_may_run(task("t1", "running"), frozenset())
    assert task_may_run(task("t1", "running", desired="shutdown"), frozenset())  # still stopping
    assert task_may_run(task("t1", "starting"), frozenset())
    assert task_may_run(task("t1", "ready", desired="ready"), frozenset())
    assert not task_may_run(task("t1", "pending", desired="shutdown"), frozenset())
    assert not task_may_run(task("t1", "shutdown", desired="shutdown"), frozenset())
    assert not task_may_run(task("t1", "running"), frozenset({"n1"}))  # its node is gone


def test_task_address_on_the_fleet_network() -> None:
    item = {
        "NetworksAttachments": [
            {"Network": {"ID": "ing", "Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
            {"Network": {"ID": "n9", "Spec": {"Name": "ibfleet"}}, "Addresses": ["10.0.9.7/24"]},
        ]
    }
    assert task_address(item, "ibfleet") == "10.0.9.7"
    assert task_address(item, "n9") == "10.0.9.7"
    assert task_address(item, "other") is None


NOW = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)


def view(task_id: str | None, live: bool, codes: tuple[tuple[str, int], ...] = ()) -> TaskView:
    return TaskView("svc1", "ibfleet-prod-paper-1", "paper-1", task_id, live, NOW, codes)


def test_events_between_snapshots() -> None:
    kinds = lambda events: [(e.kind, e.exit_code) for e in events]  # noqa: E731
    assert kinds(task_events({}, {"svc1": view("t1", True)}, now=NOW)) == [(EventKind.START, None)]
    assert kinds(task_events({"svc1": view("t1", True)}, {"svc1": view("t1", True)}, now=NOW)) == []
    died = task_events(
        {"svc1": view("t1", True)}, {"svc1": view("t1", False, (("t1", 1),))}, now=NOW
    )
    assert kinds(died) == [(EventKind.DIE, 1)]
    replaced = task_events(
        {"svc1": view("t1", True)}, {"svc1": view("t2", True, (("t1", 0),))}, now=NOW
    )
    assert kinds(replaced) == [(EventKind.DIE, 0), (EventKind.START, None)]
    gone = task_events({"svc1": view("t1", True)}, {}, now=NOW)
    assert kinds(gone) == [(EventKind.DIE, None), (EventKind.DESTROY, None)]
    assert all(e.container_id == "svc1" and e.gateway == "paper-1" for e in replaced)


def test_a_task_that_started_and_ended_between_two_polls_still_dies() -> None:
    kinds = lambda events: [(e.kind, e.exit_code) for e in events]  # noqa: E731
    never_seen = task_events(
        {"svc1": view(None, False)}, {"svc1": view("t1", False, (("t1", 127),))}, now=NOW
    )
    assert kinds(never_seen) == [(EventKind.DIE, 127)]
    again = task_events(
        {"svc1": view("t1", False, (("t1", 1),))},
        {"svc1": view("t2", False, (("t1", 1), ("t2", 1)))},
        now=NOW,
    )
    assert kinds(again) == [(EventKind.DIE, 1)]  # the retry died too: once, with its code
    quiet = task_events(
        {"svc1": view("t1", False, (("t1", 1),))},
        {"svc1": view("t1", False, (("t1", 1),))},
        now=NOW,
    )
    assert quiet == []  # an old end is not a new one


def test_log_lines_lose_their_details_and_other_tasks_lines() -> None:
    stamp = "2026-12-01T12:00:01.000000000Z"
    details = (
        "com.docker.swarm.node.id=n1,com.docker.swarm.service.id=svc1,com.docker.swarm.task.id=t2"
    )
    assert log_line(f"{stamp} {details} IBC: Login has completed", task_id="t2") == (
        f"{stamp} IBC: Login has completed"
    )
    assert log_line(f"{stamp} {details} old line", task_id="t1") is None
    assert log_line(f"{stamp} plain text=1 line", task_id="t2") == f"{stamp} plain text=1 line"
