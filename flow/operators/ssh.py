"""SSHOperator: a shell command run on another host, named by a connection in connections.toml.

It is a BashOperator with a required connection: the same templating, env, cwd, timeout, retries
and XCom of the last stdout line, so moving a command between hosts changes one argument.
"""

from __future__ import annotations

from typing import Any

from flow.operators.bash import BashOperator


class SSHOperator(BashOperator):
    """``command`` is Airflow's name for it; ``bash_command`` is accepted too, for symmetry.

    As Airflow's SSHOperator, no exit status means "skipped" unless ``skip_on_exit_code`` says so
    (BashOperator's default is 99)."""

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        command: str | None = None,
        bash_command: str | None = None,
        skip_on_exit_code: int | list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if command is not None and bash_command is not None:
            raise TypeError(f"SSHOperator {kwargs.get('task_id')!r}: give command or bash_command, not both")
        if not isinstance(ssh_conn_id, str) or not ssh_conn_id.strip():
            raise TypeError(f"SSHOperator {kwargs.get('task_id')!r}: ssh_conn_id must name a connection "
                            f"from connections.toml, not {ssh_conn_id!r}")
        super().__init__(bash_command=command if command is not None else bash_command,  # type: ignore[arg-type]
                         ssh_conn_id=ssh_conn_id, skip_on_exit_code=skip_on_exit_code, **kwargs)

    @property
    def command(self) -> str:
        return self.bash_command
