"""Every reply layout decoded by the real clients' own decoders at each server version.

The decoders are the field-order specification: a wrong field count makes a real request hang
silently, so each encoder is checked against ib_async's and ib_insync's Decoder directly.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ibsim import messages
from ibsim.broker import BrokerOrder, Execution, OrderState, WhatIf
from ibsim.codec import encode_fields, split_fields
from ibsim.contracts import default_symbols

VERSIONS = {
    "ib_async": (157, 163, 164, 166, 170, 176, 177, 178),
    "ib_insync": (157, 163, 164, 166, 170, 176),
}
CASES = [(lib, v) for lib, versions in VERSIONS.items() for v in versions]
SPEC = default_symbols()[0]
FUT = default_symbols()[-1]


class Recorder:
    """A hand-written wrapper fake: records every callback the decoder makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.defaultTimezone = UTC
        self.ib = type("IBStub", (), {"TimezoneTWS": ""})()

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


def decode(lib: str, version: int, fields: list[object]) -> list[tuple[str, tuple[Any, ...]]]:
    decoder_mod = importlib.import_module(f"{lib}.decoder")
    recorder = Recorder()
    decoder = decoder_mod.Decoder(recorder, version)
    wire = split_fields(encode_fields(fields))
    handler = decoder.handlers[int(wire[0])]
    handler(wire)  # called directly: interpret() would swallow a layout error
    return recorder.calls


def order(**kw: Any) -> BrokerOrder:
    base = dict(
        perm_id=1000001,
        gateway="gw1",
        client_id=3,
        order_id=7,
        account="DU1",
        contract=SPEC,
        action="BUY",
        total_quantity=10.0,
        order_type="LMT",
        lmt_price=189.5,
        aux_price=None,
        tif="DAY",
        oca_group="g1",
        order_ref="ref-1",
        parent_id=0,
        parent_perm_id=0,
        transmit=True,
        status=OrderState.SUBMITTED,
        created_at=datetime(2026, 11, 23, tzinfo=UTC),
    )
    base.update(kw)
    return BrokerOrder(**base)


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_error_layout(lib, version):
    ((name, args),) = decode(
        lib, version, messages.error(5, 202, "Order Canceled", server_version=version)
    )
    assert name == "error" and args[:3] == (5, 202, "Order Canceled")


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_open_order_layout(lib, version):
    ((name, args),) = decode(lib, version, messages.open_order(order(), server_version=version))
    order_id, contract, decoded, state = args
    assert name == "openOrder" and order_id == 7
    assert (decoded.permId, decoded.clientId, decoded.orderRef, decoded.lmtPrice) == (
        1000001,
        3,
        "ref-1",
        189.5,
    )
    assert (decoded.ocaGroup, contract.conId, state.status) == ("g1", SPEC.con_id, "Submitted")


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_what_if_layout(lib, version):
    what_if = WhatIf(1.0, 2.0, 3.0, 4750.0, 3800.0, -1.0, 5.0, 6.0, 7.0, 1.0)
    fields = messages.open_order(order(perm_id=0), server_version=version, what_if=what_if)
    ((_, args),) = decode(lib, version, fields)
    assert args[2].whatIf and float(args[3].initMarginChange) == 4750.0


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_completed_order_layout(lib, version):
    done = order(
        status=OrderState.FILLED, filled=10.0, completed_at=datetime(2026, 11, 23, tzinfo=UTC)
    )
    ((name, args),) = decode(lib, version, messages.completed_order(done, server_version=version))
    contract, decoded, state = args
    assert name == "completedOrder" and decoded.permId == 1000001 and decoded.orderRef == "ref-1"
    assert state.status == "Filled" and contract.symbol == "AAPL"


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_exec_details_layout(lib, version):
    ex = Execution(
        exec_id="e1",
        perm_id=1000001,
        order_id=7,
        client_id=3,
        gateway="gw1",
        account="DU1",
        con_id=SPEC.con_id,
        side="BOT",
        shares=10.0,
        price=190.0,
        cum_qty=10.0,
        avg_price=190.0,
        time=datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
        order_ref="ref-1",
        commission=1.0,
        currency="USD",
    )
    ((name, args),) = decode(
        lib, version, messages.exec_details(-1, ex, SPEC, server_version=version)
    )
    req_id, contract, execution = args
    assert name == "execDetails" and req_id == -1 and contract.conId == SPEC.con_id
    assert (execution.permId, execution.orderRef, execution.shares) == (1000001, "ref-1", 10.0)
    ((cname, cargs),) = decode(lib, version, messages.commission_report(ex))
    assert cname == "commissionReport" and cargs[0].commission == 1.0


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_contract_details_layout(lib, version):
    ((name, args),) = decode(
        lib, version, messages.contract_details(9, FUT, server_version=version)
    )
    req_id, details = args
    assert name == "contractDetails" and req_id == 9
    assert details.contract.lastTradeDateOrContractMonth == "20261218"
    assert details.contract.multiplier == "50" and details.longName == "E-mini S&P 500"


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_position_portfolio_and_bars(lib, version):
    ((name, args),) = decode(lib, version, messages.position("DU1", SPEC, 10.0, 190.0))
    assert name == "position" and args[0] == "DU1" and args[2] == 10.0
    fields = messages.portfolio_value("DU1", SPEC, 10.0, 191.0, 190.0, 0.0)
    ((name, args),) = decode(lib, version, fields)
    assert name == "updatePortfolio" and args[1:3] == (10.0, 191.0)


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_open_and_completed_order_carry_trail_rth_trigger_and_oca_type(lib, version):
    trail = order(
        order_type="TRAIL",
        lmt_price=None,
        aux_price=2.0,
        trail_stop_price=188.0,
        trailing_percent=None,
        outside_rth=True,
        trigger_method=8,
        oca_type=1,
    )
    ((_, args),) = decode(lib, version, messages.open_order(trail, server_version=version))
    decoded = args[2]
    assert (decoded.trailStopPrice, decoded.outsideRth, decoded.triggerMethod) == (188.0, 1, 8)
    assert decoded.ocaType == 1 and decoded.auxPrice == 2.0
    done = replace(
        trail, status=OrderState.CANCELLED, completed_at=datetime(2026, 11, 23, tzinfo=UTC)
    )
    ((_, args),) = decode(lib, version, messages.completed_order(done, server_version=version))
    assert (args[1].trailStopPrice, args[1].triggerMethod, args[1].ocaType) == (188.0, 8, 1)


@pytest.mark.parametrize(("lib", "version"), CASES)
def test_what_if_carries_min_and_max_commission(lib, version):
    what_if = WhatIf(
        1.0, 2.0, 3.0, 4.0, 5.0, -1.0, 5.0, 7.0, 2.0, 1.5, min_commission=1.0, max_commission=2.5
    )
    fields = messages.open_order(order(perm_id=0), server_version=version, what_if=what_if)
    ((_, args),) = decode(lib, version, fields)
    state = args[3]
    assert (state.commission, state.minCommission, state.maxCommission) == (1.5, 1.0, 2.5)
    assert state.commissionCurrency == "USD"
