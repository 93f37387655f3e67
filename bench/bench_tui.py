"""Console benchmarks: print figures, assert nothing. `.venv/bin/python bench/bench_tui.py [grid] [graph]`

grid   A real flowd holding 200 runs of a 50-task DAG (paused, so the runs stay put; every cell is
       a real task instance read with runs.grid). Times: one `runs.grid` of all 200 runs over the
       socket, opening the DAG view until the newest page is on screen, each `[` page back through
       all 200 runs, and, without a socket, RunGrid.show of one page and of all 200 x 50 cells at
       once followed by a paint, a jump of the cursor to the far corner, and 50 cells changed in
       place + paint.
graph  A 200-task DAG: the pure layout, then DagGraph.set_dag plus painting it and scrolling
       through every screenful, headless (App.run_test). Two shapes: 20 layers of 10 tasks with
       1-2 upstreams each (a realistic ETL shape), and 200 tasks with 0-3 upstreams picked at
       random from all earlier tasks (a worst case with many long edges).

Each figure is the median of a few repetitions. Other helpers may add functions (first paint,
1,000 DAGs, churn) next to these; keep one function per figure group.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App, ComposeResult

from flow.daemon.client import Client
from flow.tui.app import make_app
from flow.tui.screens.dag_view import DagViewScreen
from flow.tui.widgets.dag_graph import DagGraph
from flow.tui.widgets.graph_layout import layout
from flow.tui.widgets.run_grid import RunGrid, page_size

FLOWD = str(Path(sys.executable).parent / "flowd")
SIZE = (200, 50)
WIDE_DAG = """
import pendulum
from flow import DAG
from flow.operators import EmptyOperator
with DAG("bench_grid", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         is_paused_upon_creation=True) as dag:
    layers = [[EmptyOperator(task_id=f"l{l}_t{t}") for t in range(10)] for l in range(5)]
    for upper, lower in zip(layers, layers[1:]):
        for i, task in enumerate(lower):
            upper[i] >> task
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def median(fn: Callable[[], float], times: int = 5) -> float:
    return statistics.median(fn() for _ in range(times))


def start_flowd(root: Path) -> tuple[subprocess.Popen, str]:
    (root / "dags").mkdir()
    (root / "dags" / "bench_grid.py").write_text(WIDE_DAG)
    sock = tempfile.mkdtemp(prefix="fb-") + "/flowd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_", "NOTIFY_SOCKET", "LISTEN_"))}
    env["HOME"] = str(root)
    proc = subprocess.Popen([FLOWD, "--user", "--socket", sock, "--dags-folder", str(root / "dags"),
                             "--db", f"sqlite:///{root / 'flow.db'}", "--log-folder", str(root / "logs")],
                            env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with Client.connect(sock) as client:
                if "bench_grid" in [d["dag_id"] for d in client.call("dags.list")["dags"]]:
                    return proc, sock
        except Exception:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("flowd did not come up")


async def _wait(pilot, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await pilot.pause(0.005)


def bench_grid_real(runs: int = 200) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    proc, sock = start_flowd(root)
    try:
        with Client.connect(sock) as client:
            client.call("dags.pause", dag_id="bench_grid", paused=True)
            t0 = time.perf_counter()
            for day in range(runs):
                when = f"{2024 + day // 300}-{day % 300 // 25 + 1:02d}-{day % 25 + 1:02d}T00:00:00+00:00"
                client.call("dags.trigger", dag_id="bench_grid", logical_date=when)
            made = time.perf_counter() - t0
            print(f"grid (real flowd): {runs} runs x 50 tasks created in {made:.1f} s")
            whole = median(lambda: _timed(lambda: client.call("runs.grid", dag_id="bench_grid", limit=runs)))
            cells = sum(len(c) for c in client.call("runs.grid", dag_id="bench_grid", limit=runs)["cells"].values())
            print(f"grid (real flowd): runs.grid of all {runs} runs ({cells} cells) over the socket: "
                  f"median {ms(whole)}")

        async def main() -> None:
            app = make_app(sock)
            async with app.run_test(size=SIZE) as pilot:
                await _wait(pilot, lambda: app.client.connected)
                opens, pages = [], []
                for _ in range(3):
                    t = time.perf_counter()
                    app.open_dag("bench_grid")
                    await _wait(pilot, lambda: isinstance(app.screen, DagViewScreen)
                                and bool(app.screen.query(RunGrid)) and app.screen.query_one(RunGrid).runs != [])
                    await pilot.pause()
                    opens.append(time.perf_counter() - t)
                    grid = app.screen.query_one(RunGrid)
                    per_page, seen = len(grid.runs), len(grid.runs)
                    while seen < runs:
                        oldest = grid.runs[0]
                        t = time.perf_counter()
                        await pilot.press("left_square_bracket")
                        await _wait(pilot, lambda o=oldest, g=grid: g.runs and g.runs[-1] != o and o not in g.runs)
                        await pilot.pause()
                        pages.append(time.perf_counter() - t)
                        seen += len(grid.runs)
                    await pilot.press("escape")
                    await _wait(pilot, lambda: not isinstance(app.screen, DagViewScreen))
                    await pilot.pause(0.2)
                print(f"grid (real flowd, {SIZE[0]}x{SIZE[1]}): open the DAG view to the newest {per_page} runs "
                      f"drawn: median {ms(statistics.median(opens))}")
                print(f"grid (real flowd): one page back (runs.grid of {per_page} runs + show + paint): "
                      f"median {ms(statistics.median(pages))}, max {ms(max(pages))} over {len(pages)} pages")
        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)


class _Host(App):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def bench_grid_widget(runs: int = 200, tasks: int = 50) -> None:
    rng = random.Random(1)
    states = ["success"] * 8 + ["failed", "running", "skipped", "up_for_retry"]
    task_ids = [f"task_{i:02d}" for i in range(tasks)]
    run_list = [{"run_id": f"scheduled__{i:04d}", "run_type": "scheduled", "state": "success",
                 "start_date": "2026-01-01T00:00:00+00:00", "end_date": "2026-01-01T00:03:05+00:00"}
                for i in range(runs)]
    cells = {r["run_id"]: {t: rng.choice(states) for t in task_ids} for r in run_list}

    async def main() -> None:
        grid = RunGrid()
        async with _Host(grid).run_test(size=SIZE) as pilot:
            shows, scrolls, updates = [], [], []
            for _ in range(5):
                t = time.perf_counter()
                grid.show(task_ids, run_list, cells)
                await pilot.pause()
                shows.append(time.perf_counter() - t)
                t = time.perf_counter()
                grid.select(run_list[0]["run_id"], task_ids[-1])
                await pilot.pause()
                scrolls.append(time.perf_counter() - t)
                t = time.perf_counter()
                for task in task_ids:
                    grid.set_state(run_list[-1]["run_id"], task, "running")
                await pilot.pause()
                updates.append(time.perf_counter() - t)
        print(f"grid widget ({runs} runs x {tasks} tasks at once, no socket): show + paint "
              f"median {ms(statistics.median(shows))}; jump to the far corner + paint "
              f"{ms(statistics.median(scrolls))}; {tasks} cells updated in place + paint "
              f"{ms(statistics.median(updates))}")
    asyncio.run(main())


def shapes(n: int = 200) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    rng = random.Random(7)
    layered: dict[str, list[str]] = {}
    for layer in range(n // 10):
        for i in range(10):
            above = [f"l{layer - 1:02d}_{j}" for j in range(10)] if layer else []
            layered[f"l{layer:02d}_{i}"] = rng.sample(above, rng.randint(1, 2)) if above else []
    order = [f"task_{i:03d}" for i in range(n)]
    dense = {t: sorted({order[rng.randrange(i)] for _ in range(rng.randint(0, 3))}) if i else []
             for i, t in enumerate(order)}
    return {"layered 20x10": (list(layered), layered), "random, long edges": (order, dense)}


def bench_graph() -> None:
    for name, (order, ups) in shapes().items():
        lay = layout(order, ups)
        pure = median(lambda o=order, u=ups: _timed(lambda: layout(o, u)))
        print(f"graph {name}: 200 tasks -> canvas {lay.width}x{lay.height}; layout (pure) median {ms(pure)}")

        async def main(order=order, ups=ups, name=name) -> None:
            graph = DagGraph()
            async with _Host(graph).run_test(size=SIZE) as pilot:
                firsts, scrolls = [], []
                for _ in range(5):
                    t = time.perf_counter()
                    graph.set_dag(order, ups)
                    graph.set_states({task: "success" for task in order})
                    await pilot.pause()
                    firsts.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    for y in range(0, graph.virtual_size.height, graph.size.height):
                        graph.scroll_to(y=y, animate=False, immediate=True)
                        await pilot.pause()
                    scrolls.append(time.perf_counter() - t)
                screens = -(-graph.virtual_size.height // graph.size.height)
            print(f"graph {name}: set_dag + first paint median {ms(statistics.median(firsts))}; "
                  f"scroll through all {screens} screenfuls {ms(statistics.median(scrolls))}")
        asyncio.run(main())


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    chosen = set(sys.argv[1:]) or {"grid", "graph"}
    if "graph" in chosen:
        bench_graph()
    if "grid" in chosen:
        bench_grid_widget(runs=page_size(SIZE[0]))
        bench_grid_widget()
        bench_grid_real()


if __name__ == "__main__":
    main()
