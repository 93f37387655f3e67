"""Random lines at a running flowd server: every one gets a well-formed reply, none is a bug
(`internal`), and the server answers `status` on a fresh connection afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.protocol import ERROR_CODES, METHODS, dumps
from tests.daemon.serverharness import (  # noqa: F401
    FAILING_DAG,
    HELLO_DAG,
    Client,
    LiveServer,
    close_clients,
    server_settings,
    write_dags,
)

JSON_LEAF = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16))
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
PARAM_NAMES = sorted({p.name for m in METHODS.values() for p in m.params} | {"bogus"})
PLAUSIBLE = st.sampled_from(["hello", "failing", "say", "boom", "manual__2025-01-01T00:00:00+00:00",
                             "2025-01-01T00:00:00Z", "success", "ti", -5, 0, 3, True, ["say"], ["ti", "dag"]])
REQUESTS = st.fixed_dictionaries(
    {"id": st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=10),
     "method": st.sampled_from(sorted(METHODS)) | st.text(max_size=12)},
    optional={"params": st.dictionaries(st.sampled_from(PARAM_NAMES), PLAUSIBLE | JSON, max_size=6) | JSON},
)
NAMES = st.sampled_from(["hello", "failing", "say", "after", "boom", "manual__2025-01-01T00:00:00+00:00", "nope"])
BY_KIND = {
    "str": NAMES | st.text(min_size=1, max_size=20),
    "bool": st.booleans(),
    "int": st.sampled_from([0, 1, -1, 25, 65536, 1_048_576, -(2**40)]) | st.integers(-(2**64), 2**64),
    "object": st.dictionaries(st.text(max_size=8), JSON, max_size=3),
    "str_list": st.lists(NAMES, max_size=3),
    "datetime": st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01", "2025-13-01T00:00:00", "now"]),
    "choice": st.sampled_from(["success", "failed", "running"]),
    "topics": st.lists(st.sampled_from(["ti", "run", "dag", "dags", "log"]), max_size=3),
}


@st.composite
def schema_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests shaped by the method table, mostly well typed, so random input reaches the handlers."""
    method = METHODS[draw(st.sampled_from(sorted(METHODS)))]
    params: dict[str, Any] = {}
    for param in method.params:
        choice = draw(st.integers(0, 9))
        if choice == 0 and not param.required:
            continue
        params[param.name] = draw(JSON) if choice == 9 else draw(BY_KIND[param.kind])
    return {"id": draw(st.integers(0, 10**6)), "method": method.name, "params": params}


LINES = st.one_of(schema_requests().map(dumps), schema_requests().map(dumps), REQUESTS.map(dumps),
                  JSON.map(dumps), st.binary(max_size=120))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    conf = server_settings(tmp_path_factory.mktemp("fuzz"))
    write_dags(conf, {"hello.py": HELLO_DAG, "failing.py": FAILING_DAG})
    server = LiveServer(conf).start()
    client = Client(server.path)
    client.result("dags.trigger", dag_id="hello", logical_date="2025-01-01T00:00:00Z")
    client.close()
    yield server
    server.stop()


def check_message(msg: dict[str, Any]) -> None:
    if "event" in msg:
        assert isinstance(msg["seq"], int) and isinstance(msg["data"], dict), msg
        return
    assert "id" in msg and (("result" in msg) != ("error" in msg)), msg
    if "error" in msg:
        error = msg["error"]
        assert error["code"] in ERROR_CODES and isinstance(error["message"], str) and error["message"], msg
        assert error["code"] != "internal", f"random input hit a bug in flowd: {msg}"
    else:
        assert isinstance(msg["result"], dict), msg


def still_serving(live: LiveServer) -> None:
    fresh = Client(live.path, timeout=10)
    assert fresh.result("status")["pid"] == os.getpid()
    fresh.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, min_size=1, max_size=4))
def test_random_lines_after_the_hello(live: LiveServer, lines: list[bytes]) -> None:
    client = Client(live.path, timeout=10)
    client.send_raw(b"\n".join(lines) + b'\n{"id": "probe", "method": "status"}\n')
    while True:
        msg = client.recv()
        assert msg is not None, "flowd closed the connection on a line under the limit"
        check_message(msg)
        if msg.get("id") == "probe" and "result" in msg:
            break
    client.close()
    still_serving(live)


@settings(max_examples=60, deadline=None)
@given(line=LINES)
def test_random_first_lines_are_refused_and_closed(live: LiveServer, line: bytes) -> None:
    client = Client(live.path, hello=False, timeout=10)
    client.send_raw(line + b"\n")
    msg = client.recv()
    assert msg is not None and set(msg) <= {"id", "error"}, msg
    assert msg["error"]["code"] in ("parse_error", "invalid_request", "unsupported_version"), msg
    assert client.recv() is None
    client.close()
    still_serving(live)


def test_the_fuzzed_server_is_intact(live: LiveServer) -> None:
    """After the random traffic, the DAGs are still there and the triggered run still reads back."""
    client = Client(live.path)
    ids = [d["dag_id"] for d in client.result("dags.list")["dags"]]
    assert {"hello", "failing"} <= set(ids)
    runs = client.result("runs.list", dag_id="hello", limit=1000)["runs"]
    assert "manual__2025-01-01T00:00:00+00:00" in [r["run_id"] for r in runs]
    client.close()
