"""Broker and gateway as separate OS processes (as in containers), linked over TCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from queue import Empty, Queue

import httpx
import pytest

from ibsim.settings import image_env, sim_env
from tests.net import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
CLI = "from ibsim.cli import app; app()"


def reader(proc: subprocess.Popen) -> Queue:
    lines: Queue = Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_line(lines: Queue, needle: str, seen: list[str], timeout: float = 30) -> str:
    def next_match() -> str | None:
        # Lines after the match stay queued for the next wait.
        while True:
            try:
                line = lines.get_nowait()
            except Empty:
                return None
            seen.append(line)
            if needle in line:
                return line

    try:
        found: str = wait_until(next_match, timeout, what=f"a line with {needle!r}", step=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; saw: {seen[-20:]}") from None
    return found


async def test_gateway_process_logs_in_through_broker_process(lib):
    broker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "broker",
            "--host",
            "127.0.0.1",
            "--link-port",
            "0",
            "--control-port",
            "0",
            "--user",
            "simuser1:pw:DU8000001",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    gateway = None
    try:
        blines, seen = reader(broker), []
        link = wait_line(blines, "broker link:", seen).rsplit(":", 1)[1]
        control = wait_line(blines, "control API:", seen).split(": ", 1)[1]
        api_port = free_port()
        env = {
            **os.environ,
            **image_env(username="simuser1", password="pw"),
            **sim_env(
                broker=("127.0.0.1", int(link)),
                gateway_name="proc-gw",
                api_port=api_port,
                command_port=0,
            ),
        }
        gateway = subprocess.Popen(
            [sys.executable, "-c", CLI, "gateway"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        glines, gseen = reader(gateway), []
        # IBC starts its command server at the JVM's start, before the login.
        wait_line(glines, "CommandServer started", gseen)
        wait_line(glines, "Login has completed", gseen)
        gateways = httpx.get(f"{control}/gateways", timeout=5).json()
        assert [(g["name"], g["logged_in"]) for g in gateways] == [("proc-gw", True)]
        ib = lib.IB()
        await ib.connectAsync("127.0.0.1", api_port, clientId=1, timeout=10)
        assert ib.managedAccounts() == ["DU8000001"]
        assert (await ib.reqCurrentTimeAsync()).year >= 2024
        ib.disconnect()
    finally:
        for proc in (gateway, broker):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=15) for p in (gateway, broker) if p is not None]
    assert codes == [0, 0]
