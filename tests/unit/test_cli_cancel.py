"""``ibfleet cancel`` against the real API app (over loopback TCP, in a thread) on a fake host."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from supervisor.api import ApiServer, create_app
from supervisor.cli import app
from tests.unit.test_api import TOKEN, FakeFleet
from tests.unit.test_api_cancel import FakeHost

ORDERS = [
    {
        "account": "DU1",
        "perm_id": 1001,
        "client_id": 11,
        "order_ref": "s1-06EAY41HG1EYD6SR",
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": 1.0,
        "order_type": "LMT",
        "status": "Submitted",
        "strategy": "s1",
    },
    {
        "account": "DU1",
        "perm_id": 1002,
        "client_id": 0,
        "order_ref": "",
        "symbol": "AAPL",
        "action": "SELL",
        "quantity": 5.0,
        "order_type": "LMT",
        "status": "Submitted",
        "strategy": None,
    },
]


class AccountHost(FakeHost):
    async def cancel(
        self, name: str | None, *, symbol: str | None, all_orders_on_account: bool, dry_run: bool
    ) -> list[dict[str, object]]:
        self.calls.append((name, symbol, all_orders_on_account, dry_run))
        return [
            {
                "scope": "account" if all_orders_on_account else "strategy",
                "strategy": None if all_orders_on_account else (name or "s1"),
                "account": "DU1",
                "orders": ORDERS if all_orders_on_account else ORDERS[:1],
                "still_open": ORDERS if dry_run else [],
                "ok": self.ok,
                "detail": "" if self.ok else "no open API session",
                "dry_run": dry_run,
                "global_cancel": all_orders_on_account and symbol is None and not dry_run,
            }
        ]


@pytest.fixture
def served() -> Iterator[tuple[str, AccountHost]]:
    host = AccountHost()
    loop = asyncio.new_event_loop()
    server = ApiServer(
        create_app(FakeFleet(), token=TOKEN, strategies=host), host="127.0.0.1", port=0
    )
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", host
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def ibfleet(url: str, *args: str, stdin: str | None = None) -> Any:
    env = {"IBFLEET_API_TOKEN": TOKEN}
    return CliRunner().invoke(app, ["cancel", "--url", url, *args], input=stdin, env=env)


def test_cancel_sends_the_strategy_and_symbol_filters_and_reports_each_run(
    served: tuple[str, AccountHost],
) -> None:
    url, host = served
    result = ibfleet(url, "--strategy", "s1", "--symbol", "AAPL")
    assert result.exit_code == 0, result.output
    assert "s1: 1 cancelled ok" in result.output
    assert host.calls == [("s1", "AAPL", False, False)]


def test_the_account_wide_cancel_names_the_orders_and_stops_when_not_confirmed(
    served: tuple[str, AccountHost],
) -> None:
    url, host = served
    result = ibfleet(url, "--all-orders-on-account", stdin="n\n")
    assert result.exit_code == 1  # aborted at the prompt
    assert "2 open orders on the account" in result.output
    assert "(not ibfleet's)" in result.output and "s1-06EAY41HG1EYD6SR" in result.output
    assert host.calls == [(None, None, True, True)]  # only the listing


def test_the_account_wide_cancel_goes_ahead_when_confirmed_or_with_yes(
    served: tuple[str, AccountHost],
) -> None:
    url, host = served
    assert ibfleet(url, "--all-orders-on-account", stdin="y\n").exit_code == 0
    result = ibfleet(url, "--all-orders-on-account", "--yes")
    assert result.exit_code == 0 and "account DU1: 2 cancelled (global cancel) ok" in result.output
    assert host.calls == [(None, None, True, True), (None, None, True, False)] * 2


def test_a_dry_run_lists_and_cancels_nothing(served: tuple[str, AccountHost]) -> None:
    url, host = served
    result = ibfleet(url, "--dry-run", "--symbol", "AAPL")
    assert result.exit_code == 0 and "1 open orders of ibfleet's" in result.output
    assert host.calls == [(None, "AAPL", False, True)]


def test_a_strategy_filter_with_the_account_wide_variant_is_refused(
    served: tuple[str, AccountHost],
) -> None:
    url, host = served
    result = ibfleet(url, "--all-orders-on-account", "--strategy", "s1")
    assert result.exit_code == 2 and "no --strategy" in result.output and host.calls == []


def test_nothing_cancelled_is_a_failing_exit_with_the_reason(
    served: tuple[str, AccountHost],
) -> None:
    url, host = served
    host.ok = False
    result = ibfleet(url, "--strategy", "s1")
    assert result.exit_code == 1 and "409" in result.output
    assert "no open API session" in result.output
