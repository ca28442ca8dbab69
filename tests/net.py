"""Ports for tests: the one ``free_port`` every test and harness asks for a listener's port."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (an IPv4 or an IPv6 address).

    The port is only free when asked: a test binds it soon after, and the kernel's ephemeral
    range makes a clash with another test's port unlikely, not impossible.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        port: int = sock.getsockname()[1]
    return port
