"""The engine's replies read as runtime values: timestamps to the nanosecond, inspect, events."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.docker_replies import event_from, observe, observe_summary, parse_docker_time_ns
from gateway.runtime import ContainerState, EventKind
from gateway.spec import LABEL_GATEWAY


def test_docker_times_keep_their_nanoseconds_and_offsets() -> None:
    assert parse_docker_time_ns("1970-01-01T00:00:01.000000007Z") == 1_000_000_007
    assert parse_docker_time_ns("1970-01-01T01:00:01.5+01:00") == 1_500_000_000


def test_an_unset_or_unreadable_time_is_none() -> None:
    assert parse_docker_time_ns("0001-01-01T00:00:00Z") is None
    assert parse_docker_time_ns("") is None
    assert parse_docker_time_ns("yesterday") is None


def test_an_inspect_reads_as_an_observed_container() -> None:
    found = observe(
        {
            "Id": "abc",
            "Name": "/ibfleet-f-gw",
            "State": {
                "Status": "exited",
                "StartedAt": "2024-03-01T10:00:00.25Z",
                "FinishedAt": "2024-03-01T11:00:00Z",
                "ExitCode": 137,
                "OOMKilled": True,
            },
            "Config": {"Labels": {LABEL_GATEWAY: "gw"}, "Image": "img"},
        }
    )
    assert (found.name, found.state, found.exit_code, found.oom_killed) == (
        "ibfleet-f-gw",
        ContainerState.EXITED,
        137,
        True,
    )
    assert found.started_at == datetime(2024, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)


def test_a_listing_entry_reads_without_times() -> None:
    found = observe_summary({"Id": "abc", "Names": ["/x"], "State": "running", "Image": "img"})
    assert (found.name, found.state, found.started_at) == ("x", ContainerState.RUNNING, None)


def test_a_die_event_carries_its_exit_code_and_gateway() -> None:
    event = event_from(
        {
            "Action": "die",
            "timeNano": 1_000_000_000,
            "Actor": {"ID": "abc", "Attributes": {"exitCode": "1", LABEL_GATEWAY: "gw"}},
        }
    )
    assert event is not None
    assert (event.kind, event.exit_code, event.gateway) == (EventKind.DIE, 1, "gw")
    assert event.at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_events_the_runtime_does_not_follow_are_dropped() -> None:
    assert event_from({"Action": "exec_start", "Actor": {"ID": "abc"}}) is None
