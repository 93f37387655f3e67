"""BashOperator: a shell command that the executor runs with ``bash -c`` after templating.

The command never runs in this module: flow/ stays free of subprocesses, so the runner
renders the command (flow.runtime.render_bash) and execs bash itself, without a Python start-up.
"""

from __future__ import annotations

from typing import Any

from flow.operators.base import BaseOperator


class BashOperator(BaseOperator):
    """``env`` replaces the task's environment unless ``append_env=True`` (Airflow's semantics)."""

    template_fields = ("bash_command", "env", "cwd")
    template_ext = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, cwd=cwd, **kwargs)
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise TypeError(f"{self._where}: bash_command must be a non-empty str")
        if env is not None:
            for key, value in env.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"{self._where}: env must map str to str; {key!r} maps to {value!r}")
        self.bash_command = bash_command
        self.append_env = bool(append_env)

    def execute(self, context: dict[str, Any]) -> Any:
        raise RuntimeError(
            f"{self._where}: a bash command is run by the executor, not inside Python; "
            "a subclass that overrides execute() cannot call BashOperator.execute()"
        )
