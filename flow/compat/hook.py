"""The ``airflow`` import namespace inside flow's processes: a ``sys.meta_path`` finder.

Installed by the places that run DAG code under flow (``flow.dagbag.load_file``, used by the
parse child, the task workers and ``flow dags test`` / ``flow tasks test``), never by a plain
``import flow``: outside those processes a real apache-airflow installed beside flow is left
alone. Inside them the finder is put first on ``sys.meta_path``, so a folder behaves the same
whether Airflow is installed or not.

Each Airflow module name maps to one *area* module of this package (``flow.compat.core``,
``flow.compat.operators``, ...). The module the DAG file receives is a thin alias whose
attributes are looked up in the area, so ``airflow.operators.bash.BashOperator is
flow.operators.BashOperator``. A name the area does not define, and any Airflow module not in the
table, raises :class:`flow.exceptions.NotSupportedByFlow` naming the feature, which fails that
file's import with one clear line instead of a bare ``ImportError`` from deep inside flow.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

from flow.compat._features import not_supported
from flow.exceptions import NotSupportedByFlow

ROOT = "airflow"

_CORE = "flow.compat.core"
_OPS = "flow.compat.operators"
_UTILS = "flow.compat.utils"
_EXC = "flow.compat.exceptions"
_MACROS = "flow.compat.macros"
_TIMETABLES = "flow.compat.timetables"
_NONE = "flow.compat.unsupported"

AREAS: dict[str, str] = {
    "airflow": _CORE,
    "airflow.sdk": _CORE,
    "airflow.sdk.definitions": _CORE,
    "airflow.sdk.definitions.dag": _CORE,
    "airflow.sdk.definitions.param": _CORE,
    "airflow.sdk.definitions.xcom_arg": _CORE,
    "airflow.sdk.definitions.edges": _CORE,
    "airflow.sdk.definitions.context": _CORE,
    "airflow.sdk.definitions.asset": _CORE,
    "airflow.sdk.bases": _CORE,
    "airflow.sdk.bases.operator": _CORE,
    "airflow.sdk.bases.decorator": _CORE,
    "airflow.sdk.execution_time": _CORE,
    "airflow.sdk.execution_time.context": _CORE,
    "airflow.sdk.types": _CORE,
    "airflow.sdk.exceptions": _EXC,
    "airflow.decorators": _CORE,
    "airflow.models": _CORE,
    "airflow.models.dag": _CORE,
    "airflow.models.baseoperator": _CORE,
    "airflow.models.param": _CORE,
    "airflow.models.variable": _CORE,
    "airflow.models.xcom_arg": _CORE,
    "airflow.models.taskinstance": _CORE,
    "airflow.models.dagrun": _CORE,
    "airflow.exceptions": _EXC,
    "airflow.macros": _MACROS,
    "airflow.datasets": _CORE,
    "airflow.operators": _OPS,
    "airflow.operators.bash": _OPS,
    "airflow.operators.bash_operator": _OPS,
    "airflow.operators.python": _OPS,
    "airflow.operators.python_operator": _OPS,
    "airflow.operators.empty": _OPS,
    "airflow.operators.dummy": _OPS,
    "airflow.operators.dummy_operator": _OPS,
    "airflow.operators.branch": _OPS,
    "airflow.operators.latest_only": _OPS,
    "airflow.operators.latest_only_operator": _OPS,
    "airflow.operators.trigger_dagrun": _OPS,
    "airflow.operators.weekday": _OPS,
    "airflow.operators.datetime": _OPS,
    "airflow.operators.email": _OPS,
    "airflow.operators.email_operator": _OPS,
    "airflow.providers": _NONE,
    "airflow.providers.standard": _OPS,
    "airflow.providers.standard.operators": _OPS,
    "airflow.providers.standard.operators.bash": _OPS,
    "airflow.providers.standard.operators.python": _OPS,
    "airflow.providers.standard.operators.empty": _OPS,
    "airflow.providers.standard.operators.branch": _OPS,
    "airflow.providers.standard.operators.latest_only": _OPS,
    "airflow.providers.standard.operators.trigger_dagrun": _OPS,
    "airflow.providers.standard.operators.weekday": _OPS,
    "airflow.providers.standard.operators.datetime": _OPS,
    "airflow.providers.standard.decorators": _CORE,
    "airflow.providers.standard.utils": _UTILS,
    "airflow.providers.standard.utils.weekday": _UTILS,
    "airflow.providers.common": _NONE,
    "airflow.providers.common.compat": _NONE,
    "airflow.providers.common.compat.sdk": _CORE,
    "airflow.providers.ssh": _OPS,
    "airflow.providers.ssh.operators": _OPS,
    "airflow.providers.ssh.operators.ssh": _OPS,
    "airflow.providers.smtp": _OPS,
    "airflow.providers.smtp.operators": _OPS,
    "airflow.providers.smtp.operators.smtp": _OPS,
    "airflow.utils": _UTILS,
    "airflow.utils.dates": _UTILS,
    "airflow.utils.trigger_rule": _UTILS,
    "airflow.utils.edgemodifier": _UTILS,
    "airflow.utils.helpers": _UTILS,
    "airflow.utils.timezone": "flow.compat.timezone",
    "airflow.sdk.timezone": "flow.compat.timezone",
    "airflow.utils.state": _UTILS,
    "airflow.utils.context": _UTILS,
    "airflow.utils.weekday": _UTILS,
    "airflow.utils.decorators": _UTILS,
    "airflow.utils.task_group": _UTILS,
    "airflow.sensors": _OPS,
    "airflow.timetables": _TIMETABLES,
    "airflow.timetables.base": _TIMETABLES,
    "airflow.timetables.interval": _TIMETABLES,
    "airflow.timetables.trigger": _TIMETABLES,
    "airflow.timetables.events": _TIMETABLES,
    "airflow.timetables.simple": _TIMETABLES,
}

FEATURES: Sequence[tuple[str, str]] = (
    # (module prefix, what it is and what to use instead): the first matching prefix wins.
    ("airflow.providers.standard.sensors", "sensors (not yet supported by flow; poll in a task with retries)"),
    ("airflow.sensors", "sensors (not yet supported by flow; poll in a task with retries)"),
    ("airflow.providers.standard.operators.hitl", "human-in-the-loop operators"),
    ("airflow.providers.standard.triggers", "deferrable triggers"),
    ("airflow.triggers", "deferrable triggers"),
    ("airflow.providers.cncf.kubernetes", "Kubernetes"),
    ("airflow.providers", "this provider (flow supports the standard, ssh and smtp providers)"),
    ("airflow.example_dags", "Airflow's own example helper modules"),
    ("airflow.plugins_manager", "Airflow plugins (put shared code in a module beside the DAG file)"),
    ("airflow.listeners", "Airflow listeners"),
    ("airflow.configuration", "airflow.cfg settings (flow is configured in flowd.toml)"),
    ("airflow.io", "object storage paths"),
    ("airflow.operators.subdag", "SubDAGs (removed in Airflow 3; use task groups)"),
    ("airflow.task", "custom priority weight strategies"),
    ("airflow.hooks", "Airflow hooks and connections (flow's connections are in connections.toml)"),
    ("airflow.models.connection", "Airflow connections (flow's connections are in connections.toml)"),
    ("airflow.partition_mappers", "partitioned assets"),
    ("airflow.timetables.datasets", "asset-triggered schedules"),
    ("airflow.timetables.assets", "asset-triggered schedules"),
)


def describe_module(fullname: str) -> str:
    """The feature an unknown module belongs to. Python imports parents first, so the name may be
    a parent of the one the file wrote (``airflow.providers.cncf`` for its kubernetes provider)."""
    for prefix, feature in FEATURES:
        if fullname == prefix or fullname.startswith(prefix + ".") or prefix.startswith(fullname + "."):
            return feature
    return "this Airflow module"


def unsupported(what: str, feature: str) -> NotSupportedByFlow:
    return NotSupportedByFlow(f"{what}: flow does not support {feature}")


class AliasModule(types.ModuleType):
    """An Airflow module as the DAG file sees it: its names are the area module's objects."""

    def __init__(self, name: str, area: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package, so that its submodules import too
        self.__flow_area__ = area

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        area = importlib.import_module(self.__flow_area__)
        try:
            return getattr(area, name)
        except AttributeError:
            pass
        hint = not_supported(name)
        raise unsupported(f"{self.__name__}.{name}", hint or f"{name!r} (it is not part of flow's Airflow namespace)")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(getattr(importlib.import_module(self.__flow_area__), "__all__", ())))

    @property
    def __all__(self) -> list[str]:  # type: ignore[override]
        return list(getattr(importlib.import_module(self.__flow_area__), "__all__", ()))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return AliasModule(spec.name, AREAS[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class AirflowFinder(importlib.abc.MetaPathFinder):
    """Answers every ``airflow`` and ``airflow.*`` import; the rest is left to the other finders."""

    loader = _Loader()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname in AREAS and AREAS[fullname] != _NONE or fullname in AREAS and _has_children(fullname):
            return importlib.machinery.ModuleSpec(fullname, self.loader, is_package=True)
        raise unsupported(f"import {fullname}", describe_module(fullname))


def _has_children(name: str) -> bool:
    return any(other.startswith(name + ".") for other in AREAS)


_finder = AirflowFinder()


def install() -> None:
    """Put the finder first on sys.meta_path and forget a real Airflow imported before it (idempotent)."""
    if sys.meta_path and sys.meta_path[0] is _finder:
        return
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    sys.meta_path.insert(0, _finder)
    for name in [n for n in sys.modules if n == ROOT or n.startswith(ROOT + ".")]:
        if not isinstance(sys.modules[name], AliasModule):
            del sys.modules[name]


def uninstall() -> None:
    """Remove the finder and the alias modules (for tests that check a real Airflow is untouched)."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name in [n for n in sys.modules if n == ROOT or n.startswith(ROOT + ".")]:
        if isinstance(sys.modules[name], AliasModule):
            del sys.modules[name]


def installed() -> bool:
    return _finder in sys.meta_path
