"""A container's first log line may be stamped a few ms before its recorded StartedAt.

Docker has stamped a container's first output 12 ms before the StartedAt it records; the log
pump and the auth-log follower both keep such a line, and both still drop a line from an
earlier run of the container (a restart takes seconds).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway import authlog
from gateway.docker_runtime import DockerRuntime
from ibsim import ibclog
from tests.longline import STARTED, FakeLogEngine, docker_stamp

EARLY = STARTED - timedelta(milliseconds=12)  # as seen on a real engine
EARLIER_RUN = STARTED - timedelta(seconds=3)


def prompt_at(at: datetime) -> str:
    """IBC's 2FA prompt as ``docker logs --timestamps`` prints it at ``at``."""
    text = ibclog.format_line(ibclog.SECOND_FACTOR_INITIATED, at=at)
    return f"{docker_stamp(at)} {text}"


async def test_the_log_pump_keeps_a_first_line_stamped_12_ms_before_started_at() -> None:
    stale, first = prompt_at(EARLIER_RUN), prompt_at(EARLY)
    engine = FakeLogEngine([f"{stale}\n{first}\n".encode()])
    runtime = DockerRuntime(engine, isolate=False)  # type: ignore[arg-type]
    try:
        lines = [line async for line in runtime.follow_logs("c0ffee")]
    finally:
        runtime.close()
    assert lines == [first]


def test_the_follower_keeps_a_first_line_stamped_12_ms_before_started_at() -> None:
    follower = authlog.AuthLogFollower(started_at=STARTED)
    assert follower.feed(prompt_at(EARLIER_RUN)) == []
    assert [type(e) for e in follower.feed(prompt_at(EARLY))] == [authlog.TwoFactorInitiated]
    assert follower.awaiting_2fa
