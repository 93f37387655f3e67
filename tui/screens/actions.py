"""The operator's actions, shared by the DAG list, the DAG view and the task detail.

Each screen says what the action applies to (`action_target`); this mixin checks the role, opens
the dialog that shows flowd's dry run, sends the confirmed request in a worker and reports the
result or the error as a notification. A viewer is told why instead of getting a dialog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flow.tui.client import ClientError
from flow.tui.dialogs.clear import ClearDialog
from flow.tui.dialogs.conf_editor import ConfEditor
from flow.tui.dialogs.confirm import ConfirmDialog
from flow.tui.dialogs.mark import MarkDialog

if TYPE_CHECKING:
    from textual.screen import Screen

    from flow.tui.app import FlowTUI

    _Base = Screen
else:
    _Base = object

MUTATING = {"trigger": "trigger DAGs", "pause": "pause or unpause DAGs", "clear": "clear task instances",
            "mark": "mark task instances", "retry": "retry failed tasks"}
DONE = {"tasks.clear": "cleared", "tasks.mark": "marked", "tasks.retry": "cleared for retry"}


class ActionsMixin(_Base):
    """Mixed into a Screen that defines `action_target() -> (dag_id, run_id, task_id)`."""

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    def action_target(self) -> tuple[str | None, str | None, str | None]:
        raise NotImplementedError

    def refused(self, action: str) -> bool:
        """True (after saying why) when this user may not change anything."""
        if self.flow_app.client.role == "viewer":
            self.notify(f"you are a viewer: you may not {MUTATING[action]} (ask to be added to group 'flow')",
                        title="Not allowed", severity="warning")
            return True
        return False

    def _need(self, run: bool, task: bool) -> tuple[str, str | None, str | None] | None:
        dag_id, run_id, task_id = self.action_target()
        if dag_id is None or (run and run_id is None) or (task and task_id is None):
            what = "a task instance" if task else "a run" if run else "a DAG"
            self.notify(f"select {what} first", title="Nothing selected", severity="warning")
            return None
        return dag_id, run_id, task_id

    def action_clear(self) -> None:
        target = self._need(run=True, task=False)
        if target is None or self.refused("clear"):
            return
        dag_id, run_id, task_id = target
        assert run_id is not None
        self.app.push_screen(ClearDialog(dag_id, run_id, task_id),
                             lambda params: self._send("tasks.clear", params))

    def action_mark(self, state: str = "success") -> None:
        target = self._need(run=True, task=True)
        if target is None or self.refused("mark"):
            return
        dag_id, run_id, task_id = target
        assert run_id is not None and task_id is not None
        self.app.push_screen(MarkDialog(dag_id, run_id, task_id, state),
                             lambda params: self._send("tasks.mark", params))

    def action_retry(self) -> None:
        target = self._need(run=True, task=False)
        if target is None or self.refused("retry"):
            return
        dag_id, run_id, _ = target
        dialog = ConfirmDialog(f"Retry the failed tasks of {run_id} ({dag_id})", "tasks.retry",
                               {"dag_id": dag_id, "run_id": run_id}, "retry")
        self.app.push_screen(dialog, lambda params: self._send("tasks.retry", params))

    def _send(self, method: str, params: dict[str, Any] | None) -> None:
        if params:
            self.run_worker(self._call(method, params), group="actions", exit_on_error=False)

    async def _call(self, method: str, params: dict[str, Any]) -> None:
        where = f"{params.get('dag_id')} · {params.get('run_id')}"
        try:
            reply = await self.flow_app.client.call(method, **params, dry_run=False)
        except ClientError as exc:
            self.notify(str(exc), title=f"{method} failed ({where})", severity="error")
            return
        items = [ti for ti in reply.get("task_instances") or [] if isinstance(ti, dict)]
        names = ", ".join(str(ti.get("task_id")) for ti in items[:8]) + (" …" if len(items) > 8 else "")
        state = f" {params['state']}" if method == "tasks.mark" else ""
        self.notify(f"{len(items)} task instance{'s' if len(items) != 1 else ''} {DONE[method]}{state}: {names}",
                    title=where)

    # -- trigger ----------------------------------------------------------------------------------

    def action_trigger(self) -> None:
        dag_id, _, _ = self.action_target()
        if dag_id is None or self.refused("trigger"):
            return
        self._when_unpaused(dag_id, None)

    def action_trigger_conf(self) -> None:
        dag_id, _, _ = self.action_target()
        if dag_id is None or self.refused("trigger"):
            return

        self.run_worker(self._edit_conf(dag_id), group="actions", exit_on_error=False)

    async def _edit_conf(self, dag_id: str) -> None:
        """The editor opens on the DAG's params (from flowd when this screen does not hold them)."""
        initial = self.initial_conf(dag_id)
        if not initial:
            try:
                dag = (await self.flow_app.client.call("dags.get", dag_id=dag_id)).get("dag") or {}
            except ClientError:
                dag = {}
            params = (dag.get("serialized") or {}).get("params")
            initial = dict(params) if isinstance(params, dict) else {}

        def send(conf: dict[str, Any] | None) -> None:
            if conf is not None:
                self._when_unpaused(dag_id, conf)
        self.app.push_screen(ConfEditor(dag_id, initial), send)

    def is_paused(self, dag_id: str) -> bool:
        """Whether the screen knows the DAG to be paused (screens that know override this)."""
        return False

    def _when_unpaused(self, dag_id: str, conf: dict[str, Any] | None) -> None:
        """Trigger now, or, for a paused DAG, after saying that the run would wait."""
        if not self.is_paused(dag_id):
            self.run_worker(self._trigger(dag_id, conf), group="actions", exit_on_error=False)
            return
        from flow.tui.dialogs.paused import PausedTriggerDialog

        def chosen(choice: str | None) -> None:
            if choice is not None:
                self.run_worker(self._trigger(dag_id, conf, unpause=choice == "unpause"), group="actions",
                                exit_on_error=False)
        self.app.push_screen(PausedTriggerDialog(dag_id), chosen)

    def initial_conf(self, dag_id: str) -> dict[str, Any]:
        return {}

    async def _trigger(self, dag_id: str, conf: dict[str, Any] | None, unpause: bool = False) -> None:
        try:
            if unpause:
                await self.flow_app.client.call("dags.pause", dag_id=dag_id, paused=False)
            reply = await self.flow_app.client.call("dags.trigger", dag_id=dag_id,
                                                    **({"conf": conf} if conf is not None else {}))
            run = reply["run"]
        except (ClientError, KeyError, TypeError) as exc:
            self.notify(str(exc), title=f"Cannot trigger {dag_id}", severity="error")
            return
        self.notify(f"{run.get('run_id')} ({run.get('state')})", title=f"Triggered {dag_id}")
        self.follow_run(dag_id, run)

    def follow_run(self, dag_id: str, run: dict[str, Any]) -> None:
        """Show the new run: open the DAG view on it (the DAG view overrides this to select it)."""
        opener = getattr(self.flow_app, "open_dag", None)
        if opener is not None:
            opener(dag_id, str(run.get("run_id")))
