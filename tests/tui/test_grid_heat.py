"""The grid's heat view and flags: the pure scale and flag rules, the widget repainting one cell
per change, and `v` plus a ⚠ on a real try that used far more memory than the ones before it."""

from __future__ import annotations

import asyncio
import sys

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Static

from flow.tui.app import FlowTUI
from flow.tui.widgets import heat
from flow.tui.widgets.dag_table import DagTable
from flow.tui.widgets.run_grid import CELL, HEADER, RunGrid
from tests.daemon.conftest import Flowd
from tests.tui.test_dag_list import until
from tests.tui.test_dag_view import call, open_view, run_app, wait_dag

# -- the rules ---------------------------------------------------------------------------------


def test_compact_bytes_fit_four_characters():
    assert [heat.compact_bytes(v) for v in (None, 512, 2048, 231 * 2**20, 1.5 * 2**30, 12 * 2**40)] == \
        ["—", "512B", "2.0K", "231M", "1.5G", "12T"]


def test_shades_are_quarters_of_the_largest_value_on_the_page():
    scale = heat.scale_of([None, 1.0, 8.0, 3.0])
    assert scale == heat.Scale(8.0)
    assert [scale.level(v) for v in (0, 1.9, 2.0, 5.9, 6.0, 8.0)] == [0, 0, 1, 2, 3, 3]
    assert heat.scale_of([None]) is None
    legend = scale.legend("duration")
    assert legend.startswith("duration: ░ ≤2s ▒ ≤4s ▓ ≤6s █ ≤8s") and "3×" in legend
    assert heat.Scale(4 * 2**20).legend("memory").startswith("peak memory: ░ ≤1.0M")


def test_a_try_over_three_times_the_median_of_its_previous_tries_is_flagged():
    assert heat.flags("memory", [10, 10, 40]) == {}, "two previous tries are too few to judge"
    got = heat.flags("memory", [10 * 2**20, None, 11 * 2**20, 9 * 2**20, 31 * 2**20, 40 * 2**20])
    assert list(got) == [4, 5]
    assert got[4] == "⚠ peak memory 31M is 3.1× the median 10M of its previous 3 tries"
    assert heat.flags("duration", [5, 5, 5, 15]) == {}, "exactly 3× is not over it"
    history = [1.0] * 12 + [100.0] * 7
    assert list(heat.flags("duration", history)) == [12, 13, 14, 15, 16], "the median moves after enough heavy tries"
    assert heat.flags("duration", [0.004, 0.004, 0.004, 0.014]) == {}, "a 14 ms try is under the floor"
    assert heat.flags("memory", [2**20, 2**20, 2**20, 4 * 2**20]) == {}, "4 MiB is under the floor"
    assert list(heat.flags("duration", [0.4, 0.4, 0.4, 1.5])) == [3], "over the floor and 3× the median"


# -- the widget, without a socket ---------------------------------------------------------------


class Host(App):
    def compose(self) -> ComposeResult:
        yield RunGrid()


def test_a_pushed_change_repaints_only_its_cell_and_heat_modes_shade_cells():
    tasks = [f"task_{i:02d}" for i in range(30)]
    runs = [{"run_id": f"r{i}", "run_type": "manual", "state": "success"} for i in range(20)]
    cells = {r["run_id"]: {t: {"state": "success", "duration": 1.0 + i, "peak_rss": 2**20}
                           for i, t in enumerate(tasks)} for r in runs}

    async def main() -> None:
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            grid = app.query_one(RunGrid)
            grid.show(tasks, runs, cells, keep=("r19", "task_00"))
            await pilot.pause()
            assert grid.selected == ("r19", "task_00")
            label = len("task_00") + 2
            area = grid.scrollable_content_region.width - label
            assert grid.scroll_offset.x == 20 * CELL - area, "the newest run is in view at the right"
            painted: list[Region] = []
            real = grid.refresh
            grid.refresh = lambda *regions, **kw: (painted.extend(regions), real(*regions, **kw))[1]
            grid.set_state("r18", "task_03", "running")
            x = label + 18 * CELL - grid.scroll_offset.x
            assert painted == [Region(x, HEADER + 3, CELL, 1)]
            assert grid.cell_text("r18", "task_03") == "▶"
            painted.clear()
            grid.set_state("r18", "task_03", "running")
            assert painted == [], "an event that changes nothing repaints nothing"
            await pilot.press("down", "left")
            assert grid.selected == ("r18", "task_01")
            grid.set_mode("duration")
            assert grid.cell_text("r0", "task_00") == "░░░░" and grid.cell_text("r0", "task_29") == "████"
            assert grid.legend().startswith("duration: ░ ≤7s")
            grid.set_mode("memory")
            assert grid.cell_text("r0", "task_00") == "████", "every cell equals the page's largest"
            grid.set_cell("r19", "task_05", {"peak_rss": 40 * 2**20})
            assert grid.cell_text("r19", "task_05") == "████⚠" and grid.cell_text("r0", "task_05") == "░░░░"
            assert "40M is 40.0× the median 1.0M" in (grid.flag("r19", "task_05") or "")
            line = "".join(seg.text for seg in grid.render_line(HEADER + 5 - grid.scroll_offset.y))
            assert line.startswith(" task_05 ") and "⚠" in line and len(line) == grid.scrollable_content_region.width
    asyncio.run(main())


# -- against a real flowd ----------------------------------------------------------------------

HUNGRY = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="hungry", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
        BashOperator(task_id="eat", bash_command=(
            "{python} -c 'import time; x = bytearray({{{{ dag_run.conf.get(\\"mb\\", 0) }}}} * 1048576); "
            "x[::4096] = b\\"1\\" * len(x[::4096]); time.sleep(0.2)'"))
"""


def test_v_cycles_heat_views_and_a_memory_hungry_try_is_flagged_in_cell_and_footer(flowd: Flowd):
    flowd.add_dag("hungry.py", HUNGRY.format(python=sys.executable))
    wait_dag(flowd, "hungry")
    sizes = [0, 0, 0, 0, 150]
    made = [call(flowd, "dags.trigger", dag_id="hungry", conf={"mb": mb},
                 logical_date=f"2025-02-0{day + 1}T00:00:00+00:00")["run"]["run_id"] for day, mb in enumerate(sizes)]

    def finished() -> bool:
        return all(r["state"] == "success" for r in call(flowd, "runs.list", dag_id="hungry")["runs"])

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, finished, "the five runs to succeed", timeout=90)
        screen = await open_view(pilot, app, "hungry")
        grid = screen.query_one(RunGrid)
        await until(pilot, lambda: grid.runs == made and all(
            grid.cells[r]["eat"].get("peak_rss") for r in made), "five runs with their peak memory")
        grid.select(made[-1], "eat")
        assert grid.cell_text(made[-1], "eat") == "✔ ⚠" and grid.cell_text(made[0], "eat") == "✔"
        info = screen.query_one("#cell-info", Static)
        await until(pilot, lambda: "⚠ peak memory" in str(info.render()), "the flag explained in the footer")
        assert "× the median" in str(info.render()) and "of its previous 4 tries" in str(info.render())
        legend = screen.query_one("#grid-legend", Static)
        assert not legend.display
        await pilot.press("v")
        assert grid.mode == "duration" and legend.display and str(legend.render()).startswith("duration:")
        await pilot.press("v")
        assert grid.mode == "memory" and str(legend.render()).startswith("peak memory:")
        assert grid.cell_text(made[-1], "eat") == "████⚠"
        assert grid.cell_text(made[0], "eat")[0] in "░▒", "a small try is a light shade"
        await pilot.press("v")
        assert grid.mode == "state" and not legend.display
        await pilot.press("escape")
        await until(pilot, lambda: bool(app.screen.query(DagTable)), "the DAG list")
        table = app.screen.query_one(DagTable)
        peak = call(flowd, "dags.get", dag_id="hungry")["dag"]["last_run_peak_rss"]
        await until(pilot, lambda: str(table.get_cell("hungry", "peak")) == heat.compact_bytes(peak),
                    "the DAG list's Peak mem column")
        assert str(table.get_cell("hungry", "peak")).endswith("M")
    run_app(flowd, body)
