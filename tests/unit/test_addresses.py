"""The bind rule: whether a listen address is public or loopback-only, and what a local client
dials to reach it, for IPv4 and IPv6 alike."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from gateway import addresses
from gateway.config import GatewayConfig
from supervisor.fleet_settings import ApiSettings
from tests.unit import fleetfiles

# address: (public, loopback-only, what a local client dials, as it goes into a URL)
CASES = {
    "0.0.0.0": (True, False, "127.0.0.1", "0.0.0.0"),
    "::": (True, False, "::1", "[::]"),
    "[::]": (True, False, "::1", "[::]"),
    "::ffff:0.0.0.0": (True, False, "127.0.0.1", "[::ffff:0:0]"),
    "": (True, False, "127.0.0.1", ""),
    "127.0.0.1": (False, True, "127.0.0.1", "127.0.0.1"),
    "127.0.0.5": (False, True, "127.0.0.5", "127.0.0.5"),
    "::1": (False, True, "::1", "[::1]"),
    "[::1]": (False, True, "::1", "[::1]"),
    "10.0.0.5": (False, False, "10.0.0.5", "10.0.0.5"),
    "fd00::5": (False, False, "fd00::5", "[fd00::5]"),
    "localhost": (False, True, "localhost", "localhost"),
    "ops.example": (False, False, "ops.example", "ops.example"),
}


@pytest.mark.parametrize(("bind", "expected"), list(CASES.items()), ids=lambda v: repr(v))
def test_each_address_is_public_loopback_and_dialled_as_the_rule_says(
    bind: str, expected: tuple[bool, bool, str, str]
) -> None:
    public, loopback, dialled, in_url = expected
    assert addresses.is_public(bind) is public
    assert addresses.is_loopback(bind) is loopback
    assert addresses.local_host(bind) == dialled
    assert addresses.url_host(bind) == in_url


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "::1", "10.0.0.5", "fd00::5"])
def test_an_ip_address_object_means_what_its_text_means(bind: str) -> None:
    address = ipaddress.ip_address(bind)
    assert addresses.is_public(address) is addresses.is_public(bind)
    assert addresses.is_loopback(address) is addresses.is_loopback(bind)
    assert addresses.local_host(address) == addresses.local_host(bind)


def test_every_interface_is_reached_on_the_loopback_of_its_own_family() -> None:
    assert addresses.local_url("0.0.0.0", 8710) == "http://127.0.0.1:8710"
    assert addresses.local_url("::", 8710) == "http://[::1]:8710"
    assert addresses.local_url("[::]", 8710) == "http://[::1]:8710"
    assert addresses.local_url("10.0.0.5", 4002) == "http://10.0.0.5:4002"


def test_a_non_address_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'nonsense' is not an IPv4 or IPv6 address"):
        addresses.parse("nonsense")


def gateway(**over: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(fleetfiles.gateway("paper-a", **over))


@pytest.mark.parametrize(
    ("bind", "public", "dialled"),
    [
        ("127.0.0.1", False, "127.0.0.1"),
        ("0.0.0.0", True, "127.0.0.1"),
        ("::", True, "::1"),
        ("[::]", True, "::1"),
        ("[::1]", False, "::1"),
        ("fd00::5", False, "fd00::5"),
    ],
)
def test_a_gateways_bind_says_whether_it_is_public_and_where_local_clients_dial(
    bind: str, public: bool, dialled: str
) -> None:
    gw = gateway(bind=bind)
    assert gw.is_public_bind is public
    assert gw.local_host == dialled


def test_a_gateways_bind_that_is_no_address_is_refused_naming_the_value() -> None:
    with pytest.raises(ValidationError, match=r"'eth0' is not an IPv4 or IPv6 address"):
        gateway(bind="eth0")


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:8710", True),
        ("[::1]:8710", True),
        ("localhost:8710", True),
        ("0.0.0.0:8710", False),
        ("[::]:8710", False),
        ("10.0.0.5:8710", False),
    ],
)
def test_the_http_apis_listen_address_is_loopback_only_by_the_same_rule(
    listen: str, loopback: bool
) -> None:
    assert ApiSettings(listen=listen).is_loopback is loopback
