"""The sampler's logic against a fake OS facade: trees, CPU %, limits, series, admission; and the units."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from flow import DAG
from flow.daemon.proctable import HostSample, ProcSample, tree_members
from flow.daemon.resources import MAX_POINTS, ResourceMonitor, Series, admission_for
from flow.dag import DagDefinitionError
from flow.operators.bash import BashOperator
from flow.units import format_bytes, parse_duration, parse_size, parse_threshold

MIB = 1 << 20


class FakeOS:
    """The facade's three methods over a dict the test edits between ticks."""

    def __init__(self) -> None:
        self.procs: dict[int, tuple[int, int, ProcSample]] = {}  # pid -> (ppid, sid, sample)
        self.mem = HostSample(mem_total=1000 * MIB, mem_available=500 * MIB, cpu_count=2, load_1m=0.5)
        self.forgotten: set[tuple[int, int]] | None = None

    def add(self, pid, ppid, sid, *, user=0.0, system=0.0, rss=0, threads=1, read=0, write=0) -> None:
        self.procs[pid] = (ppid, sid, ProcSample(user, system, rss, read, write, threads))

    def table(self):
        return {pid: (ppid, sid, 7) for pid, (ppid, sid, _s) in self.procs.items()}

    def sample(self, pid, start):
        got = self.procs.get(pid)
        return got[2] if got else None

    def forget_except(self, alive) -> None:
        self.forgotten = alive

    def host(self):
        return self.mem

    def self_figures(self):
        return {"open_files": 3}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def monitor(fake: FakeOS, clock: Clock, **settings) -> ResourceMonitor:
    base = {"sample_interval": 2.0, "min_free_memory": ""} | settings
    return ResourceMonitor(SimpleNamespace(**base), facade=fake, clock=clock)  # type: ignore[arg-type]


def tick(mon: ResourceMonitor, running):
    trees = mon.collect({r[0]: r[1] for r in running})
    return mon.apply(running, trees)


def test_tree_has_descendants_and_orphans_of_the_session_but_not_strangers():
    table = {
        10: (1, 10, 0),   # try leader (its own session)
        11: (10, 10, 0),  # child
        12: (11, 10, 0),  # grandchild
        13: (1, 10, 0),   # orphan: parent died, re-parented to init, same session
        14: (11, 14, 0),  # descendant that started a session of its own: found by its parent link
        15: (14, 14, 0),  # ... and its child
        20: (1, 20, 0),   # another try
        30: (1, 1, 0),    # a stranger
    }
    trees = tree_members({"a": 10, "b": 20, "gone": 99}, table)
    assert trees == {"a": [10, 11, 12, 13, 14, 15], "b": [20], "gone": []}


def test_cpu_percent_is_the_growth_of_tree_cpu_seconds_between_ticks():
    fake, clock = FakeOS(), Clock()
    mon = monitor(fake, clock)
    mon.started("r")
    fake.add(10, 1, 10, user=0.0, rss=10 * MIB)
    clock.t += 2
    tick(mon, [("r", 10, None, None)])
    fake.add(10, 1, 10, user=1.0, system=0.5, rss=10 * MIB)
    fake.add(11, 10, 10, user=1.5, rss=30 * MIB, threads=4)
    clock.t += 2
    tick(mon, [("r", 10, None, None)])
    live = mon.live("r")
    assert live["cpu_user"] == 2.5 and live["cpu_system"] == 0.5
    assert live["peak_cpu_percent"] == 150.0  # 3 CPU seconds in 2 s: one and a half cores
    assert live["peak_rss"] == 40 * MIB and live["max_procs"] == 2 and live["max_threads"] == 5
    assert fake.forgotten == {(10, 7), (11, 7)}
    # the child exits unreaped: its CPU seconds leave the live sum, the total does not go back
    del fake.procs[11]
    clock.t += 2
    tick(mon, [("r", 10, None, None)])
    live = mon.live("r")
    assert live["cpu_user"] == 2.5 and live["series"]["cpu"][-1] == 0.0
    assert live["series"]["rss"] == [10 * MIB, 40 * MIB, 10 * MIB]


def test_finish_prefers_the_kernel_rusage_when_it_is_larger():
    fake, clock = FakeOS(), Clock()
    mon = monitor(fake, clock)
    mon.started("r")
    fake.add(10, 1, 10, user=0.2, rss=50 * MIB)
    clock.t += 1
    tick(mon, [("r", 10, None, None)])
    got = mon.finish("r", {"utime": 1.5, "stime": 0.5, "maxrss_kb": 80 * 1024, "wall": 4.0}, 3.9)
    assert got["cpu_user"] == 1.5 and got["cpu_system"] == 0.5 and got["peak_rss"] == 80 * MIB
    assert got["wall"] == 4.0 and got["avg_cpu_percent"] == 50.0
    assert mon.live("r") is None and mon.finish("never-ran", None, None) is None
    short = mon.finish("short", {"utime": 0.01, "stime": 0.0, "maxrss_kb": 2048, "wall": 0.02}, 0.02)
    assert short["peak_rss"] == 2 * MIB and short["max_procs"] == 1  # never sampled, still has figures


def test_memory_and_cpu_limits_name_the_limit_and_the_figure_once():
    fake, clock = FakeOS(), Clock()
    mon = monitor(fake, clock)
    fake.add(10, 1, 10, rss=150 * MIB)
    fake.add(11, 10, 10, rss=81 * MIB)
    fake.add(20, 1, 20, user=11.0)
    running = [("mem", 10, 200 * MIB, None), ("cpu", 20, None, 10.0), ("ok", 20, 10**12, 10**6)]
    kills = tick(mon, running)
    assert kills == [("mem", "memory limit 200 MiB exceeded: 231 MiB (tree RSS)"),
                     ("cpu", "cpu time limit 10s exceeded: 11.0s CPU (user+system, whole tree)")]
    clock.t += 2
    assert tick(mon, running) == []  # asked once; the kill is under way
    assert mon.limit_reason("mem").startswith("memory limit")


def test_series_stays_bounded_and_small_for_a_day_long_try():
    s = Series()
    for i in range(43_200):  # a day at one sample every 2 s
        s.add(i * 2.0, 99.9, 3 * 1024**3 + i)
    data = s.as_json()
    assert len(data["t"]) <= MAX_POINTS and len(data["t"]) >= MAX_POINTS // 2
    assert data["t"] == sorted(data["t"]) and data["t"][-1] >= 86_000
    figures = {"cpu_user": 12345.678, "cpu_system": 123.456, "peak_rss": 3 * 1024**3, "avg_cpu_percent": 99.9,
               "peak_cpu_percent": 100.0, "read_bytes": 10**12, "write_bytes": 10**12, "wall": 86400.0,
               "max_procs": 100, "max_threads": 1000, "series": data}
    assert len(json.dumps(figures).encode()) < 4096


def test_admission_holds_below_the_threshold_and_says_why():
    host = HostSample(mem_total=1000 * MIB, mem_available=30 * MIB, cpu_count=2, load_1m=0.0)
    pct = admission_for("10%", host)
    assert pct.holding and pct.reason == "admission control: free memory 3% < min_free_memory 10%"
    size = admission_for("2GiB", host)
    assert size.holding and size.reason == "admission control: free memory 30 MiB < min_free_memory 2.0 GiB"
    assert admission_for("1%", host).holding is False and admission_for("", host).reason is None


def test_monitor_rereads_the_setting_and_free_memory():
    fake, clock = FakeOS(), Clock()
    mon = monitor(fake, clock, min_free_memory="60%")
    assert mon.hold() == "admission control: free memory 50% < min_free_memory 60%"
    mon.settings.min_free_memory = "40%"  # a reload
    assert mon.hold() is None
    fake.mem = HostSample(mem_total=1000 * MIB, mem_available=100 * MIB, cpu_count=2, load_1m=0.0)
    clock.t += 1  # older than ADMISSION_MAX_AGE: read again
    assert mon.hold() == "admission control: free memory 10% < min_free_memory 40%"


@pytest.mark.parametrize(("text", "expected"), [("512MiB", 512 * MIB), ("1G", 1 << 30), ("200 MB", 200 * MIB),
                                                ("4096", 4096), (1024, 1024), ("1.5k", 1536)])
def test_parse_size(text, expected):
    assert parse_size(text, "memory_limit") == expected


@pytest.mark.parametrize("bad", ["lots", "-5", "0", True, "5 XB", None])
def test_parse_size_refuses_with_the_setting_name(bad):
    with pytest.raises(ValueError, match="^memory_limit: "):
        parse_size(bad, "memory_limit")


def test_durations_thresholds_and_formatting():
    assert parse_duration("10m", "x") == 600.0 and parse_duration(90, "x") == 90.0
    assert parse_duration(timedelta(hours=1), "x") == 3600.0 and parse_duration("1.5h", "x") == 5400.0
    assert parse_threshold("10%", "x") == ("percent", 10.0) and parse_threshold("2GiB", "x") == ("bytes", 2.0 * 2**30)
    with pytest.raises(ValueError, match="at most 100"):
        parse_threshold("150%", "min_free_memory")
    with pytest.raises(ValueError, match="cpu_time_limit"):
        parse_duration("soon", "cpu_time_limit")
    assert format_bytes(231 * MIB) == "231 MiB" and format_bytes(1.5 * 2**30) == "1.5 GiB"


def test_task_limits_are_validated_serialized_and_filled_from_default_args():
    from flow.serialize import serialize_dag

    with DAG("lim", schedule=None, default_args={"memory_limit": "1G", "cpu_time_limit": "10m"}) as dag:
        BashOperator(task_id="a", bash_command="true")
        BashOperator(task_id="b", bash_command="true", memory_limit=200 * MIB, cpu_time_limit=5)
    tasks = {t["task_id"]: t for t in serialize_dag(dag)["tasks"]}
    assert (tasks["a"]["memory_limit"], tasks["a"]["cpu_time_limit"]) == (1 << 30, 600.0)
    assert (tasks["b"]["memory_limit"], tasks["b"]["cpu_time_limit"]) == (200 * MIB, 5.0)
    with pytest.raises(DagDefinitionError, match=r"DAG 'bad', BashOperator 'x': memory_limit: expected a size"):
        with DAG("bad", schedule=None):
            BashOperator(task_id="x", bash_command="true", memory_limit="a lot")
