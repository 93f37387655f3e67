"""flowd's log in the journal's native protocol, received on a real datagram socket the test binds
(journald itself cannot run here): the framing, big entries in a memfd, and a real flowd's task
failure line with DAG_ID=, RUN_ID=, TASK_ID=, TRY= and its priority."""

from __future__ import annotations

import array
import fcntl
import logging
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.daemon.service.journal import JournalHandler, journal_wanted

from .conftest import make_flowd
from .test_abuse import call
from .test_flowd_process import wait_until


def parse_entry(data: bytes) -> dict[str, str]:
    """The journal's native format, read as journald reads it (systemd.io/JOURNAL_NATIVE_PROTOCOL)."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            fields[name.decode()] = value.decode()
            at = end + 1
        else:
            size = struct.unpack("<Q", data[end + 1:end + 9])[0]
            fields[line.decode()] = data[end + 9:end + 9 + size].decode()
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            at = end + 10 + size
    return fields


class FakeJournal:
    """A bound datagram socket drained by a thread; entries sent in a memfd are read from the fd."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.entries: list[dict[str, str]] = []
        self.via_memfd = 0
        self.sealed = 0
        self._stop = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        fds = array.array("i")
        while not self._stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_LEN(fds.itemsize))
            except TimeoutError:
                continue
            except OSError:
                return
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = struct.unpack("i", raw[:4])[0]
                    with os.fdopen(fd, "rb"):
                        data = os.pread(fd, os.fstat(fd).st_size, 0)  # journald maps it; the offset is the sender's
                        self.sealed = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                    self.via_memfd += 1
            self.entries.append(parse_entry(data))

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def journal() -> Iterator[FakeJournal]:
    folder = tempfile.mkdtemp(prefix="jr-")
    j = FakeJournal(os.path.join(folder, "socket"))
    yield j
    j.close()
    os.unlink(j.path)
    os.rmdir(folder)


def record_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"flow.test.journal.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_entries_carry_priority_fields_and_multiline_values(journal: FakeJournal):
    logger = record_logger(JournalHandler(journal.path))
    logger.warning("plain %s", "line", extra={"dag_id": "etl", "task_id": "load", "run_id": "manual__x",
                                              "try_number": 2})
    try:
        raise ValueError("inner\nproblem")
    except ValueError:
        logger.exception("it broke")
    logger.debug("debug")
    wait_until(lambda: len(journal.entries) == 3, 5, "three entries")
    first, second, third = journal.entries
    assert first["MESSAGE"] == "plain line" and first["PRIORITY"] == "4"
    assert (first["DAG_ID"], first["TASK_ID"], first["RUN_ID"], first["TRY"]) == ("etl", "load", "manual__x", "2")
    assert first["SYSLOG_IDENTIFIER"] == "flowd" and first["CODE_FUNC"].startswith("test_entries")
    assert second["PRIORITY"] == "3" and "DAG_ID" not in second
    assert second["MESSAGE"].startswith("it broke\nTraceback") and "ValueError: inner\nproblem" in second["MESSAGE"]
    assert third["PRIORITY"] == "7"


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(journal: FakeJournal):
    logger = record_logger(JournalHandler(journal.path))
    big = "x" * (1 << 20)
    logger.error("%s", big)
    wait_until(lambda: journal.entries, 5, "the big entry")
    assert journal.entries[0]["MESSAGE"] == big and journal.via_memfd == 1
    assert journal.sealed & fcntl.F_SEAL_WRITE and journal.sealed & fcntl.F_SEAL_SEAL  # journald refuses it unsealed


def test_without_the_journal_an_entry_goes_to_the_fallback(tmp_path: Path):
    fallback = logging.Handler()
    seen: list[str] = []
    fallback.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = record_logger(JournalHandler(str(tmp_path / "absent.sock"), fallback=fallback))
    logger.error("not lost")
    assert seen == ["not lost"]


def test_journal_is_used_only_under_systemd_with_the_socket(journal: FakeJournal, tmp_path: Path):
    with open(tmp_path / "stderr", "w") as err:
        st = os.fstat(err.fileno())
        stream = f"{st.st_dev}:{st.st_ino}"
        assert journal_wanted({"JOURNAL_STREAM": stream}, err.fileno(), journal.path)
        assert not journal_wanted({"JOURNAL_STREAM": "1:2"}, err.fileno(), journal.path)
        assert journal_wanted({"INVOCATION_ID": "abc"}, err.fileno(), journal.path)
        assert not journal_wanted({"JOURNAL_STREAM": stream}, err.fileno(), str(tmp_path / "absent"))
        assert not journal_wanted({}, err.fileno(), journal.path)


FAILING_DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("flaky", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="boom", bash_command="exit 3")
"""


def test_a_real_flowds_task_failure_line_has_its_fields_and_priority(journal: FakeJournal, tmp_path: Path):
    f = make_flowd(tmp_path)
    try:
        f.env.update(INVOCATION_ID="0123456789abcdef", FLOW_JOURNAL_SOCKET=journal.path)
        f.add_dag("flaky.py", FAILING_DAG)
        f.start()
        wait_until(lambda: "flaky" in {d["dag_id"] for d in call(f.socket_path, "dags.list")["dags"]}, 30,
                   "the DAG to load")
        run_id = call(f.socket_path, "dags.trigger", dag_id="flaky")["run"]["run_id"]

        def failure() -> dict[str, str] | None:
            return next((e for e in journal.entries if e.get("TASK_ID") == "boom" and e["PRIORITY"] == "3"), None)

        entry = wait_until(failure, 60, "the task failure in the journal")
        assert (entry["DAG_ID"], entry["RUN_ID"], entry["TRY"]) == ("flaky", run_id, "1")
        assert entry["MESSAGE"].startswith(f"task flaky.boom of run {run_id} try 1: failed")
        assert entry["SYSLOG_IDENTIFIER"] == "flowd" and entry["LOGGER"] == "flow.tasks"
        run_failed = wait_until(lambda: next((e for e in journal.entries if e.get("RUN_ID") == run_id
                                              and "TASK_ID" not in e), None), 30, "the run's end")
        assert run_failed["PRIORITY"] == "3" and run_failed["DAG_ID"] == "flaky"
        ready = next(e for e in journal.entries if "ready on" in e["MESSAGE"])
        assert ready["PRIORITY"] == "6" and "DAG_ID" not in ready
        assert "ready on" not in f.stderr()  # it went to the journal, not (also) to stderr
    finally:
        f.discard()
