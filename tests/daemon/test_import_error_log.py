"""flowd writes each new or changed import error to its own log (the journal under systemd) once."""

from __future__ import annotations

import os
import time

from flow.daemon.client import Client

from .conftest import Flowd

GOOD = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="a", bash_command="true")
"""


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def loaded(flowd: Flowd, dag_id: str) -> bool:
    with Client.connect(flowd.socket_path) as client:
        return dag_id in {d["dag_id"] for d in client.call("dags.list")["dags"]}


def test_an_import_error_is_logged_once_and_again_when_it_changes(flowd: Flowd):
    line = "broken.py:1: ModuleNotFoundError: No module named 'no_such_module_here'"
    path = flowd.add_dag("broken.py", "import no_such_module_here\n")
    try:
        wait_for(lambda: line in flowd.stderr(), "the import error in flowd's log")
    except AssertionError:
        raise AssertionError(flowd.stderr()[-3000:]) from None
    for n in range(2):  # the same error at two more parses of the file
        flowd.add_dag("broken.py", "import no_such_module_here\n")
        os.utime(path, (time.time() + n + 1, time.time() + n + 1))
        flowd.add_dag(f"good{n}.py", GOOD.format(name=f"good{n}"))
        wait_for(lambda n=n: loaded(flowd, f"good{n}"), f"good{n}")
    assert flowd.stderr().count(line) == 1, flowd.stderr()
    flowd.add_dag("broken.py", "import another_missing_module\n")
    wait_for(lambda: "No module named 'another_missing_module'" in flowd.stderr(), "the changed error logged")
