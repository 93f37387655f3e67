"""BashOperator: a shell command that the executor runs with ``bash -c`` after templating.

The command never runs in this module: flow/ stays free of subprocesses, so the runner
renders the command (flow.runtime.render_bash) and execs bash itself, without a Python start-up.
With ``ssh_conn_id`` the SSH executor renders it the same way and runs it on that connection's host.
"""

from __future__ import annotations

from typing import Any

from flow.operators.base import BaseOperator


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
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, cwd=cwd, **kwargs)
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
        return {"ssh_conn_id": self.ssh_conn_id} if self.ssh_conn_id else {}

    def execute(self, context: dict[str, Any]) -> Any:
        raise RuntimeError(
            f"{self._where}: a bash command is run by the executor, not inside Python; "
            "a subclass that overrides execute() cannot call BashOperator.execute()"
        )
