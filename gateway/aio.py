"""Small asyncio helpers shared by every package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable`` with a deadline; raises TimeoutError when it passes.

    Used instead of ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation that
    arrives just as the awaited call completes, leaving a task that never stops.
    """
    async with asyncio.timeout(timeout):
        return await awaitable
