"""The reason every closed gate gives the strategies, a stall with every API symptom at once,
the status record's newer fields through the journal and its errors, and how durations read
(cases the mutation check, benchmarks/mutation.sh, found untested)."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from gateway.authlog import RelaunchKind
from supervisor import lifecycle as lc
from supervisor.lifecycle.alerts import seconds
from supervisor.lifecycle.reasons import SLOW, STALL_REASONS
from tests.unit.lifecycle.driver import POLICY, T0, Driver

BASE = lc.GatewayStatus.initial(gateway="paper-a", username="fdemo", now=T0)


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        (
            {"state": lc.State.RESTARTING, "planned_until": T0 + timedelta(minutes=3)},
            lc.OutageKind.PLANNED_RESTART,
        ),
        ({"state": lc.State.RESET_WINDOW, "window_until": T0}, lc.OutageKind.RESET_WINDOW),
        (
            {"state": lc.State.DEGRADED, "degraded_reasons": frozenset({SLOW})},
            lc.OutageKind.STALLED,
        ),
        ({"state": lc.State.BACKOFF}, lc.OutageKind.LOST),
    ],
    ids=["planned", "reset_window", "stalled", "lost"],
)
def test_a_closed_gate_gives_the_strategies_the_statuss_reason(
    changes: dict[str, object], kind: lc.OutageKind
) -> None:
    status = dataclasses.replace(BASE, reason="why it is down", **changes)
    gate = lc.gate_of(status, now=T0, policy=POLICY)
    assert (gate.open, gate.kind, gate.reason) == (False, kind, "why it is down")


def test_a_session_with_every_api_symptom_at_once_is_stalled_not_lost() -> None:
    every = STALL_REASONS | {SLOW}
    status = dataclasses.replace(BASE, state=lc.State.DEGRADED, degraded_reasons=every)
    assert lc.gate_of(status, now=T0, policy=POLICY).kind is lc.OutageKind.STALLED


def test_an_expected_relaunch_survives_the_journal(ready: Driver) -> None:
    ready.send(lc.RestartScheduled())
    assert ready.status.expected_relaunch is RelaunchKind.RESTART_COMMAND
    record = json.loads(json.dumps(ready.status.to_record()))
    assert record["expected_relaunch"] == RelaunchKind.RESTART_COMMAND.value
    assert lc.GatewayStatus.from_record(record) == ready.status


def test_a_record_without_the_gate_fields_restores_a_closed_lost_gate(ready: Driver) -> None:
    record = ready.status.to_record()
    record.pop("gate_open")
    record.pop("gate_kind")
    restored = lc.GatewayStatus.from_record(record)
    assert restored.gate_open is False
    assert restored.gate_kind is lc.OutageKind.LOST


def test_record_times_are_written_and_read_in_utc(ready: Driver) -> None:
    record = ready.status.to_record()
    assert record["since"].endswith("+00:00")
    assert all(t.endswith("+00:00") for t in record["login_attempts"])
    record["since"] = "2026-03-02T14:00:00+02:00"
    restored = lc.GatewayStatus.from_record(record)
    assert restored.since.utcoffset() == timedelta(0)
    assert restored.since == T0


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("reason", 3, r"gateway status 'paper-a'\.reason: expected str, got 3"),
        ("logged_in", "yes", r"'paper-a'\.logged_in: expected bool, got 'yes'"),
        ("failed_logins", True, r"'paper-a'\.failed_logins: expected int, got True"),
        ("since", 5, r"'paper-a'\.since: expected an ISO-8601 timestamp, got 5"),
        ("since", "soon", r"'paper-a'\.since: 'soon' is not an ISO-8601 timestamp"),
        ("gate_open", "no", r"'paper-a'\.gate_open: expected bool, got 'no'"),
        ("suspect", 1, r"'paper-a'\.suspect: expected a string or null, got 1"),
        ("suspect_detail", None, r"'paper-a'\.suspect_detail: expected str, got None"),
        ("expected_relaunch", "nap", r"'paper-a'\.expected_relaunch: 'nap' is not one of "),
        ("gate_kind", "nap", r"'paper-a'\.gate_kind: 'nap' is not one of "),
        ("restart_kind", "nap", r"'paper-a'\.restart_kind: 'nap' is not one of soft, "),
        ("restarts", "x", r"'paper-a'\.restarts: expected list, got 'x'"),
        ("open_alerts", [1], r"'paper-a'\.open_alerts: expected a list of strings, got \[1\]"),
    ],
)
def test_a_bad_record_field_is_refused_naming_the_gateway_and_the_field(
    field: str, value: object, says: str
) -> None:
    record = BASE.to_record()
    record[field] = value
    with pytest.raises(ValueError, match=says):
        lc.GatewayStatus.from_record(record)


def test_a_record_without_its_gateway_says_so() -> None:
    record = BASE.to_record()
    record.pop("gateway")
    with pytest.raises(ValueError, match=r"gateway status '\?'\.gateway: expected str"):
        lc.GatewayStatus.from_record(record)


@pytest.mark.parametrize(
    ("value", "reads"),
    [(90, "90 s"), (60, "60 s"), (119, "119 s"), (120, "2 min"), (180, "3 min"), (150, "150 s")],
)
def test_a_duration_reads_in_minutes_only_when_whole_and_at_least_two(
    value: int, reads: str
) -> None:
    assert seconds(timedelta(seconds=value)) == reads
