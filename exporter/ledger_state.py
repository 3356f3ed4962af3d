"""The ledger's durable state as plain dicts: counters, the watermark, live dedup entries and
where an unfinished reconcile pass stands.

`export_state` is called under the ledger's lock and returns an *incremental* change set: the
counters in full (small), the watermark, the dedup entries changed since the last export that
are still above the watermark or unfinished (`seen`), and ids that no longer need keeping
(`drop`). `ledger_store.py` writes that to Redis in one transaction, so counters and dedup
state always match. `import_state` restores a fresh ledger from what the store read back.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from exporter.ledger_entry import READY_MASK, STATE_OF_BIT, Entry
from exporter.ledger_parts import Histogram

if TYPE_CHECKING:
    from exporter.ledger import Ledger

VERSION = 1


def _needed(e: Entry | None, watermark: float) -> bool:
    if e is None:
        return False
    return e.settled is None or e.settled > watermark


def _encode(e: Entry) -> str:
    settled = "" if e.settled is None else repr(e.settled)
    retries = f"{e.retry_total}.{e.retry_ev}.{e.retry_other}"
    fields = (str(e.seen), retries, settled, e.name or "", e.queue or "")
    return "\x1f".join(fields)


def export_state(ledger: Ledger) -> dict[str, Any]:
    if not ledger._tracking:
        # First save: from now on changes are tracked; write everything needed once.
        ledger._tracking = True
        ledger._dirty.update(ledger._entries)
    w = ledger._watermark
    seen: dict[str, str] = {}
    drop: list[str] = []
    for task_id in ledger._dirty:
        e = ledger._entries.get(task_id)
        if _needed(e, w):
            assert e is not None
            seen[task_id] = _encode(e)
            ledger._persisted.add(task_id)
        elif task_id in ledger._persisted and task_id not in ledger._evicted:
            # (an evicted id still above the watermark keeps its saved entry)
            drop.append(task_id)
            ledger._persisted.discard(task_id)
    ledger._dirty.clear()
    if w != ledger._persisted_watermark:
        # The watermark moved: entries it now covers need not be kept any more.
        for task_id in list(ledger._persisted):
            if not _needed(ledger._entries.get(task_id), w) and task_id not in ledger._evicted:
                drop.append(task_id)
                ledger._persisted.discard(task_id)
        ledger._persisted_watermark = w
    if len(ledger._persisted) > len(ledger._entries) + len(ledger._evicted):
        # Some saved ids are neither entries nor remembered evicted ids: evicted ids that the
        # bounded evicted-id memory gave up after they were saved (a long reconcile pass
        # evicts and gives up many). Sweep them, so the store stays as bounded as the ledger.
        entries, evicted = ledger._entries, ledger._evicted
        for task_id in [i for i in ledger._persisted if i not in evicted]:
            if not _needed(entries.get(task_id), w):
                drop.append(task_id)
                ledger._persisted.discard(task_id)
    counters = {
        "v": VERSION,
        "watermark": w,
        "tasks": [[*k, v] for k, v in ledger._tasks.items()],
        "by_worker": [[*k, v] for k, v in ledger._by_worker.items()],
        "exceptions": [[*k, v] for k, v in ledger._exceptions.items()],
        "runtime": [[*k, h.to_json()] for k, h in ledger._hists.runtime.items()],
        "wait": [[*k, h.to_json()] for k, h in ledger._hists.wait.items()],
        "evictions": ledger._evictions,
        "pass": list(ledger.pass_position) if ledger.pass_position else None,
    }
    return {"counters": counters, "seen": seen, "drop": drop}


def import_state(ledger: Ledger, data: dict[str, Any]) -> None:
    """Restore counters and dedup entries; label guards re-admit the names they held."""
    counters = data.get("counters") or {}
    if counters.get("v") != VERSION:
        return
    ledger._watermark = max(ledger._watermark, float(counters.get("watermark", 0.0)))
    ledger._persisted_watermark = ledger._watermark
    for name, queue, counter, value in counters.get("tasks", []):
        _admit(ledger, name=name, queue_name=queue)
        key = (name, queue, counter)
        ledger._tasks[key] = ledger._tasks.get(key, 0) + int(value)
    for name, queue, counter, host, value in counters.get("by_worker", []):
        _admit(ledger, hostname=host)
        wkey = (name, queue, counter, host)
        ledger._by_worker[wkey] = ledger._by_worker.get(wkey, 0) + int(value)
    for name, exc, value in counters.get("exceptions", []):
        _admit(ledger, exception=exc)
        ekey = (name, exc)
        ledger._exceptions[ekey] = ledger._exceptions.get(ekey, 0) + int(value)
    hists = ledger._hists
    for table, rows, bounds in (
        (hists.runtime, "runtime", hists.buckets),
        (hists.wait, "wait", hists.wait_buckets),
    ):
        for name, queue, raw in counters.get(rows, []):
            hist = Histogram(bounds)
            hist.load_json(raw)  # a bucket layout that changed since is dropped, not misread
            table[(name, queue)] = hist
    ledger._evictions += int(counters.get("evictions", 0))
    position = counters.get("pass")
    if isinstance(position, list) and len(position) == 3:
        # An unfinished reconcile pass, resumed if Redis is the same process; junk is ignored.
        with contextlib.suppress(TypeError, ValueError):
            ledger.pass_position = (str(position[0]), int(position[1]), float(position[2]))
    for task_id, encoded in (data.get("seen") or {}).items():
        e = _decode(encoded)
        if e is not None and task_id not in ledger._entries:
            ledger._entries[task_id] = e
            ledger._order.append(task_id)
            ledger._persisted.add(task_id)


def _admit(ledger: Ledger, **labels: str) -> None:
    for label, value in labels.items():
        guard = ledger._guards[label]
        if value not in ("other", "unknown") and len(guard.values) < guard.limit:
            guard.values.add(value)


def _decode(encoded: str) -> Entry | None:
    try:
        seen, retries, settled, name, queue = encoded.split("\x1f")
        total, ev, other = (int(x) for x in retries.split("."))
        e = Entry("PENDING")
        e.seen = int(seen)
        e.retry_total, e.retry_ev, e.retry_other = total, ev, other
        e.settled = float(settled) if settled else None
    except ValueError:
        return None
    e.name = name or None
    e.queue = queue or None
    # The newest state the bits show, so the API does not call a finished task pending.
    for bit in sorted(STATE_OF_BIT, reverse=True):
        if e.seen & bit:
            e.state = STATE_OF_BIT[bit]
            break
    e.runtime_done = bool(e.seen & READY_MASK)
    e.wait_done = bool(e.seen & (READY_MASK | 4))  # 4: STARTED
    return e
