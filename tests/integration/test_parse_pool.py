"""The parse pool and the parse child's defences, with real child processes."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

from flow.daemon.dags.pool import ParsePool
from flow.daemon.loader import FileResult, parse_files

GOOD = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{dag_id}", schedule=None):
    BashOperator(task_id="t", bash_command="true")
"""


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def waits_for(flag: Path, dag_id: str) -> str:
    """A DAG file that says it is importing (``<flag>.<dag_id>``), then waits until ``flag`` exists."""
    return textwrap.dedent(f"""\
        import time
        from pathlib import Path
        Path({str(flag)!r} + ".{dag_id}").touch()
        while not Path({str(flag)!r}).exists():
            time.sleep(0.02)
    """) + textwrap.dedent(GOOD.format(dag_id=dag_id))


def dag_ids(result: FileResult) -> list[str]:
    return [d["dag_id"] for d in result.dags]


async def until(predicate, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_quick_file_is_applied_while_a_slow_one_still_imports(tmp_path: Path) -> None:
    release = tmp_path / "release"
    slow = write(tmp_path / "slow.py", waits_for(release, "slow"))
    quick = write(tmp_path / "quick.py", GOOD.format(dag_id="quick"))
    arrived: list[str] = []

    async def scenario() -> dict[str, FileResult]:
        results: dict[str, FileResult] = {}

        def sink(path: str, result: FileResult) -> None:
            arrived.append(path)
            results[path] = result

        pool = ParsePool(sink, processes=1, timeout=lambda: 60, slow_after=0.3)
        try:
            pool.submit([slow, quick])  # one process: the slow file is first in line
            await until(lambda: quick in results)
            assert slow not in results, "the slow file must still be importing"
            release.touch()
            assert await pool.wait_idle(30)
        finally:
            await pool.close()
        return results

    results = asyncio.run(scenario())
    assert arrived == [quick, slow]
    assert dag_ids(results[quick]) == ["quick"] and dag_ids(results[slow]) == ["slow"]


def test_forgotten_files_give_no_result_and_resubmitted_ones_are_parsed_again(tmp_path: Path) -> None:
    release = tmp_path / "release"
    doomed = write(tmp_path / "doomed.py", waits_for(release, "doomed"))
    edited = write(tmp_path / "edited.py", waits_for(release, "before"))
    got: list[tuple[str, list[str]]] = []

    async def scenario() -> None:
        pool = ParsePool(lambda p, r: got.append((p, dag_ids(r))), processes=2, timeout=lambda: 60)
        try:
            pool.submit([doomed, edited])
            await until(lambda: Path(f"{release}.doomed").exists() and Path(f"{release}.before").exists())
            pool.forget([doomed])
            write(Path(edited), GOOD.format(dag_id="after"))
            pool.submit([edited])
            release.touch()
            assert await pool.wait_idle(30)
        finally:
            await pool.close()

    asyncio.run(scenario())
    assert got == [(edited, ["before"]), (edited, ["after"])]


def test_more_hanging_files_than_slow_slots_all_time_out_and_the_rest_parse(tmp_path: Path) -> None:
    hangs = [write(tmp_path / f"hang{i}.py", "import time\ntime.sleep(600)\n") for i in range(3)]
    good = write(tmp_path / "good.py", GOOD.format(dag_id="good"))
    results: dict[str, FileResult] = {}

    async def scenario() -> None:
        pool = ParsePool(results.__setitem__, processes=1, timeout=lambda: 1.5, slow_after=0.2, max_slow=1)
        try:
            pool.submit([*hangs, good])
            assert await pool.wait_idle(60)
        finally:
            await pool.close()

    asyncio.run(scenario())
    for path in hangs:
        assert results[path].error is not None and "timed out after 1.5s" in results[path].error[0]
    assert dag_ids(results[good]) == ["good"]


FORKS_AND_BOTH_GO_ON = """\
import os
if os.fork() == 0:
    os.setsid()  # the copy leaves the child's session, so the leftover-process sweep cannot see it
"""


def test_a_fork_at_import_cannot_answer_for_the_child_or_steal_the_next_file(tmp_path: Path) -> None:
    forks = write(tmp_path / "forks.py", FORKS_AND_BOTH_GO_ON + GOOD.format(dag_id="forked"))
    after = [write(tmp_path / f"after{i}.py", GOOD.format(dag_id=f"after{i}")) for i in range(3)]

    results = parse_files([forks, *after], timeout=30)

    assert dag_ids(results[forks]) == ["forked"] and results[forks].error is None
    for i, path in enumerate(after):
        assert results[path].error is None, results[path].error
        assert dag_ids(results[path]) == [f"after{i}"]


def test_a_file_that_allocates_too_much_gets_a_memory_error(tmp_path: Path) -> None:
    greedy = write(tmp_path / "greedy.py", "data = b'x' * (1 << 30)\n")
    after = write(tmp_path / "after.py", GOOD.format(dag_id="after"))

    results = parse_files([greedy, after], timeout=30, memory_limit=512 << 20)

    assert results[greedy].error is not None
    assert results[greedy].error[0] == f"{greedy}:1: MemoryError", results[greedy].error[0]
    assert dag_ids(results[after]) == ["after"]


FLOODS_THE_PROTOCOL = """\
import os, stat
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    if fd > 2 and stat.S_ISFIFO(st.st_mode) and os.get_blocking(fd) and (os.O_WRONLY & __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFL)):
        chunk = b"x" * (1 << 20)
        for _ in range(70):
            os.write(fd, chunk)
"""


def test_a_file_that_floods_the_protocol_gets_an_error_and_the_next_file_a_fresh_child(tmp_path: Path) -> None:
    flood = write(tmp_path / "flood.py", FLOODS_THE_PROTOCOL)
    after = write(tmp_path / "after.py", GOOD.format(dag_id="after"))

    results = parse_files([flood, after], timeout=30)

    assert results[flood].error is not None
    assert results[flood].error[0] == f"the parser sent a reply longer than 64 MiB while importing {flood}"
    assert dag_ids(results[after]) == ["after"]
