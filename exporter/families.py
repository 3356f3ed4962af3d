"""Metric families kept as plain rows, for the families with a series per task name and queue.

`CounterMetricFamily.add_metric` and `HistogramMetricFamily.add_metric` build a `Sample`
(a namedtuple and a label dict) per series, and the safe wrapper and the writer then walk
every one: at 1,000 task names that is ~48,000 samples and about half of a render. A `Table`
keeps one row per label set (the label values, the value or the buckets) and makes those
same samples only when something asks for `.samples` (prometheus_client's own encoder,
tests); the relabel wrapper (`--metric-prefix`, `--static-label`) relabels the rows. The
fast writer (`exporter/textformat.py`) instead asks it for the
sample lines, written from the rows with each row's label text made once: the same bytes
(the tests compare with prometheus_client's output over the golden scenarios).

Setting `.samples` (as the safe wrapper does after dropping one) makes the samples the truth
from then on, and the writer takes the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def _esc(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class Table(Metric):
    """A counter, gauge or histogram family as rows; samples only on demand."""

    def __init__(self, name: str, documentation: str, typ: str, labels: Sequence[str]) -> None:
        if typ == "counter" and name.endswith("_total"):
            name = name[:-6]  # as CounterMetricFamily does
        if typ not in _SUFFIXES:
            raise ValueError(f"a Table is a counter, gauge or histogram, not {typ}")
        super().__init__(name, documentation, typ)
        self._labelnames = tuple(labels)
        # counter/gauge: (label values, value); histogram: (label values, le texts,
        # cumulative counts, sum)
        self._rows: list[tuple[Any, ...]] = []
        self._samples: list[Sample] | None = None  # Metric.__init__ set [] through the setter

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._make_samples()
        return self._samples

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        self._samples = samples  # from now on the samples are what is rendered

    @property
    def rows_only(self) -> bool:
        """True while nobody took or set `.samples`: the rows are the whole truth."""
        return self._samples is None

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._check_open(labels)
        self._rows.append((tuple(labels), value))

    def add_histogram(
        self, labels: Sequence[str], les: Sequence[str], counts: Sequence[float], sum_value: float
    ) -> None:
        """`les` the bucket bounds as texts, "+Inf" last; `counts` one cumulative count each.
        `les` is best one tuple shared by the rows: its checks and escapes are made once."""
        self._check_open(labels)
        if not les or len(les) != len(counts):
            raise ValueError("one count per bucket, at least the +Inf one")
        self._rows.append((tuple(labels), les, tuple(counts), sum_value))

    def _check_open(self, labels: Sequence[str]) -> None:
        if self._samples is not None:  # a row added now would be missing from them
            raise ValueError("the samples were already made or set: add no more rows")
        if len(labels) != len(self._labelnames):
            raise ValueError(f"{len(self._labelnames)} label values expected")

    def relabelled(self, name: str, static: Mapping[str, str]) -> Table:
        """The same rows under another family name, every label set with `static` added
        (a static label replaces a label of the same name), as the relabel wrapper does to
        samples (`{**sample.labels, **static}`), still rows."""
        out = Table(name, self.documentation, self.type, ())
        names = list(self._labelnames)
        keep = [i for i, k in enumerate(names) if k not in static]
        out._labelnames = (*(names[i] for i in keep), *static)
        extra = tuple(static.values())
        out._rows = [(tuple(row[0][i] for i in keep) + extra, *row[1:]) for row in self._rows]
        return out

    def _make_samples(self) -> list[Sample]:
        names = self._labelnames
        out: list[Sample] = []
        if self.type != "histogram":
            suffix = _SUFFIXES[self.type][0]
            for values, value in self._rows:
                out.append(Sample(self.name + suffix, dict(zip(names, values, strict=True)), value))
            return out
        for values, les, cumulative, sum_value in self._rows:
            for le, count in zip(les, cumulative, strict=True):
                labels = dict([*zip(names, values, strict=True), ("le", le)])
                out.append(Sample(self.name + "_bucket", labels, float(count)))
            if float(les[0]) >= 0:  # as HistogramMetricFamily: no sum/count below zero
                last = float(cumulative[-1])
                out.append(
                    Sample(self.name + "_count", dict(zip(names, values, strict=True)), last)
                )
                out.append(
                    Sample(self.name + "_sum", dict(zip(names, values, strict=True)), sum_value)
                )
        return out

    def renderable(self) -> bool:
        """True when every sample the rows make is renderable (str labels encodable as
        UTF-8, values numbers): the safe wrapper then need not look at each sample."""
        if not self.rows_only:
            return False
        seen: set[str] = set()
        les_seen: dict[int, tuple[str, ...]] = {}
        try:
            for row in self._rows:
                for value in row[0]:
                    if value not in seen:
                        if value.__class__ is not str:
                            return False
                        if not value.isascii():
                            value.encode("utf-8")
                        seen.add(value)
                if self.type == "histogram":
                    if id(row[1]) not in les_seen:  # rows share their `les` tuple
                        for le in row[1]:
                            if le.__class__ is not str or not le.isascii():
                                return False
                        les_seen[id(row[1])] = row[1]  # kept alive: the id stays its own
                    for count in row[2]:
                        if count.__class__ is not int:
                            float(count)
                    float(row[3])
                else:
                    float(row[1])
        except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
            return False
        return True

    def sample_names(self) -> tuple[str, ...]:
        return tuple(self.name + s for s in _SUFFIXES[self.type])

    def label_names(self) -> tuple[str, ...]:
        return (*self._labelnames, "le") if self.type == "histogram" else self._labelnames

    def lines(self, value_of: Callable[[float], str]) -> list[str]:
        """The sample lines prometheus_client writes for these rows (labels sorted by name,
        values as `value_of` formats them), for `rows_only` families."""
        names = self._labelnames
        order = sorted(range(len(names)), key=names.__getitem__)
        out: list[str] = []
        ints: dict[int, str] = {}  # int keys only: 0 is never confused with -0.0

        def text(v: float) -> str:
            if v.__class__ is not int:
                return value_of(v)
            t = ints.get(v)
            if t is None:
                t = ints[v] = value_of(v)
            return t

        if self.type != "histogram":
            name = self.name + _SUFFIXES[self.type][0]
            for values, value in self._rows:
                if names:
                    labels = ",".join(f'{names[i]}="{_esc(values[i])}"' for i in order)
                    out.append(f"{name}{{{labels}}} {text(value)}\n")
                else:
                    out.append(f"{name} {text(value)}\n")
            return out
        before = [i for i in order if names[i] < "le"]
        after = [i for i in order if names[i] > "le"]
        bucket, count, total = (self.name + s for s in _SUFFIXES["histogram"])
        # id -> (the tuple, kept alive so the id stays its own; its texts escaped)
        les_esc: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for values, les, cumulative, sum_value in self._rows:
            head = "".join(f'{names[i]}="{_esc(values[i])}",' for i in before)
            tail = "".join(f',{names[i]}="{_esc(values[i])}"' for i in after)
            start, end = f'{bucket}{{{head}le="', f'"{tail}}} '
            escaped = les_esc.get(id(les))
            if escaped is None:
                escaped = les_esc[id(les)] = (les, tuple(_esc(le) for le in les))
            for le, c in zip(escaped[1], cumulative, strict=True):
                t = ints.get(c) if c.__class__ is int else None
                out.append(f"{start}{le}{end}{t or text(c)}\n")
            if float(les[0]) >= 0:
                joined = ",".join(f'{names[i]}="{_esc(values[i])}"' for i in order)
                labels = f"{{{joined}}}" if names else ""
                out.append(f"{count}{labels} {text(cumulative[-1])}\n")
                out.append(f"{total}{labels} {text(sum_value)}\n")
        return out
