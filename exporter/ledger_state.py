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
import json
import math
from typing import TYPE_CHECKING, Any

from exporter.ledger_entry import READY_MASK, STATE_OF_BIT, Entry
from exporter.ledger_labels import HELD
from exporter.ledger_parts import Histogram
from exporter.ledger_pending import Effect
from exporter.taskstate import COUNTER_FOR_STATE

if TYPE_CHECKING:
    from exporter.ledger import Ledger

VERSION = 1


def _needed(e: Entry | None, watermark: float) -> bool:
    if e is None:
        return False
    return e.settled is None or e.settled > watermark or bool(e.seen & HELD)


def _encode(e: Entry, held: list[Effect]) -> str:
    settled = "" if e.settled is None else repr(e.settled)
    retries = f"{e.retry_total}.{e.retry_ev}.{e.retry_other}"
    fields = [str(e.seen), retries, settled, e.name or "", e.queue or ""]
    if held:
        # Effects still waiting for labels are saved with the entry, not in the counters:
        # the counters and the entry are written in one transaction, so a restart holds them
        # again (a fresh grace) and applies each exactly once. (Applying them before every
        # save instead would cut the grace short every 10 s.) A release marks the entry
        # dirty, so the next save writes it without them, beside counters that include them.
        fields.append(json.dumps(held, separators=(",", ":")))
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
            seen[task_id] = _encode(e, ledger._pending.effects(task_id))
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
    now = ledger._clock.time()
    for task_id, encoded in (data.get("seen") or {}).items():
        decoded = _decode(encoded)
        if decoded is not None and task_id not in ledger._entries:
            e, held = decoded
            ledger._entries[task_id] = e
            ledger._order.append(task_id)
            ledger._persisted.add(task_id)
            if held:
                e.seen |= HELD
                ledger._pending.restore(task_id, held, now)


def _admit(ledger: Ledger, **labels: str) -> None:
    for label, value in labels.items():
        guard = ledger._guards[label]
        if value not in ("other", "unknown") and len(guard.values) < guard.limit:
            guard.values.add(value)


def _decode(encoded: str) -> tuple[Entry, list[Effect]] | None:
    try:
        seen, retries, settled, name, queue, *rest = encoded.split("\x1f")
        total, ev, other = (int(x) for x in retries.split("."))
        e = Entry("PENDING")
        e.seen = int(seen) & ~HELD  # set again below if effects wait
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
    return e, _effects(rest[0]) if rest else []


_COUNTER_NAMES = frozenset(COUNTER_FOR_STATE.values())


def _effects(raw: str) -> list[Effect]:
    """Held effects read back; anything malformed is dropped, never raised."""
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    out: list[Effect] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, list) or len(item) != 3:
            continue
        kind, a, b = item
        if kind == "c" and a in _COUNTER_NAMES and _int(b) and 0 < b <= 1000:
            out.append(("c", a, b))
        elif kind == "x" and isinstance(a, str) and len(a) <= 200:
            out.append(("x", a, 0))
        elif kind == "w" and isinstance(a, bool):
            out.append(("w", a, 0))
        elif kind in ("r", "q") and _num(a) and 0 <= a < 1e12:
            out.append((kind, float(a), 0))
    return out


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
