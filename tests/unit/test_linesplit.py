"""The log follower's bounded line splitter: one huge line never blinds it to the next (issue 11).

A 300 MB line once kept the follower busy for minutes at full CPU; a 2FA prompt after it would
have been missed. These tests feed such a line (made on the fly, never held whole) and assert
the prompt is classified at once, with bounded memory, through the splitter alone and through
:class:`gateway.docker_runtime.DockerRuntime`'s real log pump.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import authlog
from gateway.docker_runtime import DockerRuntime
from gateway.linesplit import MAX_LINE_BYTES, LineSplitter
from tests.longline import MB, STARTED, FakeLogEngine, long_line_then_prompt, prompt_line

# The old splitter took minutes for 300 MB; linear work takes well under a second.
CPU_BUDGET_S = 20.0


def _split_all(chunks: list[bytes], *, max_line: int = MAX_LINE_BYTES) -> list[bytes]:
    splitter = LineSplitter(max_line=max_line)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    rest = splitter.flush()
    return lines if rest is None else [*lines, rest]


class TestSplitting:
    @given(
        lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
        cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=30),
        terminated=st.booleans(),
    )
    def test_lines_come_out_whole_however_the_stream_is_cut(
        self, lines: list[bytes], cuts: list[int], terminated: bool
    ) -> None:
        data = b"".join(line + b"\n" for line in lines)
        if not terminated and lines:
            data = data[:-1]
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        chunks = [data[a:b] for a, b in itertools.pairwise(points)]
        expected = lines if terminated or not lines or lines[-1] else lines[:-1]
        assert _split_all(chunks) == expected

    def test_an_over_long_line_keeps_its_head_and_the_next_line_is_whole(self) -> None:
        splitter = LineSplitter(max_line=10)
        assert splitter.feed(b"2026-03-02") == []
        assert splitter.feed(b"T12:00 " + b"x" * 100) == []
        assert splitter.feed(b"yyy\nnext line\npart") == [b"2026-03-02", b"next line"]
        assert (splitter.cut_lines, splitter.dropped_bytes) == (1, 7 + 100 + 3)
        assert splitter.flush() == b"part"
        assert splitter.flush() is None

    def test_a_line_of_exactly_the_bound_is_not_cut(self) -> None:
        splitter = LineSplitter(max_line=4)
        assert splitter.feed(b"abcd\nabcde\n") == [b"abcd", b"abcd"]
        assert splitter.cut_lines == 1

    def test_an_unterminated_over_long_rest_is_flushed_bounded(self) -> None:
        splitter = LineSplitter(max_line=3)
        splitter.feed(b"abcdef")
        assert splitter.flush() == b"abc"
        assert splitter.cut_lines == 1

    def test_a_bound_below_one_byte_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match="max_line must be at least 1 byte, got 0"):
            LineSplitter(max_line=0)


class TestTheLongLine:
    def test_a_300_mb_line_leaves_the_next_2fa_prompt_classified_in_bounded_memory(self) -> None:
        splitter = LineSplitter()
        follower = authlog.AuthLogFollower(started_at=STARTED)
        events: list[authlog.AuthEvent] = []
        tracemalloc.start()
        cpu = time.process_time()
        try:
            for chunk in long_line_then_prompt(300 * MB):
                for raw in splitter.feed(chunk):
                    events.extend(follower.feed(raw.decode("utf-8", errors="replace")))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        spent = time.process_time() - cpu
        assert [type(e) for e in events] == [authlog.TwoFactorInitiated]
        assert follower.awaiting_2fa
        assert splitter.cut_lines == 1
        assert splitter.dropped_bytes > 299 * MB
        assert peak < 4 * MAX_LINE_BYTES + 1 * MB, f"peak traced memory {peak} bytes"
        assert spent < CPU_BUDGET_S, f"{spent:.1f} s of CPU for one long line"

    async def test_the_docker_log_pump_passes_the_prompt_after_a_300_mb_line(self) -> None:
        engine = FakeLogEngine(long_line_then_prompt(300 * MB))
        runtime = DockerRuntime(engine, isolate=False)  # type: ignore[arg-type]
        follower = authlog.AuthLogFollower(started_at=STARTED)
        lines: list[str] = []
        events: list[authlog.AuthEvent] = []
        cpu = time.process_time()
        try:
            async for line in runtime.follow_logs("c0ffee"):
                lines.append(line[:200])
                events.extend(follower.feed(line))
        finally:
            runtime.close()
        spent = time.process_time() - cpu
        assert len(lines) == 2, "the long line (cut) and the prompt, each once"
        assert lines[1] == prompt_line().decode().rstrip("\n")
        assert [type(e) for e in events] == [authlog.TwoFactorInitiated]
        assert spent < CPU_BUDGET_S, f"{spent:.1f} s of CPU for one long line"
