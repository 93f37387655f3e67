"""ExternalPythonOperator: call a function with another Python interpreter (a virtualenv's, say).

As in Airflow, the function travels as its source code (so it must be self-contained: imports
inside it, no closures) and its arguments as JSON; its return value comes back as JSON on the
last stdout line and becomes the "return_value" XCom. The task's worker process replaces itself
by ``PYTHON -c SCRIPT`` (flow.executors.child), so the interpreter's exit status is the try's.
A missing interpreter fails the task with one line naming it, before anything runs.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import textwrap
from collections.abc import Callable
from typing import Any

from flow.operators.bash import bash_outcome_extra
from flow.operators.python import PythonOperator

_RUNNER = """
import json, sys
{source}
_args, _kwargs = json.loads({payload!r})
_value = {name}(*_args, **_kwargs)
sys.stdout.flush()
print(json.dumps(_value))
"""


def function_source(fn: Callable[..., Any]) -> str:
    """The function's own source, dedented, without its decorators (Airflow strips @task too)."""
    lines = textwrap.dedent(inspect.getsource(fn)).splitlines()
    while lines and lines[0].lstrip().startswith("@"):
        lines.pop(0)
    return "\n".join(lines)


class ExternalPythonOperator(PythonOperator):
    exec_bash = True

    def __init__(self, *, python: str, expect_airflow: bool = True, expect_pendulum: bool = False,
                 skip_on_exit_code: int | list[int] | None = None, string_args: Any = None,
                 serializer: str | None = None, use_dill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(python, str) or not python:
            raise TypeError(f"{self._where}: python must be the path of an interpreter")
        self.python = python
        codes = [] if skip_on_exit_code is None else ([skip_on_exit_code] if isinstance(skip_on_exit_code, int)
                                                      else list(skip_on_exit_code))
        self.skip_on_exit_code = codes
        self.append_env = True

    def serialize_extra(self) -> dict[str, Any]:
        return bash_outcome_extra(self.skip_on_exit_code, True, False)

    def execute(self, context: dict[str, Any]) -> Any:
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise FileNotFoundError(f"{self._where}: the interpreter {self.python} does not exist or is not "
                                    "executable")
        try:
            payload = json.dumps([list(self.op_args), dict(self.op_kwargs)])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self._where}: op_args and op_kwargs must be JSON for another interpreter ({exc})") from None
        script = _RUNNER.format(source=function_source(self.python_callable), payload=payload,
                                name=self.python_callable.__name__)
        return f"exec {shlex.quote(self.python)} -c {shlex.quote(script)}"
