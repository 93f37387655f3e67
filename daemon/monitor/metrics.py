"""What flowd measures for Prometheus: a registry fed by the engine's events and read on scrape.

Two kinds of figures. Counts of things that happen (tries started and finished, runs finished,
scheduling delays) are counters and histograms updated from the engine's events, the same events
the socket pushes to flowtui, so measuring costs the engine nothing it does not already do. Levels
(runs and task instances by state, slots, queue depth, sizes, import errors, loop lag) are read
from the engine's memory by a collector when someone scrapes, on the engine's own loop, so a
scrape sees one consistent moment and an unscraped flowd pays nothing at all.

The exposition itself is prometheus_client's (text or OpenMetrics); nothing here formats it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from flow.states import ACTIVE, RunState, TaskState

log = logging.getLogger("flow.metrics")

DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Seconds: a healthy flowd starts things within a second; the long tail is what an alert wants."""
TRY_OUTCOMES = frozenset({TaskState.SUCCESS.value, TaskState.FAILED.value, TaskState.UP_FOR_RETRY.value})
_ACTIVE = frozenset(s.value for s in ACTIVE)

Key = tuple[str, str, str]


class EngineCollector(Collector):
    """Levels read from the engine (and its server, housekeeping and notifications) on scrape."""

    def __init__(self, engine: Any, server: Any, last_success: dict[str, float],
                 now: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.server = server
        self.last_success = last_success
        self.now = now

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        runs = GaugeMetricFamily("flow_dag_runs", "Runs flowd holds (queued or running), by state", labels=["state"])
        run_counts = dict.fromkeys((RunState.QUEUED.value, RunState.RUNNING.value), 0)
        ti_counts = dict.fromkeys((s.value for s in TaskState), 0)
        sensors = 0
        for run in engine.runs.values():
            run_counts[run.state.value] = run_counts.get(run.state.value, 0) + 1
            operators = {t["task_id"]: t.get("operator", "") for t in engine.dags.get(run.dag_id, {}).get("tasks", ())}
            for task_id, view in run.tis.items():
                ti_counts[view.state.value] = ti_counts.get(view.state.value, 0) + 1
                if view.state in ACTIVE and str(operators.get(task_id, "")).endswith("Sensor"):
                    sensors += 1
        for state, n in sorted(run_counts.items()):
            runs.add_metric([state], n)
        yield runs
        tis = GaugeMetricFamily("flow_task_instances", "Task instances of the runs flowd holds, by state",
                                labels=["state"])
        for state, n in sorted(ti_counts.items()):
            tis.add_metric([state], n)
        yield tis
        yield GaugeMetricFamily("flow_queue_depth", "Task instances ready to start and waiting for a slot",
                                value=ti_counts.get(TaskState.SCHEDULED.value, 0))
        running = engine.running_count()
        yield GaugeMetricFamily("flow_slots_in_use", "Tasks queued or running (counted against parallelism)",
                                value=running)
        yield GaugeMetricFamily("flow_slots", "parallelism: tasks that may run at once", value=engine.settings.parallelism)
        yield GaugeMetricFamily("flow_sensors_running", "Sensor tasks queued or running", value=sensors)
        active = [d for d in engine.dags if d not in engine.inactive]
        yield GaugeMetricFamily("flow_dags", "DAGs loaded from the DAG folder", value=len(active))
        yield GaugeMetricFamily("flow_dags_paused", "Loaded DAGs that are paused",
                                value=sum(1 for d in active if d in engine.paused))
        errors = GaugeMetricFamily("flow_dag_file_import_errors", "1 for each DAG file that fails to import",
                                   labels=["file"])
        for row in engine.store.import_errors():
            errors.add_metric([row["filename"]], 1)
        yield errors
        yield GaugeMetricFamily("flow_loop_lag_seconds", "How late flowd's event loop wakes (0.5 s probe)",
                                value=self.server.loop_lag_ms / 1000.0)
        last = GaugeMetricFamily("flow_dag_last_success_timestamp_seconds",
                                 "When the DAG's last run succeeded (Unix time)", labels=["dag_id"])
        for dag_id, when in sorted(self.last_success.items()):
            last.add_metric([dag_id], when)
        yield last
        notifications = engine.notifications
        if notifications is not None:
            yield CounterMetricFamily("flow_alerts_sent", "Alerts delivered", value=notifications.sent)
            yield CounterMetricFamily("flow_alerts_failed", "Alerts that failed after every retry",
                                      value=notifications.failed)
        housekeeping = engine.housekeeping
        if housekeeping is not None:
            storage = housekeeping.status()
            if storage.get("db_bytes") is not None:
                yield GaugeMetricFamily("flow_database_bytes", "Size of the database (at the last sweep)",
                                        value=storage["db_bytes"])
            if storage.get("log_bytes") is not None:
                yield GaugeMetricFamily("flow_log_folder_bytes", "Size of the task log folder (at the last sweep)",
                                        value=storage["log_bytes"])
        admission = getattr(self.server, "admission", None)
        if admission is not None:
            conns = GaugeMetricFamily("flow_socket_connections", "Clients on flowd's socket", labels=["phase"])
            conns.add_metric(["pending"], admission.pending_count)
            conns.add_metric(["open"], admission.active_count)
            yield conns


class Metrics:
    """flowd's registry; `observe` is an engine listener (it never raises, never blocks)."""

    def __init__(self, engine: Any, server: Any, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.wall = wall
        self.registry = CollectorRegistry(auto_describe=False)
        self.tries_started = Counter("flow_task_tries_started", "Task tries that started running",
                                     registry=self.registry)
        self.tries_finished = Counter("flow_task_tries_finished", "Task tries that ended, by outcome",
                                      ["outcome"], registry=self.registry)
        for outcome in sorted(TRY_OUTCOMES):
            self.tries_finished.labels(outcome)
        self.runs_finished = Counter("flow_dag_runs_finished", "Runs that ended, by state", ["state"],
                                     registry=self.registry)
        for state in (RunState.SUCCESS.value, RunState.FAILED.value):
            self.runs_finished.labels(state)
        self.run_delay = Histogram("flow_dag_run_start_delay_seconds",
                                   "From a run's fire time (scheduled) or trigger (manual) to its start",
                                   buckets=DELAY_BUCKETS, registry=self.registry)
        self.task_delay = Histogram("flow_task_start_delay_seconds",
                                    "From a task instance being ready (scheduled) to its try running",
                                    buckets=DELAY_BUCKETS, registry=self.registry)
        self.parse_seconds: dict[str, float] = {}
        self.last_success: dict[str, float] = {}
        self._ready: dict[Key, float] = {}
        self._active: set[Key] = set()
        self.registry.register(EngineCollector(engine, server, self.last_success, wall))
        self.registry.register(_ParseCollector(self.parse_seconds))
        self.registry.register(ProcessCollector(namespace="flowd", registry=None))
        for run in engine.runs.values():  # adopted at start: their ends still count
            for task_id, view in run.tis.items():
                if view.state in ACTIVE:
                    self._active.add((run.dag_id, run.run_id, task_id))
        self._seed_last_success()

    def _seed_last_success(self) -> None:
        try:
            for dag_id, row in self.engine.store.latest_runs().items():
                if row.get("state") == RunState.SUCCESS.value and row.get("end_date") is not None:
                    self.last_success[dag_id] = row["end_date"].timestamp()
        except Exception as exc:
            log.warning("metrics: cannot read the DAGs' last runs: %s", exc)

    def parsed(self, path: str, seconds: float) -> None:
        """How long the last parse of a DAG file took (for whoever parses files to report)."""
        self.parse_seconds[path] = seconds

    def observe(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            if kind == "ti":
                self._on_ti(payload)
            elif kind == "run":
                self._on_run(payload)
        except Exception:
            log.exception("metrics: could not count a %s event", kind)

    def _on_ti(self, p: dict[str, Any]) -> None:
        key = (p["dag_id"], p["run_id"], p["task_id"])
        state = p["state"]
        if state == TaskState.SCHEDULED.value:  # ready: its upstream is done, it waits for a slot
            self._ready[key] = self.clock()
        elif state == TaskState.RUNNING.value:
            self.tries_started.inc()
            self._active.add(key)
            ready = self._ready.pop(key, None)
            if ready is not None:
                self.task_delay.observe(max(0.0, self.clock() - ready))
        elif state in _ACTIVE:
            self._active.add(key)
        else:
            self._ready.pop(key, None)
            if key in self._active:
                self._active.discard(key)
                if state in TRY_OUTCOMES:
                    self.tries_finished.labels(state).inc()

    def _on_run(self, p: dict[str, Any]) -> None:
        state = p["state"]
        if state == RunState.RUNNING.value:
            run = next((r for r in self.engine.runs.values()
                        if r.dag_id == p["dag_id"] and r.run_id == p["run_id"]), None)
            if run is not None and run.start_date is not None:
                fired = run.data_interval_end if run.run_type == "scheduled" else run.queued_at
                self.run_delay.observe(max(0.0, (run.start_date - fired).total_seconds()))
        elif state in (RunState.SUCCESS.value, RunState.FAILED.value):
            self.runs_finished.labels(state).inc()
            if state == RunState.SUCCESS.value:
                self.last_success[p["dag_id"]] = self.wall()


class _ParseCollector(Collector):
    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("flow_dag_file_parse_seconds", "How long the last parse of each DAG file took",
                                   labels=["file"])
        for path, seconds in sorted(self.seconds.items()):
            family.add_metric([path], seconds)
        yield family
