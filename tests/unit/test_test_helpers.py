"""The tests' own helpers: the two wait helpers and ``free_port``; a helper that cannot fail
would let every test that leans on it pass for the wrong reason."""

from __future__ import annotations

import itertools
import socket

import pytest

from tests.net import free_port
from tests.waiting import until, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 2 and "ready", 1.0, step=0.001) == "ready"


def test_wait_until_fails_at_its_deadline_naming_what_it_awaited() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the moon"):
        wait_until(lambda: None, 0.05, what="the moon", step=0.01)


async def test_until_returns_the_first_truthy_value_and_awaits_a_coroutine() -> None:
    calls = itertools.count()

    async def check() -> str | None:
        return "ready" if next(calls) >= 2 else None

    assert await until(check, 1.0, step=0.001) == "ready"


async def test_until_fails_at_its_deadline_naming_what_it_awaited() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the moon"):
        await until(lambda: 0, 0.05, what="the moon")


async def test_until_without_a_name_names_the_condition() -> None:
    def nothing_yet() -> None:
        return None

    with pytest.raises(AssertionError, match=r"waiting for .*nothing_yet"):
        await until(nothing_yet, 0.02)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]"])
def test_free_port_is_one_a_listener_can_bind_at_that_address(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    port = free_port(host)
    assert 0 < port < 65536
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), port))
        sock.listen(1)
