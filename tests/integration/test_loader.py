"""The DAG-folder loader: scanning, parsing in real child processes, and DAG-id ownership."""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
import time
from pathlib import Path

import pytest

from flow.daemon.loader import (
    DagFolder,
    DagRegistry,
    FileResult,
    ParserStartError,
    parse_files,
    parse_files_async,
)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---------------------------------------------------------------------------------------------
# DagFolder


def test_first_scan_reports_every_dag_file_recursively_and_skips_private_names(tmp_path: Path) -> None:
    expected = [write(tmp_path / "a.py", "x = 1\n"), write(tmp_path / "sub" / "deeper" / "b.py", "")]
    write(tmp_path / "_private.py", "")
    write(tmp_path / ".hidden.py", "")
    write(tmp_path / ".git" / "hook.py", "")
    write(tmp_path / "_helpers" / "c.py", "")
    write(tmp_path / "sub" / "__pycache__" / "b.cpython-311.py", "")
    write(tmp_path / "notes.txt", "")
    write(tmp_path / "data.pyc", "")

    changes = DagFolder(tmp_path).scan()

    assert changes.changed == sorted(expected)
    assert changes.deleted == []


def test_rescan_reports_new_modified_and_deleted_files(tmp_path: Path) -> None:
    keep = write(tmp_path / "keep.py", "a = 1\n")
    grow = write(tmp_path / "grow.py", "a = 1\n")
    touch = write(tmp_path / "touch.py", "a = 1\n")
    doomed = write(tmp_path / "doomed.py", "a = 1\n")
    folder = DagFolder(tmp_path)
    folder.scan()
    assert folder.scan().changed == []

    st = os.stat(touch)
    Path(grow).write_text("a = 1000\n")
    Path(touch).write_text("b = 2\n")  # same size: only the mtime tells
    os.utime(touch, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    os.remove(doomed)
    new = write(tmp_path / "later" / "new.py", "")
    changes = folder.scan()

    assert changes.changed == sorted([grow, touch, new])
    assert changes.deleted == [doomed]
    assert keep not in changes.changed
    assert folder.scan().changed == folder.scan().deleted == []


def test_flowignore_globs_and_changes_to_it(tmp_path: Path) -> None:
    kept = write(tmp_path / "kept.py", "")
    write(tmp_path / "scratch_one.py", "")
    write(tmp_path / "pkg" / "scratch_two.py", "")
    write(tmp_path / "old" / "legacy.py", "")
    write(tmp_path / "team" / "wip.py", "")
    team_other = write(tmp_path / "team" / "other.py", "")
    nested_wip = write(tmp_path / "elsewhere" / "team" / "wip.py", "")
    write(tmp_path / ".flowignore", """\
        # comments and blank lines are fine

        scratch_*.py
        old/
        team/wip.py
    """)
    folder = DagFolder(tmp_path)
    assert folder.scan().changed == sorted([kept, team_other, nested_wip])

    write(tmp_path / ".flowignore", "kept.py\n")
    changes = folder.scan()
    assert changes.deleted == [kept]
    assert str(tmp_path / "old" / "legacy.py") in changes.changed


def test_flowignore_with_negation_is_rejected_with_its_line(tmp_path: Path) -> None:
    write(tmp_path / ".flowignore", "a.py\n!b.py\n")
    with pytest.raises(ValueError, match=r"\.flowignore line 2: negated patterns \('!b\.py'\)"):
        DagFolder(tmp_path).scan()


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"DAG folder {missing} does not exist"):
        DagFolder(missing).scan()
    write(tmp_path / "file.py", "")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        DagFolder(tmp_path / "file.py").scan()


# ---------------------------------------------------------------------------------------------
# DagRegistry (parse results built by hand; the real-parse case is further down)


def dag(dag_id: str, fileloc: str, **extra: object) -> dict:
    return {"dag_id": dag_id, "fileloc": fileloc, "tasks": [], **extra}


def ok(*dags: dict) -> FileResult:
    return FileResult(dags=list(dags))


def broken(message: str) -> FileResult:
    return FileResult(dags=[], error=(message, "Traceback ..."))


def test_registry_newcomer_with_a_taken_dag_id_gets_an_error_and_its_other_dags_load() -> None:
    reg = DagRegistry()
    first = reg.apply({"/d/a.py": ok(dag("x", "/d/a.py"))})
    assert [d["dag_id"] for d in first.upserts] == ["x"]
    assert first.parsed_files == ["/d/a.py"] and first.errors == {}

    second = reg.apply({"/d/b.py": ok(dag("x", "/d/b.py"), dag("y", "/d/b.py"))})
    assert [d["dag_id"] for d in second.upserts] == ["y"]
    assert second.errors == {"/d/b.py": ("/d/b.py: DAG id 'x' is already defined in /d/a.py", "")}
    assert reg.owner("x") == "/d/a.py"


def test_registry_same_batch_conflict_goes_to_the_first_file_in_path_order() -> None:
    reg = DagRegistry()
    update = reg.apply({"/d/b.py": ok(dag("x", "/d/b.py")), "/d/a.py": ok(dag("x", "/d/a.py"))})
    assert [d["fileloc"] for d in update.upserts] == ["/d/a.py"]
    assert list(update.errors) == ["/d/b.py"]


def test_registry_deactivates_dags_that_left_a_file_or_whose_file_was_deleted() -> None:
    reg = DagRegistry()
    reg.apply({"/d/a.py": ok(dag("x", "/d/a.py"), dag("y", "/d/a.py")), "/d/b.py": ok(dag("z", "/d/b.py"))})
    update = reg.apply({"/d/a.py": ok(dag("x", "/d/a.py"))}, deleted=["/d/b.py"])
    assert update.upserts == []  # x did not change
    assert update.deactivated == ["y", "z"]
    assert update.parsed_files == ["/d/a.py", "/d/b.py"] and update.errors == {}
    assert reg.owner("z") is None


def test_registry_broken_file_keeps_its_dags_until_fixed() -> None:
    reg = DagRegistry()
    reg.apply({"/d/a.py": ok(dag("x", "/d/a.py"), dag("y", "/d/a.py"))})

    update = reg.apply({"/d/a.py": broken("/d/a.py: SyntaxError: invalid syntax (line 3)")})
    assert update.deactivated == [] and update.upserts == []
    assert update.errors == {"/d/a.py": ("/d/a.py: SyntaxError: invalid syntax (line 3)", "Traceback ...")}
    assert reg.owner("x") == reg.owner("y") == "/d/a.py"

    fixed = reg.apply({"/d/a.py": ok(dag("x", "/d/a.py", schedule="@daily"))})
    assert fixed.errors == {} and fixed.parsed_files == ["/d/a.py"]
    assert fixed.upserts == [dag("x", "/d/a.py", schedule="@daily")]
    assert fixed.deactivated == ["y"]
    assert reg.errors == {}


def test_registry_claimant_takes_over_when_the_owner_drops_the_id() -> None:
    reg = DagRegistry()
    reg.apply({"/d/a.py": ok(dag("x", "/d/a.py"))})
    reg.apply({"/d/b.py": ok(dag("x", "/d/b.py"))})
    assert "/d/b.py" in reg.errors

    moved = reg.apply({"/d/a.py": ok()})  # b.py is not re-parsed
    assert moved.upserts == [dag("x", "/d/b.py")]
    assert moved.deactivated == []
    assert moved.parsed_files == ["/d/a.py", "/d/b.py"] and moved.errors == {}
    assert reg.owner("x") == "/d/b.py"


def test_registry_claimant_takes_over_when_the_owner_is_deleted() -> None:
    reg = DagRegistry()
    reg.apply({"/d/a.py": ok(dag("x", "/d/a.py")), "/d/b.py": ok(dag("x", "/d/b.py"))})
    update = reg.apply({}, deleted=["/d/a.py"])
    assert update.upserts == [dag("x", "/d/b.py")] and update.deactivated == []
    assert update.parsed_files == ["/d/a.py", "/d/b.py"] and update.errors == {}


def test_registry_seeded_owner_wins_after_restart_and_keeps_its_dags_when_broken() -> None:
    reg = DagRegistry()
    reg.claim("x", "/d/b.py")
    reg.claim("y", "/d/b.py")
    update = reg.apply({
        "/d/a.py": ok(dag("x", "/d/a.py")),
        "/d/b.py": broken("/d/b.py: ModuleNotFoundError: No module named 'nope'"),
    })
    assert update.upserts == [] and update.deactivated == []
    assert update.errors["/d/a.py"][0] == "/d/a.py: DAG id 'x' is already defined in /d/b.py"
    assert reg.owner("y") == "/d/b.py"

    healed = reg.apply({"/d/b.py": ok(dag("y", "/d/b.py"))})
    assert healed.upserts == [dag("y", "/d/b.py"), dag("x", "/d/a.py")]
    assert healed.deactivated == []
    assert healed.errors == {} and healed.parsed_files == ["/d/a.py", "/d/b.py"]


# ---------------------------------------------------------------------------------------------
# Parsing in real child processes

GOOD = """\
    from datetime import datetime
    from flow import DAG
    from flow.operators.bash import BashOperator

    with DAG("{dag_id}", schedule="@daily", start_date=datetime(2024, 1, 1)) as dag:
        extract = BashOperator(task_id="extract", bash_command="echo a")
        extract >> BashOperator(task_id="load", bash_command="echo b")
"""

CASES = {
    "good.py": GOOD.format(dag_id="good"),
    "syntax.py": "from flow import DAG\n\ndef broken(:\n    pass\n",
    "missing_module.py": "import flow\nimport definitely_not_installed_xyz\n",
    "cycle.py": """\
        from flow import DAG
        from flow.operators.empty import EmptyOperator
        with DAG("cyclic", schedule=None) as dag:
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            a >> b >> a
    """,
    "dup_task.py": """\
        from flow import DAG
        from flow.operators.empty import EmptyOperator
        with DAG("dup_task", schedule=None) as dag:
            EmptyOperator(task_id="same")
            EmptyOperator(task_id="same")
    """,
    "bad_cron.py": """\
        from flow import DAG
        with DAG("bad_cron", schedule="61 * * * *") as dag:
            pass
    """,
    "segfault.py": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "after_segfault.py": GOOD.format(dag_id="after_segfault"),
    "exits.py": "import os\nos._exit(3)\n",
    "noisy.py": textwrap.dedent("""\
        import os, sys
        print('{"path": "/forged.py", "dags": [], "error": null}')
        os.write(1, b"written straight to fd 1\\n")
        sys.__stdout__.write("via sys.__stdout__\\n")
        sys.__stdout__.flush()
        assert sys.stdin.read() == "", "user code must not see the protocol"
    """) + textwrap.dedent(GOOD.format(dag_id="noisy")),
    "after_exit.py": GOOD.format(dag_id="after_exit"),
}


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, FileResult]]:
    folder = tmp_path_factory.mktemp("dags")
    paths = [write(folder / name, text) for name, text in CASES.items()]
    return folder, parse_files(paths, timeout=30)


def result(parsed: tuple[Path, dict[str, FileResult]], name: str) -> FileResult:
    folder, results = parsed
    return results[str(folder / name)]


def test_every_file_of_a_batch_gets_a_result(parsed: tuple[Path, dict[str, FileResult]]) -> None:
    folder, results = parsed
    assert sorted(results) == sorted(str(folder / name) for name in CASES)


@pytest.mark.parametrize("name", ["good.py", "after_segfault.py", "after_exit.py", "noisy.py"])
def test_good_files_parse_to_serialized_dags(parsed: tuple[Path, dict[str, FileResult]], name: str) -> None:
    folder, _ = parsed
    res = result(parsed, name)
    assert res.error is None
    [dag] = res.dags
    assert dag["dag_id"] == name.removesuffix(".py")
    assert dag["fileloc"] == str(folder / name)
    assert dag["schedule"] == "@daily"
    assert [t["task_id"] for t in dag["tasks"]] == ["extract", "load"]


@pytest.mark.parametrize(("name", "expected"), [
    ("syntax.py", r"syntax\.py:3: SyntaxError: "),
    ("missing_module.py", r"missing_module\.py:2: ModuleNotFoundError: No module named 'definitely_not_inst"),
    ("cycle.py", r"cycle\.py:\d+: CycleError: DAG 'cyclic' has a cycle"),
    ("dup_task.py", r"dup_task\.py:5: DuplicateTaskIdError: .*'same'"),
    ("bad_cron.py", r"bad_cron\.py:2: ScheduleError: .*invalid cron expression '61 \* \* \* \*'"),
])
def test_broken_files_get_an_import_error_naming_file_and_line(
    parsed: tuple[Path, dict[str, FileResult]], name: str, expected: str
) -> None:
    res = result(parsed, name)
    assert res.dags == []
    assert res.error is not None
    assert re.search(expected, res.error[0]), res.error[0]
    assert res.error[0].startswith(str(parsed[0] / name))
    assert "Traceback" in res.error[1]


def test_a_segfaulting_file_is_an_import_error_with_the_crash_site(
    parsed: tuple[Path, dict[str, FileResult]],
) -> None:
    path = str(parsed[0] / "segfault.py")
    res = result(parsed, "segfault.py")
    assert res.dags == []
    assert res.error is not None
    assert res.error[0] == f"the parser died with signal 11 (SIGSEGV) while importing {path}"
    assert f'File "{path}", line 2' in res.error[1]  # faulthandler's dump


def test_a_file_calling_os_exit_is_an_import_error(parsed: tuple[Path, dict[str, FileResult]]) -> None:
    path = str(parsed[0] / "exits.py")
    assert result(parsed, "exits.py") == FileResult(
        dags=[], error=(f"the parser exited with status 3 while importing {path}", ""))


def gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` has exited (a zombie counts: it runs nothing). Signals land asynchronously."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


SPAWNS_SLEEPER = """\
    import subprocess
    from pathlib import Path
    sleeper = subprocess.Popen(["sleep", "600"])
    Path({pidfile!r}).write_text(str(sleeper.pid))
"""


def test_a_file_that_blocks_at_import_times_out_and_the_rest_still_parse(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    hang = write(tmp_path / "hang.py", SPAWNS_SLEEPER.format(pidfile=str(pidfile)) + """\
    import time

    def wait_forever():
        while True:
            time.sleep(60)

    wait_forever()
    """)
    after = write(tmp_path / "after.py", GOOD.format(dag_id="after"))

    results = parse_files([hang, after], timeout=1)

    assert results[hang].dags == []
    message, trace = results[hang].error
    assert message == f"{hang}: timed out after 1s while importing (the file must not block at import)"
    assert f'File "{hang}", line 9 in wait_forever' in trace  # where it hung, from faulthandler
    assert [d["dag_id"] for d in results[after].dags] == ["after"]
    assert gone(int(pidfile.read_text())), "the timed-out child's process group must be killed"


def test_processes_started_at_import_do_not_outlive_the_parse(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    source = SPAWNS_SLEEPER.format(pidfile=str(pidfile)) + GOOD.format(dag_id="s")
    path = write(tmp_path / "spawns.py", source)
    assert parse_files([path])[path].error is None
    assert gone(int(pidfile.read_text()))


def test_a_dag_id_defined_in_two_real_files_is_an_error_on_the_newcomer(tmp_path: Path) -> None:
    first = write(tmp_path / "first.py", GOOD.format(dag_id="shared"))
    registry = DagRegistry()
    registry.apply(parse_files([first]))
    second = write(tmp_path / "second.py", GOOD.format(dag_id="shared") + GOOD.format(dag_id="own"))

    update = registry.apply(parse_files([second]))

    assert [d["dag_id"] for d in update.upserts] == ["own"]
    assert update.errors == {second: (f"{second}: DAG id 'shared' is already defined in {first}", "")}
    assert update.parsed_files == [second]


def test_async_parse_keeps_the_event_loop_responsive(tmp_path: Path) -> None:
    """The DAG file waits at import until the test's coroutine, on the same loop, releases it."""
    started, release = tmp_path / "started", tmp_path / "release"
    path = write(tmp_path / "waits.py", textwrap.dedent(f"""\
        import time
        from pathlib import Path
        Path({str(started)!r}).touch()
        while not Path({str(release)!r}).exists():
            time.sleep(0.01)
    """) + textwrap.dedent(GOOD.format(dag_id="waits")))

    async def scenario() -> dict[str, FileResult]:
        parsing = asyncio.create_task(parse_files_async([path], timeout=20))
        while not started.exists() and not parsing.done():
            await asyncio.sleep(0.01)
        release.touch()
        return await parsing

    results = asyncio.run(scenario())
    assert results[path].error is None
    assert [d["dag_id"] for d in results[path].dags] == ["waits"]


def test_cancelling_an_async_parse_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "parser.pid"
    path = write(tmp_path / "hang.py", f"""\
        import os, time
        from pathlib import Path
        Path({str(pidfile)!r}).write_text(str(os.getpid()))
        time.sleep(600)
    """)

    async def scenario() -> None:
        parsing = asyncio.create_task(parse_files_async([path], timeout=600))
        while not (pidfile.exists() and pidfile.read_text()) and not parsing.done():
            await asyncio.sleep(0.01)
        parsing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await parsing

    asyncio.run(scenario())
    assert gone(int(pidfile.read_text()))


def test_the_blocking_form_refuses_to_run_inside_an_event_loop() -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="use `await parse_files_async"):
            parse_files(["/nowhere.py"])

    asyncio.run(scenario())


def test_bad_timeout_and_empty_batches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parse timeout must be positive, got 0"):
        parse_files(["/x.py"], timeout=0)
    assert parse_files([]) == {}
    missing = str(tmp_path / "missing.py")
    [(message, _)] = [parse_files([missing])[missing].error]
    assert message.startswith(f"{missing}: cannot read DAG file")


def test_a_parser_that_cannot_start_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(ParserStartError, match=r"failed to start: it exited with status 1"):
        parse_files(["/x.py"])
