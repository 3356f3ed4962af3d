"""The two exposition formats, written for our metric families several times faster than
prometheus_client writes them, byte for byte the same.

prometheus_client's `generate_latest` validates and escapes every label name of every sample
and formats through several layers of calls: about 23 µs per sample, so 1.0 s for the 43,000
samples of 1,000 task names (measured on this machine, loaded). Our families use a few fixed,
valid names, so here names are checked once per distinct name, label values are escaped only
when they hold a character that needs it, and values repeat enough to be cached.

A family using anything this writer does not handle (exemplars, timestamps, native
histograms, units, names outside the legacy character set, another escaping scheme) is
written by prometheus_client itself, so the output is always exactly its output; the tests
compare both over the golden scenarios and over random families (hypothesis).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable

from prometheus_client.exposition import generate_latest as _client_text
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES
from prometheus_client.openmetrics.exposition import generate_latest as _client_om
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.families import Table

# No colons: OpenMetrics output escapes sample names with the label-name rule, which turns
# a colon into "_" under the default escaping; our names have none, so this writer keeps out.
_METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_CACHE_MAX = 50_000
# Sample names the text format writes in its own way (prometheus_client does it).
_CLIENT_ONLY = ("_created", "_gsum", "_gcount")


class _Families:
    """A collector of given families, to hand one family back to prometheus_client."""

    def __init__(self, families: Iterable[object]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[object]:
        return self._families


class _Writer:
    def __init__(self, fallback: Callable[[Collector], bytes]) -> None:
        self._fallback = fallback  # the client's encoder, as negotiated
        self._names: dict[str, bool] = {}
        self._labels: dict[str, bool] = {}
        self._values: dict[float, str] = {}

    def _name_ok(self, name: str) -> bool:
        ok = self._names.get(name)
        if ok is None:
            ok = self._names[name] = _METRIC_NAME.fullmatch(name) is not None
        return ok

    def _value(self, value: float) -> str:
        text = self._values.get(value)
        if text is None:
            text = floatToGoString(value)
            # 0.0 and -0.0 are equal keys with different texts; NaN is never found again.
            if value != 0 and not math.isnan(value) and len(self._values) < _CACHE_MAX:
                self._values[value] = text
        return text

    def _table(self, table: Table, out: list[str]) -> bool:
        """A `Table`'s lines written from its rows; False when it needs the sample path."""
        if not table.rows_only or not all(map(self._name_ok, table.sample_names())):
            return False
        for k in table.label_names():
            ok = self._labels.get(k)
            if ok is None:
                ok = self._labels[k] = _LABEL_NAME.fullmatch(k) is not None
            if not ok:
                return False
        out.extend(table.lines(self._value))
        return True

    def _samples(self, samples: list[Sample], out: list[str]) -> bool:
        """Append the sample lines; False (nothing appended) when one needs the client."""
        lines: list[str] = []
        label_ok = self._labels
        value_of = self._value
        for s in samples:
            if s.timestamp is not None or s.exemplar is not None or s.native_histogram:
                return False
            name = s.name
            if not self._name_ok(name):
                return False
            labels = s.labels
            if labels:
                parts = []
                for k, v in sorted(labels.items()):
                    ok = label_ok.get(k)
                    if ok is None:
                        ok = label_ok[k] = _LABEL_NAME.fullmatch(k) is not None
                    if not ok:
                        return False
                    if "\\" in v or "\n" in v or '"' in v:
                        v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
                    parts.append(f'{k}="{v}"')
                lines.append(f"{name}{{{','.join(parts)}}} {value_of(s.value)}\n")
            else:
                lines.append(f"{name} {value_of(s.value)}\n")
        out.extend(lines)
        return True

    def text(self, families: Iterable[object]) -> bytes:
        """Prometheus text format 0.0.4, as `prometheus_client.generate_latest` writes it."""
        out: list[str] = []
        for metric in families:
            name, mtype = metric.name, metric.type  # type: ignore[attr-defined]
            if mtype == "counter":
                name += "_total"
            elif mtype == "info":
                name += "_info"
            if mtype == "unknown":
                mtype = "untyped"
            mtype = _TEXT_TYPES.get(mtype, mtype)
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")  # type: ignore[attr-defined]
            head = [f"# HELP {name} {doc}\n", f"# TYPE {name} {mtype}\n"]
            lines: list[str] = []
            if (
                isinstance(metric, Table)
                and self._name_ok(name)
                and not any(n.endswith(_CLIENT_ONLY) for n in metric.sample_names())
                and self._table(metric, lines)
            ):
                out += head
                out += lines
                continue
            samples = metric.samples  # type: ignore[attr-defined]
            own = self._name_ok(name) and not any(s.name.endswith(_CLIENT_ONLY) for s in samples)
            if own and self._samples(samples, lines):
                out += head
                out += lines
            else:
                out.append(self._fallback(_Families([metric])).decode())  # type: ignore[arg-type]
        return "".join(out).encode()

    def openmetrics(self, families: Iterable[object]) -> bytes:
        """OpenMetrics 1.0.0, as prometheus_client's OpenMetrics `generate_latest` writes it."""
        out: list[str] = []
        for metric in families:
            name = metric.name  # type: ignore[attr-defined]
            doc = metric.documentation  # type: ignore[attr-defined]
            doc = doc.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            head = [f"# HELP {name} {doc}\n", f"# TYPE {name} {metric.type}\n"]  # type: ignore[attr-defined]
            lines: list[str] = []
            if (
                self._name_ok(name)
                and not metric.unit  # type: ignore[attr-defined]
                and (
                    (isinstance(metric, Table) and self._table(metric, lines))
                    or self._samples(metric.samples, lines)  # type: ignore[attr-defined]
                )
            ):
                out += head
                out += lines
            else:
                body = self._fallback(_Families([metric])).decode()  # type: ignore[arg-type]
                out.append(body[: -len("# EOF\n")])
        out.append("# EOF\n")
        return "".join(out).encode()


def encoder_for(encoder: Callable[[Collector], bytes]) -> Callable[[Collector], bytes]:
    """The fast writer doing what `encoder` (from `choose_encoder`) does, or `encoder` itself
    when it asks for what only the client writes (another escaping scheme, a newer OpenMetrics
    version). One writer per format, so its caches live as long as the exposition."""
    func, kw = encoder, {}
    if isinstance(encoder, functools.partial):
        func, kw = encoder.func, encoder.keywords
    if kw.get("escaping", UNDERSCORES) not in _SAME_FOR_OUR_NAMES:
        return encoder
    if func is _client_text:
        text = _Writer(encoder)
        return lambda registry: text.text(registry.collect())
    if func is _client_om and kw.get("version", "1.0.0") == "1.0.0":
        om = _Writer(encoder)
        return lambda registry: om.openmetrics(registry.collect())
    return encoder


# Escaping schemes that leave names in the legacy character set as they are.
_SAME_FOR_OUR_NAMES = (UNDERSCORES, ALLOWUTF8)
