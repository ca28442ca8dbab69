"""Waiting on a condition with a deadline: the two helpers every test uses instead of sleeping.

``until`` awaits from a coroutine, ``wait_until`` blocks a thread; both poll ``condition`` until
it returns something truthy, return that value, and fail with an AssertionError naming what was
awaited when the deadline passes first. Domain helpers (a log line, a mail, a probe event) wrap
one of these two rather than writing their own loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def _timed_out(timeout: float, what: str, condition: Callable[[], Any]) -> AssertionError:
    name = what or getattr(condition, "__qualname__", None) or repr(condition)
    return AssertionError(f"timed out after {timeout:g} s waiting for {name}")


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
            raise _timed_out(timeout, what, condition)
        await asyncio.sleep(step)


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 5.0,
    *,
    what: str = "",
    step: float = 0.1,
) -> Any:
    """Block until ``condition()`` is truthy; return its value.

    For threads and synchronous tests (Docker SDK calls, subprocesses); from a coroutine use
    :func:`until`. Fails with an AssertionError naming ``what`` when ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, condition)
        time.sleep(step)
