"""The supervisor's order gate reaches the host's one entry point, with the lifecycle's kind."""

from __future__ import annotations

from datetime import timedelta

from gateway.outage import Gate, OutageKind
from supervisor.strategy_wiring import gate_hook


class RecordingHost:
    def __init__(self) -> None:
        self.gates: list[tuple[str, Gate]] = []

    def on_gate(self, name: str, gate: Gate) -> None:
        self.gates.append((name, gate))


def test_a_gate_with_its_kind_is_passed_on_unchanged() -> None:
    host = RecordingHost()
    hook = gate_hook(host, reason_of=lambda gw: "unused")
    planned = Gate(
        open=False, kind=OutageKind.PLANNED_RESTART, reason="daily", bound=timedelta(minutes=5)
    )
    hook("gw-a", planned)
    hook("gw-a", Gate(open=True))
    assert host.gates == [("gw-a", planned), ("gw-a", Gate(open=True))]


def test_a_bare_flag_is_open_or_lost_with_the_lifecycle_reason_never_a_planned_kind() -> None:
    host = RecordingHost()
    hook = gate_hook(host, reason_of=lambda gw: f"{gw}: IB reset window: 1100")
    hook("gw-b", False)
    hook("gw-b", True)
    assert host.gates == [
        ("gw-b", Gate(open=False, kind=OutageKind.LOST, reason="gw-b: IB reset window: 1100")),
        ("gw-b", Gate(open=True)),
    ]
