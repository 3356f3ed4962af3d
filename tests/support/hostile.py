"""Hostile input for the decoders' tests: JSON documents and values an attacker with write
access to the backend Redis (or the broker) could store or publish, and a promtool check of
what the exporter then renders.

JSON is written by hand where the stdlib would refuse (nesting deeper than its recursion
limit): a value `DEEP(n)` in a document becomes n nested lists in its text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import strategies as st

SURROGATES = ("\ud800", "\udc00", "\udfff", "a\ud83db")  # lone halves; JSON "\ud800"
BAD_DATES = (
    "9999-12-31T23:59:59-23:59",  # year 10000 once shifted to UTC
    "0001-01-01T00:00:00+23:59",  # before year 1 in UTC
    "9999-12-31T23:59:59.999999+00:00",
    "2026-02-30T10:00:00",
    "2026-01-02T03:04:05Z",
    "not a date",
    "",
)
TEXTS = ("x\x00y", "line\nbreak", "\x7f\x85\u2028", "é ü 漢", "ok.task", "a" * 3000)


class Deep:
    """A placeholder for `n` nested lists around `leaf` in a document's JSON text."""

    def __init__(self, n: int, leaf: str = '"x"') -> None:
        self.n, self.leaf = n, leaf

    def __repr__(self) -> str:  # hypothesis prints failing examples
        return f"Deep({self.n})"


def dumps(value: Any) -> bytes:
    """JSON text of `value` (NaN, Infinity and lone surrogates as the stdlib writes them),
    with every `Deep` expanded in place."""
    deep: list[Deep] = []

    def mark(v: Any) -> Any:
        if isinstance(v, Deep):
            deep.append(v)
            return f"__deep_{len(deep) - 1}__"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(value))
    for i, d in enumerate(deep):
        text = text.replace(f'"__deep_{i}__"', "[" * d.n + d.leaf + "]" * d.n, 1)
    return text.encode("utf-8", "surrogatepass")  # escaped already; kept as written


surrogate_text = st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=4), st.sampled_from(SURROGATES), st.text(max_size=4)
)
texts = st.one_of(
    st.text(max_size=20), surrogate_text, st.sampled_from(TEXTS + BAD_DATES + SURROGATES)
)
numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
deep = st.builds(Deep, st.sampled_from([40, 64, 65, 200, 999, 1023, 1100, 5000]))
scalars = st.one_of(texts, numbers)
values = st.recursive(
    st.one_of(scalars, deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
STATES = ("SUCCESS", "FAILURE", "RETRY", "REVOKED", "STARTED", "PENDING", "REJECTED", "junk")


@st.composite
def result_docs(draw: Any) -> bytes:
    """A stored Celery result as JSON text: each field right, wrong-typed or hostile."""
    doc: dict[str, Any] = {}
    doc["status"] = draw(st.one_of(st.sampled_from(STATES), values))
    for key in ("name", "queue", "worker", "parent_id", "root_id"):
        if draw(st.booleans()):
            doc[key] = draw(values)
    doc["date_done"] = draw(st.one_of(st.sampled_from(BAD_DATES), values))
    if draw(st.booleans()):
        doc["retries"] = draw(st.one_of(st.integers(-5, 10**7), values))
    exc = {"exc_type": draw(values), "exc_message": draw(st.one_of(values, deep))}
    doc["result"] = draw(st.one_of(st.just(exc), values))
    if draw(st.booleans()):
        doc["args"], doc["kwargs"] = draw(values), draw(values)
    return dumps(doc)


def raw_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(result_docs(), st.binary(max_size=64), values.map(dumps))


def check_exposition(text: bytes) -> None:
    """`promtool check metrics` accepts the page (any lint finding but errors is allowed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (scripts/ensure-deps installs it)")
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0 and "error" not in out.lower(), out[:2000]
