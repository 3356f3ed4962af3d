"""Fix-it's "run this beat entry now": proposing it for missed (or named) periodic tasks, and
sending it once approved.

Proposing reads the entry's task, arguments and routing options from its schedule store
(`beat/runspec.py`, through the readers on the board): RedBeat and django-celery-beat hold
them; the schedule file does not, so its entries are listed as not actionable. Automatic
proposals cover entries that missed runs while beat is up; while beat is down they are left
out (a restarted beat sends every overdue entry at once, so a run now would run twice); an
entry named in `run_entries` is proposed either way.

Each action claims `<source>/<entry>@<due>` like a retry claims its failure (journal.py): one
run now per entry and due time, across plans and replicas. The task leaves through
`celery_io.control.send_entry` with the entry's own options, a new task id chosen before the
send, and a header naming the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from exporter.beat.join import EntryView, join
from exporter.beat.runspec import NotRunnable, RunSpec
from exporter.beat.source import SourceView
from exporter.celery_io import CeleryIO, control
from exporter.remediation.plan import (
    DOUBT_HOLD_SECONDS,
    Action,
    Plan,
    RetryClaim,
    Skipped,
    digest_of,
)

KIND = "run_entry"
DEFAULT_QUEUE = "celery"  # Celery's task_default_queue, where send_task puts an unrouted task
NO_ARGS_FIX = (
    "the schedule file does not hold the entry's arguments: send the task by hand, or use "
    "RedBeat or django-celery-beat"
)


def _target(row: EntryView) -> str:
    due = f"{row.next_due:.0f}" if row.next_due is not None else "unknown"
    return f"{row.source}/{row.name}@{due}"


def _rows(
    views: Iterable[SourceView],
    last: dict[str, dict[str, float]],
    now: float,
    grace: float,
    stale: float,
) -> list[tuple[EntryView, bool | None]]:
    rows: list[tuple[EntryView, bool | None]] = []
    for view in views:
        status = join(view, last, now, grace, stale)
        if status is not None:
            rows.extend((row, status.up) for row in status.entries)
    return rows


def _find(rows: list[tuple[EntryView, bool | None]], asked: str) -> list[EntryView]:
    source, _, name = asked.rpartition("/")
    return [r for r, _ in rows if r.name == name and (not source or r.source == source)]


def propose(
    *,
    views: Iterable[SourceView],
    run_specs: Mapping[str, Callable[[str], RunSpec]],
    last: dict[str, dict[str, float]],
    requested: Iterable[str],
    automatic: bool,
    claims: Callable[[list[str]], Mapping[str, RetryClaim]],
    now: float,
    grace: float,
    stale_after: float,
) -> tuple[list[Action], list[Skipped]]:
    """Run-now actions for the entries asked for by name and, when `automatic`, for every
    enabled entry that missed runs while its beat is up."""
    rows = _rows(views, last, now, grace, stale_after)
    chosen: list[tuple[EntryView, str]] = []
    skipped: list[Skipped] = []
    for asked in dict.fromkeys(requested):
        found = _find(rows, asked)
        if len(found) != 1:
            if found:
                why, fix = "several sources have an entry of that name", "name it as SOURCE/ENTRY"
            else:
                why, fix = "no such beat entry", "entry names are in the Periodic tasks row"
            skipped.append(Skipped(asked, None, why, fix))
            continue
        chosen.append((found[0], "requested by name"))
    if automatic:
        for row, up in rows:
            if not row.entry.enabled or row.missed <= 0:
                continue
            if up is False:
                skipped.append(Skipped(f"{row.source}/{row.name}", row.task,
                    "beat is down: a restarted beat sends every overdue entry at once, so "
                    "running it now as well would run it twice",
                    "start beat; or name it in run_entries to send it now anyway"))  # fmt: skip
                continue
            if all(c is not row for c, _ in chosen):
                chosen.append((row, f"missed {row.missed} run(s), {row.overdue:.0f}s overdue"))
    held = claims([_target(r) for r, _ in chosen])
    actions: list[Action] = []
    for row, reason in chosen:
        label = f"{row.source}/{row.name}"
        if not row.entry.enabled:
            skipped.append(Skipped(label, row.task, "the entry is disabled"))
            continue
        claim = held.get(_target(row))
        if claim is not None:
            skipped.append(Skipped(label, row.task,
                f"already sent now by plan {claim.plan_id} for its run due "
                "at that time" if claim.sent else
                f"in doubt: plan {claim.plan_id} stopped while sending it as "
                f"{claim.new_task_id}; held until that task is seen (then it counts as "
                f"sent) or for at most {DOUBT_HOLD_SECONDS // 60} minutes"))  # fmt: skip
            continue
        fetch = run_specs.get(row.source)
        if fetch is None:
            skipped.append(Skipped(label, row.task, "its arguments are unknown", NO_ARGS_FIX))
            continue
        try:
            spec = fetch(row.name)
        except NotRunnable as exc:
            skipped.append(Skipped(label, row.task, f"not runnable: {exc.reason}"))
            continue
        except Exception as exc:  # the store is down: the entry cannot be read now
            skipped.append(Skipped(label, row.task,
                f"its schedule store could not be read: {type(exc).__name__}: {exc}"[:300],
                "propose again once the store answers"))  # fmt: skip
            continue
        actions.append(_action(row, spec, reason))
    return actions, skipped


def _action(row: EntryView, spec: RunSpec, reason: str) -> Action:
    opts = spec.options
    routed = "exchange" in opts or "routing_key" in opts
    queue = opts.get("queue") or (None if routed else DEFAULT_QUEUE)
    if opts.get("queue"):
        where = f"to queue {queue!r} (the entry's option)"
    elif routed:
        where = (f"to exchange {opts.get('exchange', '')!r} with routing key "
                 f"{opts.get('routing_key', '')!r} (the entry's options)")  # fmt: skip
    else:
        where = (f"to queue {DEFAULT_QUEUE!r} (the entry names no queue; beat would apply "
                 "your app's task_routes, which the exporter does not know)")  # fmt: skip
    extra = [f"priority {opts['priority']}"] if "priority" in opts else []
    if opts.get("headers"):
        extra.append(f"its headers ({', '.join(sorted(opts['headers'])[:10])})")
    left = f"; not carried over: {', '.join(spec.dropped)}" if spec.dropped else ""
    with_ = f", with {' and '.join(extra)}" if extra else ""
    return Action(
        kind=KIND,
        target=_target(row),
        task_name=spec.task,
        queue=queue,
        args=spec.args,
        kwargs=spec.kwargs,
        options=dict(opts),
        reason=reason,
        description=f"send {spec.task} now, once, with the arguments of beat entry "
        f"{row.name!r} ({row.source}) {where}{with_}{left}; beat's own schedule is unchanged",
    )


def extend(plan: Plan, actions: list[Action], skipped: list[Skipped]) -> None:
    """Add run-now actions to a freshly proposed plan and seal its digest again."""
    plan.actions = [*plan.actions, *actions]
    plan.skipped = [*plan.skipped, *skipped]
    plan.digest = digest_of(plan)


def send(io: CeleryIO, action: Action, plan_id: str, task_id: str) -> str:
    """Send the approved action's task (the only place it leaves); the new task id."""
    return control.send_entry(
        io,
        action.task_name or "",
        action.args or [],
        action.kwargs or {},
        {**(action.options or {}), "queue": action.queue},
        action.target,
        plan_id,
        task_id,
    )
