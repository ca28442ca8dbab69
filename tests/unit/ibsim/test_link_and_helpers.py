"""Broker-link value encoding and restart scheduling (no sockets); bars: test_history.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest

from ibsim.auth import LoginKind
from ibsim.broker import (
    BrokerOrder,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderState,
    StatusChange,
)
from ibsim.contracts import default_symbols
from ibsim.link import LinkError, from_wire, to_wire
from ibsim.port import Fault, FaultEvent, LoginOutcome
from ibsim.wallclock import next_daily as next_restart


def roundtrip(value):
    return from_wire(json.loads(json.dumps(to_wire(value))))


def test_order_event_survives_the_link():
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    order = BrokerOrder(
        perm_id=5,
        gateway="gw",
        client_id=1,
        order_id=2,
        account="DU1",
        contract=default_symbols()[0],
        action="BUY",
        total_quantity=3.0,
        order_type="MKT",
        lmt_price=None,
        aux_price=None,
        tif="DAY",
        oca_group="",
        order_ref="r",
        parent_id=0,
        parent_perm_id=0,
        transmit=True,
        status=OrderState.FILLED,
        created_at=now,
        history=[StatusChange(at=now, status="Filled")],
    )
    event = OrderEvent(kind=OrderEventKind.STATUS, order=order)
    assert roundtrip(event) == event


def test_login_outcome_keeps_tuples_and_enums():
    outcome = LoginOutcome(kind=LoginKind.LOGGED_IN, username="u", accounts=("DU1", "DU2"))
    assert roundtrip(outcome) == outcome
    fault = FaultEvent(gateway="g", fault=Fault.SLOW, active=True, value=0.5)
    assert roundtrip(fault) == fault
    request = OrderRequest(
        order_id=1,
        con_id=2,
        symbol="A",
        sec_type="STK",
        exchange="SMART",
        currency="USD",
        action="BUY",
        total_quantity=1,
        order_type="MKT",
    )
    assert roundtrip({"request": request}) == {"request": request}


def test_unknown_tag_is_a_link_error():
    with pytest.raises(LinkError, match="Nope"):
        from_wire({"__t": "Nope"})


def test_next_restart_is_strictly_in_the_future():
    now = datetime(2026, 11, 23, 23, 50, tzinfo=UTC)
    assert next_restart(now, time(23, 45)) == datetime(2026, 11, 24, 23, 45, tzinfo=UTC)
    assert next_restart(now, time(23, 55)) == datetime(2026, 11, 23, 23, 55, tzinfo=UTC)
