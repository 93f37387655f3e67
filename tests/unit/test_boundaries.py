"""The layout's boundaries, checked the way harlequin does: import in a fresh interpreter, look at sys.modules."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    return set(out.split())


def test_authoring_api_imports_no_daemon_executor_tui_or_database():
    mods = modules_after(
        "import flow, flow.operators, flow.planner, flow.schedule, flow.serialize, flow.dagbag, flow.runtime"
    )
    forbidden = {m for m in mods if m.split(".")[:2] in (["flow", "daemon"], ["flow", "executors"], ["flow", "tui"])}
    assert not forbidden, f"flow/ pulled in {sorted(forbidden)}"
    assert "textual" not in mods and "sqlalchemy" not in mods and "paramiko" not in mods


def test_daemon_and_executors_never_import_textual():
    mods = modules_after(
        "import flow.daemon.engine, flow.daemon.cli, flow.daemon.cli_run, flow.executors.local, flow.daemon.loader"
    )
    assert not {m for m in mods if m == "textual" or m.startswith("textual.")}


@pytest.mark.parametrize("folder,banned", [
    ("flow", ("flow.daemon", "flow.executors", "flow.tui", "textual", "subprocess", "socket")),
    ("daemon", ("textual", "flow.tui")),
    ("executors", ("textual", "flow.tui", "flow.daemon")),
    ("tui", ("flow.daemon",)),
])
def test_no_source_file_imports_across_a_boundary(folder, banned):
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                    if any(n == b or n.startswith(b + ".") for b in banned)]
    assert not bad, "\n".join(bad)
