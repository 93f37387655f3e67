"""max_log_bytes_per_try: the log keeps its head and tail, says how much was cut, and only grows."""

from __future__ import annotations

import os

from flow.executors.logsink import TaskLog


def lines(n: int, start: int = 1) -> bytes:
    return b"".join(f"out {i:05d}\n".encode() for i in range(start, start + n))


def test_unlimited_log_keeps_everything(tmp_path):
    path = tmp_path / "a.log"
    log = TaskLog(str(path))
    log.write(lines(5000))
    log.close()
    assert path.read_bytes() == lines(5000)


def test_a_chatty_try_keeps_head_marker_and_tail_and_counts_what_was_cut(tmp_path):
    path = tmp_path / "a.log"
    log = TaskLog(str(path), 2000)
    sizes = []
    for chunk in range(100):
        log.write(lines(100, chunk * 100 + 1))
        sizes.append(path.stat().st_size)
    log.note("exited with status 0 after 1.00s")
    assert any(n.startswith("a.log.tail.") for n in os.listdir(tmp_path)), "held back while running"
    log.close()
    assert sizes == sorted(sizes), "the file only grows, so followers reading by offset keep working"
    assert max(sizes) < 1000 + 300, "while running, past the head, only one note is added"
    text = path.read_text()
    assert text.startswith("out 00001\n") and text.endswith("[flow] exited with status 0 after 1.00s\n")
    assert "[flow] this try's log reached 1000 bytes" in text
    marker = next(line for line in text.splitlines() if line.startswith("[flow] log cut: "))
    cut = int(marker.split()[3])
    head = text.split("[flow] this try's log reached")[0]
    tail = text.split(marker + "\n")[1].split("[flow] exited")[0]
    assert tail.endswith("out 10000\n") and tail.startswith("out ") and len(tail) <= 1000
    assert len(head) + cut + len(tail) == len(lines(10000))
    assert os.listdir(tmp_path) == ["a.log"]


def test_one_write_bigger_than_the_limit(tmp_path):
    path = tmp_path / "a.log"
    log = TaskLog(str(path), 100)
    log.write(b"x" * 10_000 + b"\nlast line\n")
    log.close()
    text = path.read_text()
    assert text.startswith("x" * 50 + "\n[flow] this try's log reached 50 bytes")
    assert text.endswith("last line\n") and "bytes cut here" in text
    assert path.stat().st_size < 100 + 400
