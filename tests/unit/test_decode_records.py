"""Result parsing: JSON only, every field guarded, hostile content skipped and never decoded."""

from __future__ import annotations

import json
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.decode.clean import epoch as parse_date
from exporter.decode.records import (
    INVALID_JSON,
    NOT_A_RESULT,
    NOT_JSON,
    OTHER_STATE,
    PICKLE,
    parse_result,
    task_id_from_key,
)
from exporter.taskdata import FAILURE, SUCCESS, TaskUpdate


def meta(**kw: object) -> bytes:
    base: dict[str, object] = {
        "status": SUCCESS,
        "result": 3,
        "traceback": None,
        "children": [],
        "date_done": "2026-01-02T03:04:05.5+00:00",
    }
    base.update(kw)
    return json.dumps(base).encode()


def test_success_with_extended_fields() -> None:
    u = parse_result(meta(name="tests.add", queue="q1", worker="w@h", retries=2), "id1", "pubsub")
    assert isinstance(u, TaskUpdate)
    assert (u.task_id, u.state, u.name, u.queue, u.worker, u.retries) == (
        "id1",
        SUCCESS,
        "tests.add",
        "q1",
        "w@h",
        2,
    )
    assert u.timestamp == parse_date("2026-01-02T03:04:05.5+00:00")
    assert u.args is None  # successes keep no arguments


def test_failure_with_list_exc_message_as_celery_stores_it() -> None:
    raw = meta(
        status=FAILURE,
        result={"exc_type": "ValueError", "exc_message": ["bad", 3], "exc_module": "builtins"},
        args=[1],
        kwargs={},
    )
    u = parse_result(raw, "id", "pubsub")
    assert isinstance(u, TaskUpdate)
    assert u.exception_type == "ValueError" and u.exception_message == "bad, 3"
    assert u.args == [1] and u.args_complete


def test_pickle_is_recognised_and_never_loaded() -> None:
    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (exec, ("raise SystemExit('unpickled!')",))

    for protocol in (0, 2, 5):
        assert parse_result(pickle.dumps(Boom(), protocol=protocol), "id", "pubsub") == PICKLE


def test_hostile_and_corrupt_values() -> None:
    assert parse_result(b"", "id", "p") == NOT_JSON
    assert parse_result(b"\x00\x01msgpack", "id", "p") == NOT_JSON
    assert parse_result(b"{not json", "id", "p") == INVALID_JSON
    assert parse_result(b"{" * 100_000, "id", "p") == INVALID_JSON
    assert parse_result(b'{"result": 1}', "id", "p") == NOT_A_RESULT
    assert parse_result(b'{"status": 7}', "id", "p") == NOT_A_RESULT
    assert parse_result(meta(status="PROGRESS"), "id", "p") == OTHER_STATE
    u = parse_result(meta(name=5, queue=[], worker={}, retries="2", date_done=12), "id", "p")
    assert isinstance(u, TaskUpdate) and u.name is None and u.retries is None
    assert u.timestamp is None
    u = parse_result(meta(status=FAILURE, result="not a dict"), "id", "p")
    assert isinstance(u, TaskUpdate) and u.exception_type is None
    u = parse_result(meta(retries=True, date_done="garbage"), "id", "p")
    assert isinstance(u, TaskUpdate) and u.retries is None and u.timestamp is None


def test_multi_megabyte_traceback_is_parsed_and_truncated() -> None:
    huge = "x" * 5_000_000
    raw = meta(status=FAILURE, traceback=huge, result={"exc_type": "E", "exc_message": [huge]})
    u = parse_result(raw, "id", "p")
    assert isinstance(u, TaskUpdate) and len(u.exception_message or "") <= 2000


def test_naive_date_done_is_utc() -> None:
    assert parse_date("2026-01-02T03:04:05") == parse_date("2026-01-02T03:04:05+00:00")


def test_key_filter_with_prefix() -> None:
    assert task_id_from_key(b"app1:celery-task-meta-abc", "app1:") == "abc"
    assert task_id_from_key(b"celery-task-meta-abc", "app1:") is None
    assert task_id_from_key(b"app1:celery-task-meta-", "app1:") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        for k in (
            "status",
            "result",
            "date_done",
            "name",
            "queue",
            "worker",
            "retries",
            "args",
            "kwargs",
            "parent_id",
            "traceback",
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(fields, st.sampled_from([None, "SUCCESS", "FAILURE", "RETRY", "REVOKED", "STARTED"]))
def test_any_json_document_parses_or_skips(doc: dict[str, object], status: str | None) -> None:
    if status:
        doc["status"] = status
    out = parse_result(json.dumps(doc).encode(), "id", "pubsub")
    assert isinstance(out, (str, TaskUpdate))
    if isinstance(out, TaskUpdate):
        assert out.name is None or isinstance(out.name, str)
        assert out.retries is None or isinstance(out.retries, int)
        assert out.timestamp is None or isinstance(out.timestamp, float)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_skip(raw: bytes) -> None:
    assert isinstance(parse_result(raw, "id", "pubsub"), (str, TaskUpdate))


def reference_parse(raw: bytes, task_id: str, source: str) -> TaskUpdate | str:
    """The plain stdlib-json version parse_result replaced for speed: both must agree."""
    from exporter.decode.clean import depth_within, label, text
    from exporter.decode.records import ARGS_DEPTH, COUNTED_STATES, TRACEBACK_MAX, _message, sniff

    if not raw:
        return NOT_JSON
    reason = sniff(raw)
    if reason:
        return reason
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return INVALID_JSON
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
        return NOT_A_RESULT
    status = doc["status"]
    if status not in COUNTED_STATES:
        return OTHER_STATE
    result = doc.get("result")
    exc_type = exc_message = traceback = None
    if status in (FAILURE, "RETRY", "REVOKED") and isinstance(result, dict):
        exc_type = label(result.get("exc_type"), 200)
        exc_message = _message(result.get("exc_message"))
        traceback = text(doc.get("traceback"), TRACEBACK_MAX)
    retries = doc.get("retries")
    shallow = all(depth_within(doc.get(k), ARGS_DEPTH) for k in ("result", "args", "kwargs"))
    keep = status != SUCCESS and "args" in doc and "kwargs" in doc and shallow
    ok_retries = isinstance(retries, int) and not isinstance(retries, bool)
    return TaskUpdate(
        task_id=task_id,
        state=status,
        source=source,
        timestamp=parse_date(doc.get("date_done")),
        name=label(doc.get("name"), 500),
        queue=label(doc.get("queue"), 500),
        worker=label(doc.get("worker"), 500),
        retries=retries if ok_retries and 0 <= retries < 1_000_000 else None,  # type: ignore[operator]
        exception_type=exc_type,
        exception_message=exc_message,
        traceback=traceback,
        args=doc.get("args") if keep else None,
        kwargs=doc.get("kwargs") if keep else None,
        args_complete=keep,
        parent_id=label(doc.get("parent_id"), 255),
        root_id=label(doc.get("root_id"), 255) if status != SUCCESS else None,
    )


@settings(max_examples=300, deadline=None)
@given(fields, st.sampled_from([None, "SUCCESS", "FAILURE", "RETRY", "REVOKED", "STARTED"]))
def test_fast_parser_agrees_with_the_stdlib_reference(
    doc: dict[str, object], status: str | None
) -> None:
    if status:
        doc["status"] = status
    raw = json.dumps(doc).encode()  # includes integers beyond 64 bits, NaN-free floats
    assert parse_result(raw, "id", "pubsub") == reference_parse(raw, "id", "pubsub")


def test_fast_parser_agrees_on_edge_cases() -> None:
    big = 10**30
    for raw in (
        meta(status=FAILURE, args=[big], kwargs={"n": big}, result={"exc_message": [big]}),
        meta(retries=big),
        # 64-bit edges: orjson keeps these as int, one more digit or step makes a float
        meta(status=FAILURE, args=[2**63 - 1, -(2**63), 10**18], kwargs={}),
        meta(status=FAILURE, args=[2**64, -(2**63) - 1], kwargs={"n": 2**64 - 1}),
        meta(status="RETRY", args=[], kwargs={}, result={"exc_message": [-(10**19)]}),
        b'{"status": "SUCCESS", "result": NaN, "date_done": "2026-01-02T03:04:05Z"}',
        b'  {"status": "SUCCESS", "name": "a", "name": "b"}',
        b'{"status": "SUCCESS", "name": "\\ud800"}',
        b'{"status": "SUCCESS"} trailing',
    ):
        assert parse_result(raw, "id", "p") == reference_parse(raw, "id", "p"), raw
        assert parse_result(raw.decode(), "id", "p") == reference_parse(raw, "id", "p"), raw


def reference_date(value: str) -> float | None:
    from datetime import datetime, timezone

    from exporter.decode.clean import in_range

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    except (ValueError, OverflowError):
        return None
    return in_range(when)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([None]) | st.timezones()))
def test_date_fast_path_agrees_with_fromisoformat(when: object) -> None:
    from datetime import datetime, timezone

    assert isinstance(when, datetime)
    for value in (when.isoformat(), when.replace(tzinfo=timezone.utc).isoformat()):
        assert parse_date(value) == reference_date(value), value


def test_date_fast_path_rejects_what_fromisoformat_rejects() -> None:
    for value in (
        "2026-02-30T10:00:00+00:00",
        "2026-01-02T24:00:00+00:00",
        "2026-01-02T03:60:05+00:00",
        "2026-01-02T03:\u0660\u0664:05+00:00",  # Arabic-Indic digits
        "2026-01-02T03:04:05.12345+00:00",
    ):
        assert parse_date(value) == reference_date(value), value
