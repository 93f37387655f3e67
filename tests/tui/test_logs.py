"""The log screen against a real flowd: live follow, a big log opened from its end, start/end,
tries, search, wrap and arrival times."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from flow.tui.app import FlowTUI
from flow.tui.screens.logs import TAIL, LogScreen, human_size
from flow.tui.widgets.log_view import LogView, clean
from tests.daemon.conftest import Flowd
from tests.tui.partb import LARGE, SMALL, call, notes, run_app, trigger, until, wait_run

SLOW = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="slow_log", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        BashOperator(task_id="tick", bash_command="for i in $(seq 1 300); do echo tick $i; sleep 0.3; done")
"""
BIG = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="big_log", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        BashOperator(task_id="spew", bash_command="seq -f 'line %09.0f' 1 2000000; echo THE-END")
"""
RETRIED = """
    from datetime import timedelta
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="retried", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             default_args={"retries": 2, "retry_delay": timedelta(seconds=0.2)}) as dag:
        BashOperator(task_id="flaky", bash_command=(
            'echo "try {{ ti.try_number }} says alpha"; echo beta; echo "alpha again"; '
            '[ {{ ti.try_number }} -ge 3 ]'))
"""


def screen(app: FlowTUI) -> LogScreen:
    assert isinstance(app.screen, LogScreen), app.screen
    return app.screen


def view(app: FlowTUI) -> LogView:
    found = app.screen.query(LogView)
    return found.first() if found else LogView()


def header(app: FlowTUI) -> str:
    found = app.screen.query("#log-header")
    return str(found.first().render()) if found else ""


def ticks(app: FlowTUI) -> list[int]:
    return [int(m.group(1)) for line in view(app).lines if (m := re.search(r"tick (\d+)$", line))]


def record_reads(app: FlowTUI) -> list[dict[str, Any]]:
    """Wrap the real client's call to note each logs.read it sends and how much it got back."""
    reads: list[dict[str, Any]] = []
    real = app.client.call

    async def spy(method: str, **params: Any) -> dict[str, Any]:
        reply = await real(method, **params)
        if method == "logs.read":
            reads.append({**params, "got": len(reply["data"].encode())})
        return reply
    app.client.call = spy  # type: ignore[method-assign]
    return reads


def test_a_running_tasks_log_is_followed_live_until_the_user_scrolls_up(flowd: Flowd):
    flowd.add_dag("slow_log.py", SLOW)
    run_id = trigger(flowd, "slow_log")
    wait_run(flowd, "slow_log", run_id, lambda g: g["task_instances"][0]["state"] == "running", "tick to run")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        app.open_logs("slow_log", run_id, "tick")
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and ticks(app), "the first ticks")
        await until(pilot, lambda: "following" in header(app), "the follow state in the header")
        seen = max(ticks(app))
        await until(pilot, lambda: max(ticks(app)) >= seen + 3, "three more ticks pushed by flowd")
        assert ticks(app) == list(range(1, max(ticks(app)) + 1)), "lines lost or doubled between read and follow"
        assert "slow_log › tick › " in header(app) and "try 1 of 1" in header(app) and "▶ running" in header(app)
        await pilot.press("t")
        await until(pilot, lambda: re.match(r"\d\d:\d\d:\d\d tick", view(app).plain_rows()[-1] or ""),
                    "an arrival time on a live line")
        await pilot.press("k")
        await until(pilot, lambda: "paused" in header(app), "follow to stop when scrolling up")
        assert screen(app).following is False
        await pilot.press("f")
        await until(pilot, lambda: "following" in header(app), "follow again on f")
        now = max(ticks(app))
        await until(pilot, lambda: max(ticks(app)) > now and view(app).at_bottom, "new lines at the bottom")
    run_app(flowd, body, size=SMALL)


def test_a_big_log_opens_at_its_end_reading_only_a_small_part_of_it(flowd: Flowd):
    flowd.add_dag("big_log.py", BIG)
    run_id = trigger(flowd, "big_log")
    wait_run(flowd, "big_log", run_id, lambda g: g["run"]["state"] == "success", "the big log's run", timeout=180)
    size = call(flowd, "logs.read", dag_id="big_log", run_id=run_id, task_id="spew", offset=-1, length=1)["size"]
    assert size > 25_000_000

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        reads = record_reads(app)
        app.push_screen(LogScreen("big_log", run_id, "spew", window=1024 * 1024))
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and view(app).lines, "the log's end")
        assert view(app).lines[-3:-1] == ["line 002000000", "THE-END"]
        await until(pilot, lambda: view(app).plain_rows()[-2:] == ["THE-END", view(app).lines[-1]],
                    "the end on screen")
        assert view(app).lines[-1].startswith("[flow] exited with status 0")
        assert sum(r["got"] for r in reads) <= TAIL and reads[0]["offset"] < 0
        assert "ended" in header(app) and human_size(size) in header(app)
        await pilot.press("home")
        await until(pilot, lambda: len(reads) >= 2 and view(app).first < size - TAIL, "an older chunk on reaching the top")
        for _ in range(6):
            await pilot.press("home")
            await pilot.pause(0.5)
        await until(pilot, lambda: view(app).end < size, "the window to forget its end as it grows upwards")
        assert view(app).held <= 1024 * 1024 + 1024
        await pilot.press("g")
        await until(pilot, lambda: view(app).lines[1:2] == ["line 000000001"], "the start")
        assert view(app).plain_rows()[0].startswith("[flow] big_log.spew try 1 started")
        assert view(app).plain_rows()[1] == "line 000000001"
        await pilot.press("G")
        await until(pilot, lambda: view(app).lines[-2] == "THE-END" and view(app).at_bottom, "the end again")
        total = sum(r["got"] for r in reads)
        assert total < 4 * 1024 * 1024 and total < size / 5, f"read {total} bytes of a {size}-byte log"
        assert all(r.get("length", 0) <= 1024 * 1024 for r in reads)
    run_app(flowd, body, size=LARGE)


def test_tries_search_wrap_and_times_on_a_retried_task(flowd: Flowd):
    flowd.add_dag("retried.py", RETRIED)
    run_id = trigger(flowd, "retried")
    wait_run(flowd, "retried", run_id, lambda g: g["run"]["state"] == "success", "the retried run")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        app.open_logs("retried", run_id, "flaky")
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and "try 3 says alpha" in view(app).lines,
                    "the latest try's log")
        assert "try 3 of 3" in header(app) and "✔ success" in header(app) and "ended" in header(app)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "try 2 says alpha" in view(app).lines, "try 2 on [")
        assert "try 2 of 3" in header(app) and ("↻ up_for_retry" in header(app) or "✘ failed" in header(app))
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "try 1 says alpha" in view(app).lines, "try 1 on [")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: any("no earlier try" in m for _, m in notes(app)), "the first-try notice")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "try 2 says alpha" in view(app).lines, "try 2 on ]")

        await pilot.press("slash", *"ALPHA", "enter")
        v = view(app)
        assert len(v.matches) == 2 and v.current == 0
        assert v.lines[v.matches[0].line] == "try 2 says alpha"
        assert "/ALPHA: 1/2 matches" in str(app.screen.query_one("#log-note").render())
        await pilot.press("n")
        assert v.lines[v.matches[v.current].line] == "alpha again"
        await pilot.press("n")
        assert v.current == 0
        await pilot.press("N")
        assert v.current == 1
        await pilot.press("slash", *"nowhere", "enter")
        await until(pilot, lambda: any("no 'nowhere'" in m for _, m in notes(app)), "the no-match notice")

        assert not any(r.startswith("--:--:--") for r in v.plain_rows())
        await pilot.press("t")
        assert all(r.startswith("--:--:--") for r in v.plain_rows()), v.plain_rows()
        await pilot.press("t", "w")
        assert v.wrap and "wrap" in str(app.screen.query_one("#log-note").render())
        await pilot.press("f")
        assert any("nothing more to follow" in m for _, m in notes(app))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LogScreen), "esc back to the DAG list")
    run_app(flowd, body, size=SMALL)


def test_wrap_splits_long_lines_and_the_window_stays_bounded(tmp_path: Path):
    """The view alone, fed directly: wrapping, forgetting from the top, control characters."""
    from textual.app import App, ComposeResult

    class One(App):
        def compose(self) -> ComposeResult:
            yield LogView(limit=2000, id="log")

    async def main() -> None:
        app = One()
        async with app.run_test(size=(40, 10)) as pilot:
            v = app.query_one(LogView)
            v.replace(0, "x" * 100 + "\nshort\n", 107)
            await pilot.pause()
            assert v.plain_rows()[0] == "x" * 40 and len(v.plain_rows()) == 2
            v.set_options(wrap=True)
            await pilot.pause()
            assert [len(r) for r in v.plain_rows()[:4]] == [40, 40, 20, 5]
            for n in range(100):
                v.append(v.end, f"line {n:04d} " + "y" * 20 + "\n", v.end + 31)
            assert v.held <= 2000 and v.lines[-1].startswith("line 0099") and v.first > 0
            assert v.starts[0] == v.first
    import asyncio
    asyncio.run(main())
    assert clean("a\tb\x1b[31mred\x1b[0m\rdone") == "done"
    assert clean("a\tb\x1b[31mred\x1b[0m") == "a   bred"


LATE = """
    from datetime import timedelta
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="late_log", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        first = BashOperator(task_id="first", bash_command="while [ ! -e {flag} ]; do sleep 0.02; done")
        late = BashOperator(task_id="late", retries=1, retry_delay=timedelta(seconds=0.2), bash_command=(
            'echo "try {{{{ ti.try_number }}}} of late"; [ {{{{ ti.try_number }}}} -ge 2 ]'))
        first >> late
"""


def test_a_log_opened_before_its_task_starts_comes_alive_and_moves_on_to_the_retry(flowd: Flowd, tmp_path: Path):
    flag = tmp_path / "go"
    flowd.add_dag("late_log.py", LATE.format(flag=flag))
    run_id = trigger(flowd, "late_log")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        app.open_logs("late_log", run_id, "late")
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and "not started yet" in note(app),
                    "the waiting note")
        flag.touch()
        await until(pilot, lambda: "try 1 of late" in view(app).lines, "the first try's output")
        await until(pilot, lambda: "try 2 of late" in view(app).lines, "the retry's output")
        assert "try 2 of 2" in header(app) and "↻ try 1" in note(app)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "try 1 of late" in view(app).lines and "try 1 of 2" in header(app), "try 1 again")
    run_app(flowd, body, size=SMALL)


def note(app: FlowTUI) -> str:
    found = app.screen.query("#log-note")
    return str(found.first().render()) if found else ""
