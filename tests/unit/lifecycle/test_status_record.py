"""The status record the journal keeps: round trips, older records, errors that name the field."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    T0,
    Driver,
)


def test_status_round_trips_through_json(ready: Driver) -> None:
    ready.send(lc.IbLinkLost(), lc.FarmBroken("usfarm"), lc.ContainerDied(exit_code=1))
    ready.send(lc.WeeklyReauthDue(at=T0 + timedelta(days=1)))
    record = json.loads(json.dumps(ready.status.to_record()))
    assert lc.GatewayStatus.from_record(record) == ready.status
    names = {f.name for f in dataclasses.fields(lc.GatewayStatus)}
    assert set(record) == names


def test_status_record_errors_name_the_field(ready: Driver) -> None:
    record = ready.status.to_record()
    record["state"] = "sleeping"
    with pytest.raises(ValueError, match=r"'paper-a'.state: 'sleeping' is not one of"):
        lc.GatewayStatus.from_record(record)
    record = ready.status.to_record()
    record["restarts"] = ["2026-01-01T00:00:00"]
    with pytest.raises(ValueError, match=r"restarts\[0\]: .* has no UTC offset"):
        lc.GatewayStatus.from_record(record)


def test_status_without_the_newer_fields_is_still_restored(ready: Driver) -> None:
    record = ready.status.to_record()
    for name in ("planned_until", "relaunch_expected_until", "window_until", "gate_open"):
        record.pop(name)
    record.pop("expected_relaunch")
    record.pop("gate_kind")
    restored = lc.GatewayStatus.from_record(record)
    assert restored.state is lc.State.API_READY
