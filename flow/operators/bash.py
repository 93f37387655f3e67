"""BashOperator: a shell command that the executor runs with ``bash -c`` after templating.

The command never runs in this module: flow/ stays free of subprocesses, so the runner
renders the command (flow.runtime.render_bash) and execs bash itself, without a Python start-up.
With ``ssh_conn_id`` the SSH executor renders it the same way and runs it on that connection's host.
"""

from __future__ import annotations

import json
from typing import Any

from flow.exceptions import NotSupportedByFlow
from flow.operators.base import BaseOperator


def bash_outcome_options(where: str, skip_on_exit_code: Any, output_processor: Any) -> tuple[list[int], bool]:
    """(exit statuses that mean "skipped", whether the last line is JSON), checked; shared with @task.bash."""
    codes = [] if skip_on_exit_code is None else (
        [skip_on_exit_code] if isinstance(skip_on_exit_code, int) else list(skip_on_exit_code))
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c < 256 for c in codes):
        raise TypeError(f"{where}: skip_on_exit_code must be an exit status 1-255 or a list of them, "
                        f"not {skip_on_exit_code!r}")
    if output_processor is not None and output_processor is not json.loads:
        raise NotSupportedByFlow(f"{where}: flow does not support an output_processor other than json.loads "
                                 "(the command's last line is read by the executor, outside Python)")
    return codes, output_processor is json.loads


def bash_outcome_extra(codes: list[int], output_json: bool, multiple_outputs: bool) -> dict[str, Any]:
    """What the runner needs to turn a bash exit and last line into a state and XComs (flow.runtime.bash_xcom)."""
    extra: dict[str, Any] = {"skip_on_exit_code": codes}
    if output_json:
        extra["output_json"] = True
    if multiple_outputs:
        extra["multiple_outputs"] = True
    return extra


class BashOperator(BaseOperator):
    """``env`` replaces the task's environment unless ``append_env=True`` (Airflow's semantics).

    On a remote host (``ssh_conn_id``) ``env`` is added to the login environment there: replacing
    it would take away the PATH and HOME the remote account relies on.
    """

    template_fields = ("bash_command", "env", "cwd")
    template_ext = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        ssh_conn_id: str | None = None,
        skip_on_exit_code: int | list[int] | tuple[int, ...] | None = 99,
        output_encoding: str = "utf-8",
        multiple_outputs: bool = False,
        output_processor: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, cwd=cwd, **kwargs)
        self.skip_on_exit_code, self.output_json = bash_outcome_options(self._where, skip_on_exit_code, output_processor)
        self.multiple_outputs = bool(multiple_outputs)
        if ssh_conn_id is not None and (not isinstance(ssh_conn_id, str) or not ssh_conn_id.strip()):
            raise TypeError(f"{self._where}: ssh_conn_id must be a connection name (a non-empty str), "
                            f"not {ssh_conn_id!r}")
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise TypeError(f"{self._where}: bash_command must be a non-empty str")
        if env is not None:
            for key, value in env.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"{self._where}: env must map str to str; {key!r} maps to {value!r}")
        self.bash_command = bash_command
        self.append_env = bool(append_env)
        self.ssh_conn_id = ssh_conn_id

    def serialize_extra(self) -> dict[str, Any]:
        """The connection name is what routes the try to the SSH executor (see executors/routing.py)."""
        extra = bash_outcome_extra(self.skip_on_exit_code, self.output_json, self.multiple_outputs)
        if self.dag is not None and self.dag.template_searchpath:
            extra["template_searchpath"] = list(self.dag.template_searchpath)
        if self.ssh_conn_id:
            extra["ssh_conn_id"] = self.ssh_conn_id
        return extra

    def execute(self, context: dict[str, Any]) -> Any:
        raise RuntimeError(
            f"{self._where}: a bash command is run by the executor, not inside Python; "
            "a subclass that overrides execute() cannot call BashOperator.execute()"
        )
