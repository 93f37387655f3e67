"""The remote sampler's script and parser, against output captured from a Linux host (then trimmed).

The captures keep what a live host really prints: a login script talking first, a process that
exited between the grep and the read (a T line with no S line), an /proc/PID/io the sampler could
not read (no I line), a comm with spaces and parentheses, and a session member without the tag.
"""

from __future__ import annotations

import pytest

from flow.executors.ssh_sample import parse_sample, sample_script

TAG_A = "0a1b2c3d4e5f60718293a4b5"
TAG_B = "ffeeddccbbaa998877665544"

# bash (7262, session leader of try A) -> python3 (7263, 16150 pages) and a gone 7264;
# 7270 "(my (odd) worker)" moved to a session of its own but carries tag A;
# 7300 is in try B's session (7299) with no tag (it ran `env -i`), and its io was unreadable.
CAPTURE = f"""\
Welcome to host7 (a noisy .profile)
flow-sample 1 100 4096
T /proc/7262/environ:FLOW_TRY={TAG_A}
T /proc/7263/environ:FLOW_TRY={TAG_A}
T /proc/7264/environ:FLOW_TRY={TAG_A}
T /proc/7270/environ:FLOW_TRY={TAG_A}
S 7262 (bash) S 7260 7262 7262 0 -1 4194304 177 0 0 0 10 5 120 30 20 0 1 0 397023 4464640 795 18446744073709551615 0
I 7262 0 4096
S 7263 (python3) S 7262 7262 7262 0 -1 4194304 15672 6599 0 0 250 40 0 0 20 0 3 0 397024 69410816 16150 18446744073709551615 0
I 7263 8192 1048576
S 7270 (my (odd) worker) S 1 7270 7270 0 -1 4194304 1 0 0 0 100 0 0 0 20 0 1 0 397100 1000 256 18446744073709551615 0
I 7270 0 0
S 7300 (sleep) S 7299 7299 7299 0 -1 4194304 1 0 0 0 1 1 0 0 20 0 1 0 397200 1000 100 18446744073709551615 0
S 7301 (truncated) S 7299 7299
garbage line
end
"""


def test_figures_are_summed_per_try_from_tag_and_session():
    got = parse_sample(CAPTURE, {TAG_A: 7262, TAG_B: 7299})
    assert got is not None
    a, b = got[TAG_A], got[TAG_B]
    assert a.procs == 3  # 7264 vanished before its stat was read
    assert a.user == pytest.approx((10 + 120 + 250 + 100) / 100)  # utime + cutime, in CLK_TCK
    assert a.system == pytest.approx((5 + 30 + 40) / 100)
    assert a.rss == (795 + 16150 + 256) * 4096
    assert (a.read_bytes, a.write_bytes) == (8192, 4096 + 1048576)
    assert a.threads == 5
    assert b.procs == 1 and b.rss == 100 * 4096 and b.read_bytes == 0  # io unreadable: counted as 0


def test_clock_ticks_and_page_size_come_from_the_host():
    text = CAPTURE.replace("flow-sample 1 100 4096", "flow-sample 1 250 65536")
    a = parse_sample(text, {TAG_A: 7262})[TAG_A]
    assert a.user == pytest.approx(480 / 250)
    assert a.rss == (795 + 16150 + 256) * 65536


def test_a_try_with_nothing_left_gets_zero_processes():
    got = parse_sample("flow-sample 1 100 4096\nend\n", {TAG_A: 7262})
    assert got is not None and got[TAG_A].procs == 0 and got[TAG_A].rss == 0


@pytest.mark.parametrize("text", [
    "",  # the channel closed at once
    "bash: grep: command not found\n",  # not the script's output
    CAPTURE.replace("end\n", ""),  # cut off: a partial tick would record too little
])
def test_output_that_is_not_a_whole_sample_is_refused(text):
    assert parse_sample(text, {TAG_A: 7262}) is None


def test_a_bad_header_falls_back_to_linux_defaults():
    text = CAPTURE.replace("flow-sample 1 100 4096", "flow-sample 1 ? ?")
    assert parse_sample(text, {TAG_A: 7262})[TAG_A].rss == (795 + 16150 + 256) * 4096


def test_the_script_batches_every_try_of_a_host_into_one_command():
    script = sample_script({TAG_A: 7262, TAG_B: 7299, "abc": 0})
    assert script.count("grep -a") == 1 and script.count("pgrep ") == 1
    assert f"-e FLOW_TRY={TAG_A} -e FLOW_TRY={TAG_B} -e FLOW_TRY=abc" in script
    assert "pgrep -s 7262,7299 " in script


def test_a_tag_that_is_not_a_digest_never_reaches_the_shell():
    with pytest.raises(ValueError):
        sample_script({"x; rm -rf ~": 1})


def test_the_local_sampler_leaves_remote_tries_to_the_remote_source():
    from types import SimpleNamespace

    from flow.daemon.resources_remote import remote_refs

    class Remote:
        def owns(self, ref: str) -> bool:
            return ref.startswith("r")

        def sample_plan(self, refs: list[str]) -> list:
            return []

    running = [("r1", 4242, None, None), ("l1", 4243, None, None)]
    engine = SimpleNamespace(executor=SimpleNamespace(remote=Remote()))
    assert remote_refs(engine, running) == {"r1"}  # 4242 is a session id on another host
    assert remote_refs(SimpleNamespace(executor=SimpleNamespace(remote=None)), running) == set()
    assert remote_refs(SimpleNamespace(executor=object()), running) == set()
