"""What the page's task browser, task detail and trends read, beyond views.py's task model.

`detail` adds to a task what `exporter.taskdetail` keeps (traceback, parent/children, which
source reported which state when) and the derived times (wait); `page_counts` counts what a
filter matches, over all pages, and how far back the rings reach; `trends_out` turns the
trend buckets into points and a sentence a screen reader can read out. Memory only.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.api.models import TaskOut, TaskReport, TrendPoint, TrendsOut
from exporter.api.views import human_seconds, passes, ts, utc
from exporter.decode import clean
from exporter.taskdata import TRACEBACK_MAX, TaskRecord
from exporter.taskdetail import Detail
from exporter.trends import Point


def detail(
    task: TaskOut, rec: TaskRecord | None, kept: Detail | None, traceback: str | None = None
) -> TaskOut:
    """The task as the detail view shows it (a copy; `task` is left as it is). `traceback`:
    the result backend's, for a task read from there."""
    extra: dict[str, object] = {"traceback": clean.text(traceback, TRACEBACK_MAX)}
    if rec is not None:
        extra["received_at"] = ts(rec.received_at)
        begun = rec.sent_at or rec.received_at
        if begun and rec.started_at and rec.started_at >= begun:
            extra["wait_seconds"] = round(rec.started_at - begun, 6)
    if kept is not None:
        extra["traceback"] = clean.text(kept.traceback or traceback, TRACEBACK_MAX)
        # (The sources decode and clean every id; cleaned again here, as views.py does.)
        extra["root_id"] = clean.label(kept.root_id, 255)
        extra["children"] = [c for c in map(clean.label, kept.children) if c]
        reports = sorted(kept.reports, key=lambda r: r.at or 0.0)  # in time, then as heard
        extra["reports"] = [
            TaskReport(state=r.state, source=r.source, at=ts(r.at)) for r in reports
        ]
        if task.parent_id is None and kept.parent_id:
            extra["parent_id"] = clean.label(kept.parent_id, 255)
    return task.model_copy(update=extra)


def page_counts(
    records: Iterable[TaskRecord],
    *,
    status: str | None,
    name: str | None,
    queue: str | None,
    worker: str | None,
    since: float | None,
    until: float | None,
) -> tuple[int, dict[str, int], int, float | None]:
    """(matched, matched by status ignoring the status filter, kept, oldest update kept)."""
    wanted = status.upper() if status else None
    matched = kept = 0
    by_status: dict[str, int] = {}
    oldest: float | None = None
    for rec in records:
        kept += 1
        at = rec.updated_at or 0.0
        if at and (oldest is None or at < oldest):
            oldest = at
        if not passes(rec, at, name, queue, worker, since, until):
            continue
        by_status[rec.state] = by_status.get(rec.state, 0) + 1
        if wanted is None or rec.state == wanted:
            matched += 1
    return matched, by_status, kept, oldest


def trends_out(points: list[Point], step: float) -> TrendsOut:
    out = []
    for p in points:
        done = p.succeeded + p.failed
        out.append(
            TrendPoint(
                start=utc(p.start),
                succeeded=p.succeeded,
                failed=p.failed,
                success_rate=round(p.succeeded / done, 4) if done else None,
                finished_per_minute=round(done * 60.0 / step, 2),
                queue_depth=p.depth,
                queue_depth_max=p.depth_max,
            )
        )
    return TrendsOut(step_seconds=step, points=out, summary=_summary(out, step))


def _summary(points: list[TrendPoint], step: float) -> str:
    if not points:
        return "No trend yet: the first points appear after the first polls."
    span = human_seconds(step * len(points))
    ok = sum(p.succeeded for p in points)
    bad = sum(p.failed for p in points)
    done = ok + bad
    rate = f"{ok / done:.0%} succeeded" if done else "nothing finished"
    per_min = done * 60.0 / (step * len(points))
    depths = [p.queue_depth for p in points if p.queue_depth is not None]
    depth = (
        f"; queue depth now {depths[-1]:,}, at most {max(depths):,}"
        if depths
        else "; queue depth unknown (no poll reached the broker)"
    )
    return (
        f"Over the last {span}: {done:,} tasks finished ({per_min:.1f} per minute), "
        f"{rate} ({bad:,} failed){depth}."
    )
