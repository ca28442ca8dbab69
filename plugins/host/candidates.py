"""The failover rule: which of its gateways a strategy may move to. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from plugins.host.settings import GatewayEndpoint

__all__ = ["candidates"]


def candidates(
    gateways: Sequence[str],
    endpoints: Mapping[str, GatewayEndpoint],
    *,
    exclude: str | None,
    account: str | None,
    usable: Callable[[str], bool],
) -> list[str]:
    """The gateways a strategy may move to, in its own order of preference."""
    out = []
    for name in gateways:
        if name == exclude or name not in endpoints:
            continue
        endpoint = endpoints[name]
        if account and endpoint.account and endpoint.account != account:
            continue  # another account's gateway cannot see, nor cancel, our orders
        if not usable(name):
            continue
        out.append(name)
    return out
