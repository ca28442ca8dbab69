"""Connecting a TWS API client to a gateway, and error 326 (client id already in use).

The one place that tells a refused client id from any other failed connect, used by the
health probe's session and the strategy host's session alike, and the one rotation rule for a
leased id: rotate once, try once more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway import codes

__all__ = ["ClientIdInUse", "connect_ib", "connect_rotating"]

T = TypeVar("T")


class ClientIdInUse(ConnectionError):
    """The gateway refused the client id with error 326."""


async def connect_ib(
    ib: Any,
    *,
    host: str,
    port: int,
    client_id: int,
    timeout: float,
    readonly: bool = False,
    account: str = "",
) -> list[str]:
    """Connect an ``ib_async.IB`` and return its managed accounts.

    Raises :class:`ClientIdInUse` when the gateway answered 326 during the handshake, else a
    ``ConnectionError`` naming the address; a failed client is disconnected before raising.
    ``ib`` is typed loosely so that ``gateway`` need not import the client library.
    """
    refused = False

    def on_error(req_id: int, code: int, message: str, contract: object = None) -> None:
        nonlocal refused
        if code == codes.ApiCode.CLIENT_ID_IN_USE:
            refused = True

    ib.errorEvent += on_error
    try:
        try:
            await ib.connectAsync(
                host, port, clientId=client_id, timeout=timeout, readonly=readonly, account=account
            )
        except (TimeoutError, ConnectionError, OSError) as exc:
            ib.disconnect()
            if refused:
                raise ClientIdInUse(f"client id {client_id} is in use at {host}:{port}") from None
            raise ConnectionError(
                f"cannot connect to {host}:{port} with client id {client_id}: "
                f"{type(exc).__name__} {exc}".rstrip()
            ) from None
        if refused:
            ib.disconnect()
            raise ClientIdInUse(f"client id {client_id} is in use at {host}:{port}")
    finally:
        ib.errorEvent -= on_error
    return list(ib.managedAccounts())


async def connect_rotating(
    connect: Callable[[int], Awaitable[T]],
    *,
    client_id: int,
    rotate: Callable[[], int] | None,
) -> tuple[T, int]:
    """``connect(client_id)``; on 326, with a ``rotate`` given, once more with the id it gives.

    Returns what ``connect`` returned and the client id that worked. Without ``rotate`` (a
    configured, unleased id) a 326 is raised as it is: another id would be a guess.
    """
    try:
        return await connect(client_id), client_id
    except ClientIdInUse:
        if rotate is None:
            raise
    client_id = rotate()
    return await connect(client_id), client_id
