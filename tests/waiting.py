"""Waiting on a condition with a deadline: the one helper every test uses instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def until(
    condition: Callable[[], Any],
    timeout: float = 5.0,
    *,
    what: str = "",
    step: float = 0.01,
) -> Any:
    """Poll ``condition`` (sync, or returning an awaitable) until it is truthy; return its value.

    Fails with an AssertionError naming ``what`` when ``timeout`` seconds pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        await asyncio.sleep(step)
