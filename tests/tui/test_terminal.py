"""The real `flowtui` in tmux: NO_COLOR at 80x24, a crash's exit status, and untrusted text that
must not reach the terminal as control sequences."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.daemon.conftest import BIN
from tests.tui.test_tmux import Tmux, start_flowd, terminal_env

HOSTILE_OWNER = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="hostile", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             default_args={"owner": "ops\\x1b]2;PWNED\\x07"}, tags=["t\\x1b[31mred"],
             description="d\\x1b]2;PWNED\\x07") as dag:
        BashOperator(task_id="only", bash_command="printf 'x\\\\033]2;PWNED\\\\007y\\\\n'")
"""


def test_no_color_flowtui_opens_a_dag_at_80x24_and_keeps_running(tmp_path: Path, tmux: Tmux):
    flowd = start_flowd(tmp_path)
    try:
        env = {**terminal_env(flowd), "NO_COLOR": "1"}
        tmux.start([str(BIN / "flowtui"), "--socket", flowd.socket_path], env, size=(80, 24))
        tmux.wait_for("example_xcom")
        tmux.send("/")
        tmux.wait_for("filter by DAG id")
        tmux.send("xcom", "Enter")
        tmux.wait_gone("example_branch")
        tmux.send("Enter")
        tmux.wait_for("add1")
        tmux.send("t")
        tmux.wait_for("✔ M")
        assert not tmux.exited(timeout=1), f"flowtui ended:\n{tmux.screen()}"
        tmux.send("q")
        assert tmux.exited()
    finally:
        flowd.cleanup()


def test_a_crashing_console_exits_non_zero_with_one_line(tmp_path: Path, tmux: Tmux):
    """A fault injected into the DAG list's mount stands for any bug the console may have."""
    flowd = start_flowd(tmp_path)
    try:
        crash = tmp_path / "crash.py"
        crash.write_text(textwrap.dedent("""
            import sys
            from flow.tui.screens.dag_list import DagListScreen
            def boom(self):
                raise RuntimeError("injected fault")
            DagListScreen.on_mount = boom
            from flow.tui.app import main
            main(sys.argv[1:])
        """))
        err, rc = tmp_path / "err.txt", tmp_path / "rc.txt"
        script = tmp_path / "run.sh"  # the console draws on stderr: its drawing ends up in err.txt too
        script.write_text(f"{BIN / 'python'} {crash} --socket {flowd.socket_path} 2>{err}; echo $? >{rc}\n")
        tmux.start(["sh", str(script)], terminal_env(flowd), size=(80, 24))
        assert tmux.exited(), tmux.screen()
        assert rc.read_text().strip() == "1"
        text = err.read_text()
        assert "Traceback" not in text and "injected fault" in text
        lines = [re.sub(r"^.*\x1b\[\?1006l", "", text).strip()]  # what follows the terminal's restore
        saved = Path(lines[0].rsplit("traceback in ", 1)[1].rstrip(")"))
        assert "boom" in saved.read_text()
        saved.unlink()
    finally:
        flowd.cleanup()


def test_an_osc_title_in_a_dags_owner_does_not_reach_the_terminal(tmp_path: Path, tmux: Tmux):
    flowd = start_flowd(tmp_path)
    try:
        flowd.add_dag("hostile.py", HOSTILE_OWNER)
        tmux.start([str(BIN / "flowtui"), "--socket", flowd.socket_path], terminal_env(flowd), size=(200, 30))
        tmux.wait_for("hostile")
        tmux.send("/")
        tmux.wait_for("filter by DAG id")
        tmux.send("hostile", "Enter")
        screen = tmux.wait_for("ops^[]2;PWNED^G")
        assert "PWNED" not in tmux.tmux("display-message", "-p", "#{pane_title}").stdout
        assert "t^[[31mred" in screen
        tmux.send("t")  # its log line carries the same sequence; open it from the grid
        tmux.wait_for("✔ M")
        tmux.send("l")
        tmux.wait_for("x^[]2;PWNED^Gy")
        assert "PWNED" not in tmux.tmux("display-message", "-p", "#{pane_title}").stdout
        tmux.send("q")
        assert tmux.exited()
    finally:
        flowd.cleanup()
