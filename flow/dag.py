"""The DAG object: a named set of tasks, their schedule and the run-level settings.

A DAG is only a description. It never runs anything itself: it is serialized (flow.serialize)
for the scheduler, and re-imported in a worker process when one of its Python tasks runs.
"""

from __future__ import annotations

import heapq
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import pendulum

if TYPE_CHECKING:
    from flow.operators.base import BaseOperator

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_FLOW_DIR = os.path.dirname(os.path.abspath(__file__))

_context_stack: list[DAG] = []
_collector: list[DAG] | None = None
"""Set by flow.dagbag while a file loads: every DAG created then is recorded, assigned or not."""


class DagDefinitionError(ValueError):
    """A DAG or task was declared in a way that can never run; the message names the DAG and task."""


class DuplicateTaskIdError(DagDefinitionError):
    pass


class CycleError(DagDefinitionError):
    pass


def validate_id(value: object, what: str, where: str) -> str:
    """dag_id and task_id end up in file paths, URLs and log folders, so keep them to a safe alphabet."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: {what} must be a str, not {type(value).__name__}")
    if not _ID_RE.match(value):
        raise DagDefinitionError(
            f"{where}: {what} {value!r} must be 1-250 characters of letters, digits, '_', '-' or '.'"
        )
    return value


DATA_INTERVALS_ENV = "FLOW_CREATE_CRON_DATA_INTERVALS"
"""Set by flowd from its ``create_cron_data_intervals`` setting for the parse child of its DAG folder."""


def default_cron_data_intervals() -> bool:
    """The folder's default reading of cron schedules: trigger (False) unless flowd's setting says otherwise."""
    return os.environ.get(DATA_INTERVALS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def get_current_dag() -> DAG | None:
    return _context_stack[-1] if _context_stack else None


@contextmanager
def collect_dags() -> Iterator[list[DAG]]:
    """Record every DAG created inside the block, so a loader finds DAGs that no global refers to."""
    global _collector
    outer, depth = _collector, len(_context_stack)
    collected: list[DAG] = []
    _collector = collected
    try:
        yield collected
    finally:
        _collector = outer
        del _context_stack[depth:]


def caller_location() -> tuple[str, int]:
    """The first frame outside the flow package: where the user declared the object."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_FLOW_DIR + os.sep):
        frame = frame.f_back
    if frame is None:
        return "<unknown>", 0
    return os.path.abspath(frame.f_code.co_filename), frame.f_lineno


def system_timezone() -> str:
    """The zone naive dates are read in: FLOW_DEFAULT_TIMEZONE, else the host's zone, else UTC."""
    name = os.environ.get("FLOW_DEFAULT_TIMEZONE", "").strip()
    if name:
        try:
            pendulum.timezone(name)
        except Exception:
            raise DagDefinitionError(
                f"FLOW_DEFAULT_TIMEZONE={name!r} is not a known IANA time zone (e.g. 'Europe/Berlin')"
            ) from None
        return name
    try:
        with open("/etc/timezone", encoding="utf-8") as f:
            name = f.readline().strip()
    except OSError:
        name = ""
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
        except OSError:
            target = ""
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
    if name:
        try:
            pendulum.timezone(name)
            return name
        except Exception:
            pass
    return "UTC"


def zone_name(tz: tzinfo, when: datetime, where: str) -> str:
    """An IANA name for an aware datetime's zone: the schedule needs a zone with DST rules, not an offset."""
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if isinstance(key, str) and key:
        return key
    name = getattr(tz, "name", None)
    if isinstance(name, str) and name and not name.startswith(("+", "-")):
        try:
            pendulum.timezone(name)
            return name
        except Exception:
            pass
    offset = tz.utcoffset(when)
    if offset is None:
        raise DagDefinitionError(f"{where}: start_date has a tzinfo without a UTC offset")
    if offset == timedelta(0):
        return "UTC"
    hours, rem = divmod(offset.total_seconds(), 3600)
    if rem == 0 and -14 <= hours <= 12:
        return f"Etc/GMT{-int(hours):+d}"
    raise DagDefinitionError(
        f"{where}: start_date's zone is a fixed offset of {offset}; use an IANA zone such as "
        f"pendulum.datetime(..., tz='Asia/Kolkata')"
    )


def _as_utc(value: object, tz_name: str, what: str, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{where}: {what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        value = pendulum.instance(value, tz=tz_name)
    return value.astimezone(UTC)


def _seconds(value: object, what: str, where: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{where}: {what} must be a timedelta (or seconds), not {type(value).__name__}")


def _callbacks(value: object, what: str, where: str) -> list[Callable[..., Any]]:
    if value is None:
        return []
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not callable(item):
            raise TypeError(f"{where}: {what} must be a callable or a list of callables")
    return items


_UNSET: Any = object()

DAG_ARGS_IGNORED = frozenset({
    "owner_links", "access_control", "sla_miss_callback", "default_view", "orientation", "jinja_environment_kwargs",
    "template_undefined", "auto_register", "fail_stop", "fail_fast", "max_consecutive_failed_dag_runs",
    "disable_bundle_versioning", "dag_run_timeout", "deadline", "on_execute_callback",
})
"""Accepted so Airflow files load: display-only, or about Airflow's web server and permissions."""
DAG_ARGS_WARNED = frozenset({"sla_miss_callback", "fail_stop", "fail_fast", "max_consecutive_failed_dag_runs"})
DAG_ARGS_UNSUPPORTED = {
    "timetable": "give schedule= a cron string, a preset, a timedelta or one of flow's timetables",
}


class DAG:
    """Airflow's DAG: use as a context manager, pass as ``dag=`` to tasks, or build with ``@dag``."""

    def __init__(
        self,
        dag_id: str,
        *,
        schedule: Any = _UNSET,
        schedule_interval: Any = _UNSET,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        catchup: bool = False,
        default_args: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        doc_md: str | None = None,
        params: dict[str, Any] | None = None,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        dagrun_timeout: timedelta | None = None,
        on_success_callback: Any = None,
        on_failure_callback: Any = None,
        is_paused_upon_creation: bool | None = None,
        dag_display_name: str | None = None,
        user_defined_macros: dict[str, Any] | None = None,
        user_defined_filters: dict[str, Any] | None = None,
        template_searchpath: str | list[str] | None = None,
        render_template_as_native_obj: bool = False,
        concurrency: int | None = None,
        create_cron_data_intervals: bool | None = None,
        **airflow_only: Any,
    ) -> None:
        where = f"DAG {dag_id!r}"
        self.dag_id = validate_id(dag_id, "dag_id", "DAG")
        self.fileloc, self.lineno = caller_location()
        self.warnings: list[str] = []
        self.edge_labels: dict[tuple[str, str], str] = {}
        self.dag_display_name = dag_display_name
        self.user_defined_macros = dict(user_defined_macros or {})
        self.user_defined_filters = dict(user_defined_filters or {})
        self.template_searchpath = (
            [template_searchpath] if isinstance(template_searchpath, str) else list(template_searchpath or [])
        )
        self.render_template_as_native_obj = bool(render_template_as_native_obj)
        if concurrency is not None:
            max_active_tasks = concurrency
        self._accept_airflow_only(airflow_only, where)
        if schedule is not _UNSET and schedule_interval is not _UNSET:
            raise DagDefinitionError(f"{where}: give schedule or schedule_interval, not both")
        self.schedule = None if schedule is _UNSET and schedule_interval is _UNSET else (
            schedule if schedule is not _UNSET else schedule_interval
        )
        schedule_zone = None
        if hasattr(self.schedule, "flow_schedule"):  # an Airflow timetable (flow.compat.timetables)
            schedule_zone = self.schedule.flow_timezone
            if create_cron_data_intervals is None:
                create_cron_data_intervals = self.schedule.flow_data_intervals
            self.schedule = self.schedule.flow_schedule
        if create_cron_data_intervals is None:
            create_cron_data_intervals = default_cron_data_intervals()
        self.create_cron_data_intervals = bool(create_cron_data_intervals)
        if default_args is not None and not isinstance(default_args, dict):
            raise TypeError(f"{where}: default_args must be a dict, not {type(default_args).__name__}")
        self.default_args: dict[str, Any] = dict(default_args or {})
        if start_date is None:
            start_date = self.default_args.get("start_date")
        if end_date is None:
            end_date = self.default_args.get("end_date")
        if isinstance(start_date, datetime) and start_date.tzinfo is not None and start_date.utcoffset() is not None:
            self.timezone = zone_name(start_date.tzinfo, start_date, where)
        else:
            self.timezone = system_timezone()
        if schedule_zone:
            self.timezone = schedule_zone
        self.start_date = _as_utc(start_date, self.timezone, "start_date", where)
        self.end_date = _as_utc(end_date, self.timezone, "end_date", where)
        if not isinstance(catchup, bool):
            raise TypeError(f"{where}: catchup must be True or False")
        self.catchup = catchup
        if tags is not None and (not isinstance(tags, list | tuple | set) or not all(isinstance(t, str) for t in tags)):
            raise TypeError(f"{where}: tags must be a list of str")
        self.tags: list[str] = list(tags or [])
        for name, text in (("description", description), ("doc_md", doc_md)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{where}: {name} must be a str")
        self.description = description
        self.doc_md = doc_md
        if params is not None and not isinstance(params, dict):
            raise TypeError(f"{where}: params must be a dict, not {type(params).__name__}")
        from flow.params import split_params

        self.params, self.param_schemas = split_params(params)
        for name, value in (("max_active_runs", max_active_runs), ("max_active_tasks", max_active_tasks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TypeError(f"{where}: {name} must be a positive int, not {value!r}")
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        self.dagrun_timeout = _seconds(dagrun_timeout, "dagrun_timeout", where)
        self.on_success_callback = _callbacks(on_success_callback, "on_success_callback", where)
        self.on_failure_callback = _callbacks(on_failure_callback, "on_failure_callback", where)
        if is_paused_upon_creation is not None and not isinstance(is_paused_upon_creation, bool):
            raise TypeError(f"{where}: is_paused_upon_creation must be True, False or None")
        self.is_paused_upon_creation = is_paused_upon_creation
        self.task_dict: dict[str, BaseOperator] = {}
        self._check_schedule()
        if _collector is not None:
            _collector.append(self)

    def _accept_airflow_only(self, args: dict[str, Any], where: str) -> None:
        """Airflow DAG arguments that change nothing here are accepted; the rest fail clearly."""
        from flow.exceptions import NotSupportedByFlow

        for key, value in args.items():
            if key in DAG_ARGS_IGNORED:
                if key in DAG_ARGS_WARNED and value is not None:
                    self.warn(f"{key} is accepted but not enforced by flow")
                continue
            hint = DAG_ARGS_UNSUPPORTED.get(key)
            if hint is not None:
                raise NotSupportedByFlow(f"{where}: flow does not support the DAG argument {key} ({hint})")
            raise TypeError(f"{where}: unexpected argument {key} for DAG")

    def warn(self, message: str) -> None:
        """Something the file asked for that flow accepts but does not do; listed with the import errors."""
        text = f"DAG {self.dag_id!r}: {message}"
        if text not in self.warnings:
            self.warnings.append(text)

    def _check_schedule(self) -> None:
        from flow.schedule import ScheduleError, parse_schedule

        value = self.schedule
        if value is not None and not isinstance(value, str | timedelta):
            raise TypeError(
                f"DAG {self.dag_id!r}: schedule must be a cron string, a preset such as '@daily', "
                f"a timedelta or None, not {type(value).__name__}"
            )
        try:
            parse_schedule(value, self.timezone)
        except ScheduleError as e:
            raise ScheduleError(f"DAG {self.dag_id!r}: {e}") from None

    @property
    def schedule_interval(self) -> Any:
        return self.schedule

    def __enter__(self) -> DAG:
        _context_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _context_stack.pop()

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"

    @property
    def tasks(self) -> list[BaseOperator]:
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    def get_task(self, task_id: str) -> BaseOperator:
        try:
            return self.task_dict[task_id]
        except KeyError:
            raise KeyError(f"DAG {self.dag_id!r} has no task {task_id!r}") from None

    def has_task(self, task_id: str) -> bool:
        return task_id in self.task_dict

    def add_task(self, task: BaseOperator) -> None:
        existing = self.task_dict.get(task.task_id)
        if existing is task:
            return
        if existing is not None:
            raise DuplicateTaskIdError(f"DAG {self.dag_id!r}: task id {task.task_id!r} is already used")
        self.task_dict[task.task_id] = task

    @property
    def roots(self) -> list[BaseOperator]:
        return [t for t in self.task_dict.values() if not t.upstream_task_ids]

    @property
    def leaves(self) -> list[BaseOperator]:
        return [t for t in self.task_dict.values() if not t.downstream_task_ids]

    def check_cycle(self) -> None:
        """Raise CycleError showing one cycle as a path, so the author sees which edge to remove."""
        color: dict[str, int] = {}
        path: list[str] = []

        def visit(start: str) -> None:
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(self.task_dict[start].downstream_task_ids))]
            color[start] = 1
            path.append(start)
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    color[node] = 2
                    continue
                state = color.get(child, 0)
                if state == 1:
                    cycle = path[path.index(child):] + [child]
                    raise CycleError(f"DAG {self.dag_id!r} has a cycle: {' -> '.join(cycle)}")
                if state == 0 and child in self.task_dict:
                    color[child] = 1
                    path.append(child)
                    stack.append((child, iter(self.task_dict[child].downstream_task_ids)))

        for task_id in self.task_dict:
            if color.get(task_id, 0) == 0:
                visit(task_id)

    def topological_sort(self) -> list[BaseOperator]:
        """Upstream before downstream; among ready tasks, the one declared first goes first."""
        self.check_cycle()
        order = {task_id: i for i, task_id in enumerate(self.task_dict)}
        missing = {
            task_id: sum(1 for up in task.upstream_task_ids if up in self.task_dict)
            for task_id, task in self.task_dict.items()
        }
        ready = [order[t] for t, n in missing.items() if n == 0]
        heapq.heapify(ready)
        ids = list(self.task_dict)
        result: list[BaseOperator] = []
        while ready:
            task = self.task_dict[ids[heapq.heappop(ready)]]
            result.append(task)
            for down in task.downstream_task_ids:
                if down in missing:
                    missing[down] -= 1
                    if missing[down] == 0:
                        heapq.heappush(ready, order[down])
        return result

    def validate(self) -> None:
        """Everything the loader checks once the file has finished building the DAG."""
        for task in self.task_dict.values():
            for other in (*task.upstream_task_ids, *task.downstream_task_ids):
                if other not in self.task_dict:
                    raise DagDefinitionError(
                        f"DAG {self.dag_id!r}: task {task.task_id!r} is linked to {other!r}, which is not in this DAG"
                    )
        self.check_cycle()
