"""flow/protocol.py without sockets: framing, envelopes, the method table and role checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flow.protocol import (
    ERROR_CODES,
    MAX_LINE,
    METHODS,
    PROTOCOL_VERSION,
    ProtocolError,
    check_role,
    client_hello,
    decode,
    encode,
    error_reply,
    event,
    parse_hello,
    parse_request,
    validate,
)


def raises(code: str, fn, *args):
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    assert info.value.code == code, info.value.message
    return info.value


# -- framing ----------------------------------------------------------------------------------


def test_encode_is_one_compact_utf8_line_with_utc_datetimes():
    berlin = timezone(timedelta(hours=1))
    line = encode({"b": "héllo ✓", "t": datetime(2026, 1, 1, 10, 0, tzinfo=berlin), "s": {3}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "héllo ✓".encode() in line
    assert json.loads(line) == {"b": "héllo ✓", "t": "2026-01-01T09:00:00+00:00", "s": [3]}


def test_encode_refuses_nan_and_unknown_types():
    with pytest.raises(ValueError):
        encode({"x": float("nan")})
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        encode({"x": object()})


def test_decode_round_trips_what_encode_writes():
    msg = {"id": 7, "method": "dags.trigger", "params": {"dag_id": "etl", "conf": {"day": "ü"}}}
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("line, fragment", [
    (b"{not json", "not JSON"),
    (b'{"a": NaN}', "NaN is not JSON"),
    (b"[Infinity]", "Infinity is not JSON"),
    (b'"\xff\xfe"', "not UTF-8: invalid byte at position 1"),
    (b"", "not JSON"),
])
def test_decode_reports_parse_errors(line, fragment):
    err = raises("parse_error", decode, line)
    assert fragment in err.message


def test_line_limit_is_max_line_bytes_before_the_newline():
    exact = b'"' + b"a" * (MAX_LINE - 2) + b'"'
    assert len(exact) == MAX_LINE
    assert decode(exact + b"\n") == "a" * (MAX_LINE - 2)
    err = raises("line_too_long", decode, exact + b" \n")
    assert str(MAX_LINE) in err.message


def test_deep_nesting_is_a_parse_error_not_a_crash():
    raises("parse_error", decode, b"[" * 100_000 + b"]" * 100_000)


# -- envelopes --------------------------------------------------------------------------------


def test_hello_accepts_this_version():
    assert parse_hello(client_hello("flow-cli/0.1.0")) == {"protocol": PROTOCOL_VERSION, "client": "flow-cli/0.1.0"}


def test_hello_with_another_version_is_unsupported_and_names_both():
    err = raises("unsupported_version", parse_hello, {"hello": {"protocol": 2, "client": "x"}})
    assert err.message == "flowd speaks protocol 1; this client speaks 2"


@pytest.mark.parametrize("msg", [
    {"id": 1, "method": "status"}, [1], "hello", {"hello": "yes"}, {"hello": {"protocol": "1"}},
    {"hello": {"protocol": True}}, {"hello": {"protocol": 1, "client": 5}},
])
def test_anything_but_a_hello_first_is_an_invalid_request(msg):
    raises("invalid_request", parse_hello, msg)


def test_a_request_sent_instead_of_hello_keeps_its_id():
    err = raises("invalid_request", parse_hello, {"id": "a", "method": "status"})
    assert err.request_id == "a"


def test_parse_request_fills_empty_params():
    req = parse_request({"id": "x", "method": "status"})
    assert (req.id, req.method, req.params) == ("x", "status", {})


@pytest.mark.parametrize("msg, fragment, rid", [
    ([1, 2], "expected a request object, got an array", None),
    ({"method": "status"}, "id: expected a number or a string, got null", None),
    ({"id": True, "method": "status"}, "id: expected a number or a string, got true", None),
    ({"id": [1], "method": "status"}, "id: expected a number or a string", None),
    ({"id": 3}, "method: expected a string, got null", 3),
    ({"id": 3, "method": 4}, "method: expected a string, got 4", 3),
    ({"id": 3, "method": "status", "params": [1]}, "params: expected an object, got an array", 3),
    ({"id": 3, "hello": {"protocol": 1}}, "hello was already exchanged", 3),
])
def test_parse_request_refuses_bad_envelopes(msg, fragment, rid):
    err = raises("invalid_request", parse_request, msg)
    assert fragment in err.message
    assert err.request_id == rid


def test_error_reply_and_event_shapes():
    assert error_reply("not_found", "gone", 4) == {"id": 4, "error": {"code": "not_found", "message": "gone"}}
    assert error_reply("forbidden", "no", with_id=False) == {"error": {"code": "forbidden", "message": "no"}}
    assert event("ti", 3, {"a": 1}) == {"event": "ti", "seq": 3, "data": {"a": 1}}


def test_protocol_error_refuses_codes_outside_the_table():
    with pytest.raises(ValueError, match="unknown protocol error code"):
        ProtocolError("oops", "x")
    assert "internal" in ERROR_CODES and len(ERROR_CODES) == 11


# -- params -----------------------------------------------------------------------------------


def test_unknown_method_lists_the_known_ones():
    err = raises("unknown_method", validate, "dags.delete", {})
    assert "'dags.delete'" in err.message and "dags.trigger" in err.message


def test_defaults_are_filled_in():
    assert validate("runs.list", {"dag_id": "etl"}) == {"dag_id": "etl", "limit": 25, "before": None, "state": None}
    assert validate("logs.read", {"dag_id": "d", "run_id": "r", "task_id": "t"}) == {
        "dag_id": "d", "run_id": "r", "task_id": "t", "try_number": None, "offset": 0, "length": 65536}
    assert validate("tasks.clear", {"dag_id": "d", "run_id": "r"}) == {
        "dag_id": "d", "run_id": "r", "task_ids": None, "downstream": False, "upstream": False,
        "failed_only": False, "dry_run": False}
    assert validate("status", None) == {}


def test_null_counts_as_absent():
    assert validate("audit.list", {"dag_id": None, "limit": None}) == {"limit": 100, "dag_id": None}
    err = raises("invalid_params", validate, "dags.get", {"dag_id": None})
    assert err.message == "dag_id: required by dags.get but missing"


@pytest.mark.parametrize("method, params, message", [
    ("dags.get", {}, "dag_id: required by dags.get but missing"),
    ("dags.get", {"dag_id": 5}, "dag_id: expected a non-empty string, got 5"),
    ("dags.get", {"dag_id": ""}, "dag_id: expected a non-empty string, got ''"),
    ("dags.get", {"dag_id": "x", "dagid": "y"}, "dagid: not a parameter of dags.get (accepted: dag_id)"),
    ("dags.pause", {"dag_id": "x", "paused": 1}, "paused: expected true or false, got 1"),
    ("runs.list", {"dag_id": "x", "limit": "5"}, "limit: expected an integer, got '5'"),
    ("runs.list", {"dag_id": "x", "limit": True}, "limit: expected an integer, got true"),
    ("runs.list", {"dag_id": "x", "limit": 1.5}, "limit: expected an integer, got 1.5"),
    ("runs.list", {"dag_id": "x", "limit": 0}, "limit: expected an integer from 1 to 1000, got 0"),
    ("runs.list", {"dag_id": "x", "before": "yesterday"}, "before: expected an ISO 8601 date-time"),
    ("runs.list", {"dag_id": "x", "before": 17}, "before: expected an ISO 8601 date-time string, got 17"),
    ("dags.trigger", {"dag_id": "x", "conf": [1]}, "conf: expected an object, got an array"),
    ("tasks.mark", {"dag_id": "x", "run_id": "r", "task_ids": ["a"], "state": "running"},
     "state: expected one of success, failed, got 'running'"),
    ("tasks.mark", {"dag_id": "x", "run_id": "r", "task_ids": "a", "state": "success"},
     "task_ids: expected a list of strings, got 'a'"),
    ("tasks.clear", {"dag_id": "x", "run_id": "r", "task_ids": ["a", 3]}, "task_ids: expected a list of strings"),
    ("logs.read", {"dag_id": "d", "run_id": "r", "task_id": "t", "length": 1_048_577},
     "length: expected an integer from 0 to 1048576, got 1048577"),
    ("logs.read", {"dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 0},
     "try_number: expected an integer from 1, got 0"),
    ("subscribe", {"topics": ["ti", "log"]}, "topics: unknown event 'log' (known: ti, run, dag, dags)"),
])
def test_bad_params_name_the_param(method, params, message):
    err = raises("invalid_params", validate, method, params)
    assert err.message.startswith(message), err.message


def test_mark_requires_task_ids_and_state():
    err = raises("invalid_params", validate, "tasks.mark", {"dag_id": "x", "run_id": "r", "state": "success"})
    assert err.message.startswith("task_ids:")


def test_datetimes_are_parsed_to_utc():
    got = validate("runs.list", {"dag_id": "x", "before": "2026-03-01T10:00:00+01:00"})["before"]
    assert got == datetime(2026, 3, 1, 9, 0, tzinfo=UTC) and got.tzinfo == UTC
    assert validate("runs.list", {"dag_id": "x", "before": "2026-03-01T09:00:00Z"})["before"] == got
    assert validate("dags.trigger", {"dag_id": "x", "logical_date": "2026-03-01T09:00:00"})["logical_date"] == got


def test_topics_are_deduplicated_and_negative_offsets_allowed():
    assert validate("subscribe", {"topics": ["ti", "ti", "run"]}) == {"topics": ["ti", "run"]}
    assert validate("logs.follow", {"dag_id": "d", "run_id": "r", "task_id": "t", "offset": -100})["offset"] == -100


# -- roles ------------------------------------------------------------------------------------

MUTATING = {"dags.pause", "dags.trigger", "tasks.clear", "tasks.mark", "tasks.retry", "db.clean"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_operators_may_call_everything_and_viewers_every_read(method):
    check_role(method, "operator", {"dry_run": False})
    if method in MUTATING:
        err = raises("forbidden", check_role, method, "viewer", {"dry_run": False})
        assert f"{method} needs the operator role" in err.message and "you are a viewer" in err.message
    else:
        check_role(method, "viewer", {})


@pytest.mark.parametrize("method", ["tasks.clear", "tasks.mark", "tasks.retry", "db.clean"])
def test_viewers_may_dry_run_task_changes(method):
    check_role(method, "viewer", {"dry_run": True})


def test_viewers_may_not_trigger_even_with_a_dry_run_flag():
    err = raises("forbidden", check_role, "dags.trigger", "viewer", {"dry_run": True})
    assert "unless dry_run" not in err.message


def test_event_line_wraps_pre_encoded_data():
    from flow.protocol import dumps, event_line

    line = event_line("ti", 12, dumps({"task_id": "é", "n": None}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"event": "ti", "seq": 12, "data": {"task_id": "é", "n": None}}
