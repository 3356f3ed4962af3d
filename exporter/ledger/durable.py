"""The ledger's durable state as plain dicts: counters, the watermark, live dedup entries,
the last run times per task name and where an unfinished reconcile pass stands, encoded
from and decoded into `LedgerTables` (the saved rows are read by saved_rows.py).

`export_state` is called under the ledger's lock and returns an *incremental* change set: the
counters in full (small), the watermark, the dedup entries changed since the last export that
are still above the watermark or unfinished (`seen`), and ids that no longer need keeping
(`drop`). The keeper (keeper/store.py) writes that to Redis in one transaction, so counters
and dedup state always match. `import_state` restores fresh tables from what the keeper read
back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from exporter.decode import clean
from exporter.ledger.attribution import HELD
from exporter.ledger.entry import FLAGS_MASK, Entry, shared_seen
from exporter.ledger.histograms import Histogram
from exporter.ledger.packed import cool, entry_of, ids, lookup, settled_of
from exporter.ledger.pending import Effect
from exporter.ledger.saved_rows import COUNTERS, Repairs, decode_entry, is_count, last_row
from exporter.ledger.tables import LedgerTables

log = logging.getLogger(__name__)
VERSION = 1


def _needed(e: Entry | bytes | None, watermark: float) -> bool:
    if e is None:
        return False
    settled = settled_of(e)
    return settled is None or settled > watermark or (isinstance(e, Entry) and bool(e.seen & HELD))


def _encode(e: Entry, held: list[Effect]) -> str:
    settled = "" if e.settled is None else repr(e.settled)
    retries = f"{e.retry_total}.{e.retry_ev}.{e.retry_other}"
    fields = [str(e.seen & FLAGS_MASK), retries, settled, e.name or "", e.queue or ""]
    if held:
        # Effects still waiting for labels are saved with the entry, not in the counters:
        # the counters and the entry are written in one transaction, so a restart holds them
        # again (a fresh grace) and applies each exactly once. (Applying them before every
        # save instead would cut the grace short every 10 s.) A release marks the entry
        # dirty, so the next save writes it without them, beside counters that include them.
        fields.append(json.dumps(held, separators=(",", ":")))
    return "\x1f".join(fields)


def export_state(t: LedgerTables) -> dict[str, Any]:
    if not t.tracking:
        # First save: from now on changes are tracked; write everything needed once.
        t.tracking = True
        t.dirty.update(ids(t))
    w = t.watermark
    seen: dict[str, str] = {}
    drop: list[str] = []
    for task_id in t.dirty:
        e = lookup(t, task_id)
        if _needed(e, w):
            assert e is not None
            entry = entry_of(t, task_id, e)
            seen[task_id] = _encode(entry, t.pending.effects(task_id, entry))
            t.persisted.add(task_id)
        elif task_id in t.persisted and task_id not in t.evicted:
            # (an evicted id still above the watermark keeps its saved entry)
            drop.append(task_id)
            t.persisted.discard(task_id)
    t.dirty.clear()
    if w != t.persisted_watermark:
        # The watermark moved: entries it now covers need not be kept any more.
        for task_id in list(t.persisted):
            if not _needed(lookup(t, task_id), w) and task_id not in t.evicted:
                drop.append(task_id)
                t.persisted.discard(task_id)
        t.persisted_watermark = w
    if len(t.persisted) > len(t.entries) + len(t.cold) + len(t.evicted):
        # Some saved ids are neither entries nor remembered evicted ids: evicted ids that the
        # bounded evicted-id memory gave up after they were saved (a long reconcile pass
        # evicts and gives up many). Sweep them, so the store stays as bounded as the ledger.
        evicted = t.evicted
        for task_id in [i for i in t.persisted if i not in evicted]:
            if not _needed(lookup(t, task_id), w):
                drop.append(task_id)
                t.persisted.discard(task_id)
    counters = {
        "v": VERSION,
        "watermark": w,
        "tasks": [[*k, v] for k, v in t.tasks.items()],
        "by_worker": [[*k, v] for k, v in t.by_worker.items()],
        "exceptions": [[*k, v] for k, v in t.exceptions.items()],
        "runtime": [[*k, h.to_json()] for k, h in t.hists.runtime.items()],
        "wait": [[*k, h.to_json()] for k, h in t.hists.wait.items()],
        "evictions": t.evictions,
        "pass": list(t.pass_position) if t.pass_position else None,
        # last sent/received/started/succeeded/failed per name (absent in older saves)
        "last": t.last.rows(),
    }
    return {"counters": counters, "seen": seen, "drop": drop}


def import_state(t: LedgerTables, data: dict[str, Any], now: float) -> None:
    """Restore counters and dedup entries; label guards re-admit the names they held.

    What was saved is input like any other (an older version may have saved a label holding
    a lone surrogate, which no scrape can render): labels are cleaned with the decoders'
    rule (rows that clean to the same labels are added up), rows of the wrong shape or type
    and counts that are not non-negative integers are dropped. Never raises."""
    counters = data.get("counters") if isinstance(data, dict) else None
    if not isinstance(counters, dict) or counters.get("v") != VERSION:
        return
    fixed = Repairs()
    watermark = clean.finite(counters.get("watermark", 0.0))
    if watermark is not None:
        t.watermark = max(t.watermark, watermark)
    t.persisted_watermark = t.watermark
    for labels, value in fixed.rows(counters.get("tasks"), 3, ("name", "queue_name", None)):
        _admit(t, name=labels[0], queue_name=labels[1])
        if labels[2] in COUNTERS:
            key = (labels[0], labels[1], labels[2])
            t.tasks[key] = t.tasks.get(key, 0) + value
    for labels, value in fixed.rows(
        counters.get("by_worker"), 4, ("name", "queue_name", None, "hostname")
    ):
        _admit(t, hostname=labels[3])
        if labels[2] in COUNTERS:
            wkey = (labels[0], labels[1], labels[2], labels[3])
            t.by_worker[wkey] = t.by_worker.get(wkey, 0) + value
    for labels, value in fixed.rows(counters.get("exceptions"), 2, ("name", "exception")):
        _admit(t, exception=labels[1])
        ekey = (labels[0], labels[1])
        t.exceptions[ekey] = t.exceptions.get(ekey, 0) + value
    hists = t.hists
    for table, rows, bounds in (
        (hists.runtime, "runtime", hists.buckets),
        (hists.wait, "wait", hists.wait_buckets),
    ):
        for labels, raw in fixed.rows(counters.get(rows), 2, ("name", "queue_name"), hist=True):
            hist = Histogram(bounds)
            hist.load_json(raw)  # a bucket layout that changed since is dropped, not misread
            hkey = (labels[0], labels[1])
            if hkey in table:  # two saved rows that clean to the same labels
                old = table[hkey]
                hist.counts = [a + b for a, b in zip(hist.counts, old.counts, strict=True)]
                hist.sum += old.sum
            table[hkey] = hist
    evictions = counters.get("evictions", 0)
    t.evictions += evictions if is_count(evictions) else 0
    position = counters.get("pass")
    if isinstance(position, list) and len(position) == 3:
        # An unfinished reconcile pass, resumed if Redis is the same process; junk is ignored.
        run_id, cursor, start = position
        start = clean.in_range(clean.finite(start))
        if isinstance(run_id, str) and is_count(cursor) and start is not None:
            t.pass_position = (clean.label(run_id, 100) or "", cursor, start)
    last_rows = counters.get("last")  # older saves have none
    for row in last_rows if isinstance(last_rows, list) else ():
        name_times = last_row(row)
        if name_times is None:
            fixed.dropped += 1
            continue
        name, times = name_times
        if name != row[0]:
            fixed.cleaned += 1
        t.last.restore(name, times)
    seen = data.get("seen")
    for task_id, encoded in (seen if isinstance(seen, dict) else {}).items():
        decoded = decode_entry(encoded) if isinstance(task_id, str) else None
        if decoded is None:
            fixed.dropped += 1
        elif task_id not in t.entries and task_id not in t.cold:
            e, held = decoded
            share = t.strings.share  # (shared names can be packed: packed.py)
            e.name = e.name and share(e.name)
            e.queue = e.queue and share(e.queue)
            t.entries[task_id] = e
            t.warm.append(task_id)
            t.warm_entries.append(e)
            t.persisted.add(task_id)
            if held:  # effects that waited for labels when saved: held again, a fresh grace
                e.seen = shared_seen(e.seen | HELD)
                t.pending.restore(task_id, e, held, now)
    for _ in range(len(t.warm) - t.warm_size):
        cool(t)  # the oldest loaded entries are cold already
    if fixed.dropped or fixed.cleaned:
        log.warning(
            "saved ledger state: %d unreadable rows dropped, %d labels cleaned (an older "
            "version saved input it should have refused); the next save stores it clean",
            fixed.dropped,
            fixed.cleaned,
        )


def _admit(t: LedgerTables, **labels: str) -> None:
    for label, value in labels.items():
        guard = t.guards[label]
        if value not in ("other", "unknown") and len(guard.values) < guard.limit:
            guard.values.add(value)
