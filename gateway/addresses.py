"""Listen addresses: the one rule for what a bind address means, for IPv4 and IPv6 alike.

A published API port, the supervisor's HTTP API and the simulator's control API each listen on
an address from the fleet file. Three questions are asked of it, and answered here only:
whether it is public (every interface: ``0.0.0.0`` or ``::``), whether only this host reaches
it (loopback), and which address a client on this host dials to reach it (an "every interface"
bind is reached on the loopback address of its own family). Addresses may be written bare or
bracketed (``::1``, ``[::1]``); host names other than ``localhost`` are taken as they are.
"""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def parse(value: str | IpAddress) -> IpAddress:
    """The IP address ``value`` names, bare or in brackets; ValueError naming it otherwise."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    text = value.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _ip(value: str | IpAddress) -> IpAddress | None:
    """The address, or None for a host name (or the empty host, meaning every interface)."""
    try:
        return parse(value)
    except ValueError:
        return None


def _meaning(address: IpAddress) -> IpAddress:
    """What an address stands for: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped if mapped is not None else address


def is_public(bind: str | IpAddress) -> bool:
    """Whether a listener on ``bind`` answers on every interface (``0.0.0.0``, ``::`` or "")."""
    if isinstance(bind, str) and not bind.strip():
        return True
    address = _ip(bind)
    return address is not None and _meaning(address).is_unspecified


def is_loopback(host: str | IpAddress) -> bool:
    """Whether only this host reaches a listener on ``host`` (127.0.0.0/8, ``::1``, localhost)."""
    address = _ip(host)
    if address is None:
        return isinstance(host, str) and host.strip().lower() == "localhost"
    return _meaning(address).is_loopback


def local_host(bind: str | IpAddress) -> str:
    """The address a client on this host dials to reach a listener on ``bind``.

    Every interface is reached on the loopback of the bind's own family (an IPv6-only ``::``
    listener does not answer on 127.0.0.1); any other address, or a host name, as it is.
    """
    address = _ip(bind)
    if is_public(bind):
        v6 = address is not None and isinstance(_meaning(address), ipaddress.IPv6Address)
        return str(LOOPBACK_V6 if v6 else LOOPBACK_V4)
    return str(address) if address is not None else str(bind).strip()


def url_host(host: str | IpAddress) -> str:
    """``host`` as it goes into a URL: an IPv6 address in brackets, anything else as it is."""
    address = _ip(host)
    if isinstance(address, ipaddress.IPv6Address):
        return f"[{address}]"
    return str(address) if address is not None else str(host).strip()


def local_url(bind: str | IpAddress, port: int, *, scheme: str = "http") -> str:
    """The URL a client on this host uses for a ``scheme`` listener on ``bind``:``port``."""
    return f"{scheme}://{url_host(local_host(bind))}:{port}"
