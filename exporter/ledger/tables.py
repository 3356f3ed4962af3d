"""`LedgerTables`: every mutable table of one ledger, as plain fields in one object.

The `Ledger` (ledger.py) owns one and touches it only under its lock; the modules that work
on it (fold.py writes, attribution.py labels, reads.py copies, durable.py encodes and
decodes) take it as their first argument, so nothing reaches into another class's privates.
Nothing here locks.

Slotted on purpose: the fold reads these fields per update, and slots keep each read as
cheap as a plain attribute of the ledger was.
"""

from __future__ import annotations

from collections import deque

from exporter.ledger.churn import Churn
from exporter.ledger.cold import ColdStore
from exporter.ledger.entry import Entry, Extra, SourceBits, Strings
from exporter.ledger.evicted import EvictedIds
from exporter.ledger.guard import UNKNOWN, LabelGuard
from exporter.ledger.histograms import TaskHistograms
from exporter.ledger.hosts import HostCounts
from exporter.ledger.last import LastTimes
from exporter.ledger.pending import PendingLabels
from exporter.ledger.window import OutcomeWindow

# Ids in the warm window of a default ledger (a tenth of 200,000; bench/RESULTS.md).
WARM_MAX = 20_000
# `cool_due` is swept of ids that settled or went once it is twice as long as after the
# last sweep, and never below this.
COOL_DUE_MIN = 1024


class LedgerTables:
    __slots__ = (
        "backfill",
        "below_watermark",
        "by_worker",
        "churn",
        "cold",
        "cool_due",
        "cool_due_at",
        "dirty",
        "entries",
        "evicted",
        "evictions",
        "exceptions",
        "extras",
        "guards",
        "hists",
        "hosts",
        "last",
        "max_tasks",
        "names",
        "outcomes",
        "pass_position",
        "pending",
        "persisted",
        "persisted_watermark",
        "queues",
        "recent",
        "recent_failed",
        "running",
        "sources",
        "strings",
        "tasks",
        "thaws",
        "tracking",
        "warm",
        "warm_entries",
        "warm_size",
        "watermark",
        "worker_label",
    )

    def __init__(
        self,
        max_tasks: int,
        max_task_names: int,
        max_exception_types: int,
        recent_size: int,
        recent_failed_size: int,
        success_window: float,
        buckets: tuple[float, ...],
        wait_buckets: tuple[float, ...],
        worker_label: bool,
        derive_runtime: bool,
        label_grace: float,
        default_queue: str,
        hosts: HostCounts | None = None,
    ) -> None:
        self.max_tasks = max_tasks
        self.worker_label = worker_label
        # Entries as objects: the warm window, and older ones still open (running, or
        # effects waiting for labels). Settled ones leave the window packed into `cold`
        # (cold.py, packed.py: read them through packed.lookup). Eviction is first in,
        # first out, in the order entries left the window (fold.evict): the oldest packed
        # record or the oldest open entry, whichever left first; the window's oldest only
        # when neither is left. A task evicted while open is simply counted on from scratch.
        self.entries: dict[str, Entry] = {}
        self.cold = ColdStore(max_tasks)
        # The newest ids (and ones tried too early), oldest first: the one that leaves is
        # packed if it can be (packed.cool); ids that left it open, oldest first, each with
        # the cold store's tail when it left (swept of stale ones, packed._sweep). Extras of
        # packed entries; late updates that unpacked one.
        self.warm: deque[str] = deque()
        self.warm_entries: deque[Entry] = deque()  # (each id's entry when it joined)
        self.warm_size = max(1, min(WARM_MAX, max_tasks // 10))
        self.cool_due: deque[tuple[int, str, Entry]] = deque()
        self.cool_due_at = COOL_DUE_MIN
        self.extras: dict[int, Extra] = {}
        self.thaws = 0
        # Copied once every 0.7 x max_tasks deletes (packs and evictions): a copy of a
        # churned dict of the 20,000 warm entries takes a few ms.
        self.churn = Churn(max_tasks * 7 // 10 + 1)
        # (name, queue, counter) -> total; with --task-worker-label also per hostname
        self.tasks: dict[tuple[str, str, str], int] = {}
        self.by_worker: dict[tuple[str, str, str, str], int] = {}
        self.exceptions: dict[tuple[str, str], int] = {}
        # Without events there is no `runtime` field: derive it from pub/sub receive times.
        self.hists = TaskHistograms(tuple(buckets), tuple(wait_buckets), derive_runtime)
        # --compat danihodovic: outcomes and runtimes per worker node too (hosts.py)
        self.hosts = self.hists.hosts = hosts
        self.guards = {
            "name": LabelGuard(max_task_names),
            "queue_name": LabelGuard(max_task_names),
            "exception": LabelGuard(max_exception_types),
            "hostname": LabelGuard(max_task_names),
        }
        self.names, self.queues = self.guards["name"], self.guards["queue_name"]
        self.queues.default = default_queue or UNKNOWN
        self.evictions = 0
        self.below_watermark = 0
        # Every ready result settled at or below it has been counted (see ledger.py).
        self.watermark = 0.0
        self.running: dict[str, Entry] = {}
        self.recent: deque[str] = deque(maxlen=recent_size)
        self.recent_failed: deque[str] = deque(maxlen=recent_failed_size)
        self.outcomes = OutcomeWindow(success_window)
        self.last = LastTimes()  # per name label: last sent/received/started/succeeded/failed
        # Evicted task ids whose results a reconcile could still find above the watermark,
        # oldest first; bounded like the entries, so the oldest are given up first.
        self.evicted = EvictedIds(max(1, max_tasks // 2))
        self.backfill = False  # a reconcile source exists (see Ledger.expect_backfill)
        # Label-dependent effects waiting for a name or queue (attribution.py); a quarter
        # of the entries may wait at once, far more than a grace of seconds needs.
        self.pending = PendingLabels(label_grace, max(1, max_tasks // 4))
        self.strings = Strings()  # one object per distinct name/queue/worker
        self.sources = SourceBits()  # source name -> bit of Entry.sources
        # An unfinished reconcile pass: (Redis run_id, next cursor, start), saved with state.
        self.pass_position: tuple[str, int, float] | None = None
        # Saving bookkeeping (only once a keeper saves us, durable.py): ids changed since
        # the last export, ids held in the store, the watermark the store holds.
        self.tracking = False
        self.dirty: set[str] = set()
        self.persisted: set[str] = set()
        self.persisted_watermark = 0.0
