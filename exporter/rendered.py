"""One rendered `/metrics` body (`Body`): its bytes, its gzip form, and the tail added as it
is served.

The gzip form is kept as a deflate stream flushed but not finished, with its compressor: a
scrape copies the compressor and finishes the stream with the tail (the body's age and the
renderer's own cost), so a gzip scrape compresses only those few lines. One gzip member with
the right CRC: a second member would be lost on clients that read only the first, such as
httpx. When to render is exposition.py's.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.naming import DEFAULT_PREFIX, renamed

# zlib level 1: a 4.0 MB body compresses to about 6% of its size in ~15 ms; level 6 gains a
# few percent for three times the CPU (measured with bench/scrape_bench.py, see RESULTS.md).
GZIP_LEVEL = 1
AGE_METRIC = "celery_exporter_metrics_render_age_seconds"
EOF_LINE = b"# EOF\n"


def _tail(
    openmetrics: bool, age: float, renders: int, cpu: float, prefix: str, labels: str
) -> bytes:
    """The families added as a body is served: its age, and the renderer's own cost, named
    and labelled like every other family (--metric-prefix, --static-label)."""
    lines = []
    for name, kind, value, help_text in (
        (AGE_METRIC, "gauge", age, "Seconds since the served /metrics body was rendered "
         "(--metrics-render-interval)"),
        ("celery_exporter_metrics_renders", "counter", renders,
         "Renders of /metrics bodies, every format"),
        ("celery_exporter_metrics_render_cpu_seconds", "counter", cpu,
         "CPU seconds spent rendering /metrics bodies"),
    ):  # fmt: skip
        name = renamed(name, prefix)
        family = name if openmetrics or kind != "counter" else f"{name}_total"
        sample = f"{name}_total" if kind == "counter" else name
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        lines.append(f"{sample}{labels} {value}")
    return ("\n".join(lines) + "\n").encode() + (EOF_LINE if openmetrics else b"")


def label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    esc = {
        k: v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        for k, v in labels.items()
    }
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


@dataclass(frozen=True)
class Body:
    """One rendered format (OpenMetrics without its `# EOF` line), plain and gzip-ready."""

    content_type: str
    plain: bytes
    gzip_head: bytes  # a gzip stream of `plain`, flushed, not finished
    compressor: zlib._Compress  # the state after `plain`: copied to finish a response
    rendered_at: float  # monotonic seconds
    openmetrics: bool
    took: float = 0.0  # seconds the render took

    @classmethod
    def render(
        cls,
        content_type: str,
        plain: bytes,
        at: float,
        openmetrics: bool,
        now: Callable[[], float],
    ) -> Body:
        """The body of `plain`, rendered since `at`; `took` counts the compression too."""
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper
        head = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(content_type, plain, head, compressor, at, openmetrics, took=now() - at)

    def serve(
        self,
        gzip_ok: bool,
        now: float,
        renders: int = 0,
        cpu: float = 0.0,
        prefix: str = DEFAULT_PREFIX,
        labels: str = "",
    ) -> bytes:
        age = round(max(0.0, now - self.rendered_at), 3)
        tail = _tail(self.openmetrics, age, renders, round(cpu, 6), prefix, labels)
        if gzip_ok:
            finish = self.compressor.copy()  # about 0.1 ms; the shared state stays unfinished
            return self.gzip_head + finish.compress(tail) + finish.flush()
        return self.plain + tail
