"""A DAG folder an adversary would write: 99 broken files beside 5 good five-second DAGs.

Shared by tests/daemon/test_parse_isolation.py (which asserts) and bench/bench_bad_folder.py
(which prints the figures in docs/benchmarks.md), so both exercise the same folder.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

GOOD = """\
from datetime import timedelta

import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG("{dag_id}", schedule=timedelta(seconds={every}), start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         catchup=False, tags={tags!r}):
    BashOperator(task_id="t", bash_command="true")
"""

HANGS = "import time\ntime.sleep(1000)\n"
ALLOCATES = "data = b'x' * (1 << 30)  # 1 GiB\n"
FORKS_AND_LINGERS = """\
import os, time
pid = os.fork()
if pid == 0:
    time.sleep(1000)
    os._exit(0)
with open({pidfile!r}, "w") as fh:
    fh.write(str(pid))
raise RuntimeError("forked a child that lingers")
"""
FORKS_AND_BOTH_GO_ON = """\
import os
with open({pidfile!r}, "a") as fh:
    fh.write(str(os.getpid()) + "\\n")
os.fork()
with open({pidfile!r}, "a") as fh:
    fh.write(str(os.getpid()) + "\\n")
raise ValueError("forked, and both copies carried on")
"""
EXITS = "import os\nos._exit(3)\n"
PRINTS = """\
import sys
chunk = "x" * (1 << 20)
for _ in range(100):
    sys.stdout.write(chunk)
sys.stdout.flush()
raise RuntimeError("printed 100 MB")
"""
SYNTAX = "def broken(:\n    pass\n"
IMPORT = "import no_such_module_{n}\n"


@dataclass
class BadFolder:
    good: list[str]
    """The good DAG ids."""
    hanging: list[str]
    """Paths of the files that block at import."""
    expected: dict[str, str] = field(default_factory=dict)
    """Path of every broken file -> a fragment its import error must contain."""
    pidfiles: dict[str, Path] = field(default_factory=dict)

    @property
    def quick(self) -> list[str]:
        """The broken files that fail at once (everything but the hanging ones)."""
        return [p for p in self.expected if p not in self.hanging]


def write_folder(dags: Path, scratch: Path, *, every: int = 5) -> BadFolder:
    """Write the 104 files. Names interleave the kinds so that hanging files are met early."""
    dags.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    folder = BadFolder(good=[f"good_{i}" for i in range(1, 6)], hanging=[])

    def put(name: str, text: str) -> str:
        path = dags / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    for dag_id in folder.good:
        put(f"{dag_id}.py", GOOD.format(dag_id=dag_id, every=every, tags=["v1"]))
    for i in range(1, 6):
        path = put(f"b{i:02d}_hang.py", HANGS)
        folder.hanging.append(path)
        folder.expected[path] = "timed out after"
    folder.expected[put("b06_alloc.py", ALLOCATES)] = "MemoryError"
    folder.pidfiles["lingers"] = scratch / "lingering.pid"
    folder.expected[put("b07_fork.py", FORKS_AND_LINGERS.format(pidfile=str(folder.pidfiles["lingers"])))] = \
        "RuntimeError: forked a child that lingers"
    folder.pidfiles["both"] = scratch / "both.pids"
    folder.expected[put("b08_fork_both.py", FORKS_AND_BOTH_GO_ON.format(pidfile=str(folder.pidfiles["both"])))] = \
        "ValueError: forked, and both copies carried on"
    folder.expected[put("b09_exit.py", EXITS)] = "the parser exited with status 3"
    folder.expected[put("b10_print.py", PRINTS)] = "RuntimeError: printed 100 MB"
    for n in range(11, 100):
        if n % 2:
            folder.expected[put(f"b{n:02d}_syntax.py", SYNTAX)] = "SyntaxError"
        else:
            folder.expected[put(f"b{n:02d}_import.py", IMPORT.format(n=n))] = \
                f"ModuleNotFoundError: No module named 'no_such_module_{n}'"
    assert len(folder.expected) == 99
    return folder


def import_errors(client: Any) -> dict[str, str]:
    """filename -> message, as flowd serves them over the socket."""
    return {e["filename"]: e["message"] for e in client.call("import_errors.list")["import_errors"]}


def lateness(store: Any, dag_ids: list[str], since: datetime) -> dict[str, list[float]]:
    """Seconds from each scheduled run's fire time to its creation, for runs due after `since`."""
    out: dict[str, list[float]] = {}
    for dag_id in dag_ids:
        out[dag_id] = sorted(
            (r["queued_at"] - r["logical_date"]).total_seconds()
            for r in store.runs(dag_id, limit=None)
            if r["run_type"] == "scheduled" and r["logical_date"] > since
        )
    return out


def fire_times(store: Any, dag_id: str, since: datetime) -> list[datetime]:
    return sorted(r["logical_date"] for r in store.runs(dag_id, limit=None)
                  if r["run_type"] == "scheduled" and r["logical_date"] > since)
