"""Helpers for the console tests of the log, import-error, status and audit screens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from flow.daemon.client import Client
from flow.tui.app import FlowTUI, make_app
from tests.daemon.conftest import Flowd

SMALL, LARGE = (80, 24), (120, 40)


async def until(pilot: Pilot, check: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """Let the app run until `check()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(0.05)


def run_app(flowd: Flowd, body: Callable[[FlowTUI, Pilot], Awaitable[None]], *, size: tuple[int, int] = LARGE,
            **options: Any) -> None:
    async def main() -> None:
        app = make_app(flowd.socket_path, **options)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.client.connected, "the connection to flowd")
            await body(app, pilot)
    asyncio.run(main())


def call(flowd: Flowd, method: str, **params: Any) -> dict[str, Any]:
    with Client.connect(flowd.socket_path) as client:
        return client.call(method, **params)


def wait_for_dag(flowd: Flowd, dag_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        known = [d["dag_id"] for d in call(flowd, "dags.list")["dags"]]
        if dag_id in known:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"flowd did not load {dag_id} within {timeout:g}s: {flowd.stderr()[-2000:]}")
        time.sleep(0.1)


def trigger(flowd: Flowd, dag_id: str) -> str:
    wait_for_dag(flowd, dag_id)
    return call(flowd, "dags.trigger", dag_id=dag_id)["run"]["run_id"]


def wait_run(flowd: Flowd, dag_id: str, run_id: str, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = call(flowd, "runs.get", dag_id=dag_id, run_id=run_id)
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {got}")
        time.sleep(0.1)


def notes(app: FlowTUI) -> list[tuple[str, str]]:
    return [(str(n.title), str(n.message)) for n in app._notifications]
