"""What the command palette (ctrl+p) offers: every view, every DAG's trigger and pause, the
app's switches, and the actions of the screen it was opened from, found from that screen's
bindings so a new binding shows up here without being listed twice."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.screen import Screen

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI

VIEWS = {
    "dags": "the DAG list (home)",
    "runs": "the selected DAG's runs",
    "failures": "what failed lately, across every DAG",
    "errors": "DAG files that failed to import",
    "status": "flowd's status",
    "audit": "the audit log: who changed what",
}


def screen_commands(app: FlowTUI, screen: Screen) -> Iterable[SystemCommand]:
    """The screen's own keys (those with a description), run as if pressed on that screen."""
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if active.node is app or not binding.description or binding.action in seen:
            continue
        if binding.action in ("back", "app.pop_screen", "clear_filter", "cancel"):
            continue
        seen.add(binding.action)
        shown = binding.key_display or app.get_key_display(binding)
        yield SystemCommand(f"{binding.description} ({shown or key})", "on this screen",
                            partial(app.run_action, binding.action, active.node))


def flow_commands(app: FlowTUI, screen: Screen) -> Iterable[SystemCommand]:
    yield from screen_commands(app, screen)
    for name, what in VIEWS.items():
        yield SystemCommand(f"Open :{name}", f"Jump to {what}", partial(app.jump, name))
    zone = "local time" if app.utc else "UTC"
    yield SystemCommand(f"Show times in {zone}", "Switch every time shown between local and UTC (z)",
                        app.action_toggle_utc)
    for dag_id, dag in sorted(app.known_dags().items()):
        what = ("⏸ paused: the run is queued and waits until the DAG is unpaused" if dag.get("is_paused")
                else "Start a manual run now")
        yield SystemCommand(f"Trigger {dag_id}", what, partial(app.trigger_dag, dag_id))
        word = "Unpause" if dag.get("is_paused") else "Pause"
        yield SystemCommand(f"{word} {dag_id}", "Stop or resume scheduling new runs",
                            partial(app.pause_dag, dag_id, not dag.get("is_paused")))
