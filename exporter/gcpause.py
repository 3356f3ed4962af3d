"""`gc_paused()`: the cyclic garbage collector switched off around a large batch job; and
`settle()`: what start-up leaves frozen out of its later walks.

A reconcile pass allocates millions of short-lived objects (decoded results, updates) while
the ledger holds hundreds of thousands of long-lived entries. The allocations keep
triggering collections, and the full ones walk every entry: about 10% of a 1M-result pass,
for no garbage (results and updates are freed by reference counting; nothing in the pass
makes cycles).

The switch is process-wide. While it is off, other threads (event receiver, pub/sub
listener, HTTP) still free everything by reference counting; only reference cycles they
make wait for the end of the pass, when the collector runs again as usual. Passes never
overlap, but the pauses nest safely: the collector comes back when the last one ends, and
only if it was on when the first began. It always comes back, exception or not.

`settle()` is the collector's other start-up concern. A full collection walks every tracked
object, and the first one after start-up came in the first 3,000 tasks of the live bench:
57 ms with an empty ledger, 85 ms with a full one (the imported modules, the app, the loaded
ledger), 19-28 us a task in that window, paid by the event thread (bench/RESULTS.md). What
is alive once start-up is over lives as long as the process, so the daemon settles twice:
after its first poll (everything imported and connected) and after its first complete
reconcile pass (the ledger that pass filled). Garbage is collected first; what is left is
frozen (`gc.freeze`): reference counting still frees it, but no collection walks it again.
A cycle among it that later becomes garbage is kept: 67 objects of the 109,000 frozen after
a start-up with 20,000 stored results (unfrozen and collected by a probe), once a process.

When the last pause ends, the heap the job freed is handed back to the system with glibc's
`malloc_trim`: a 1M-result pass leaves its decoded results' memory free but mapped, and
without the trim the exporter's RSS stayed 14.7 MB higher for good (161.7 MB -> 147.0 MB,
15.6 ms for the trim, bench/RESULTS.md). Elsewhere (musl, macOS) there is nothing to call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _find_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_trim()
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# Blocks from this size up get their own mapping, handed back to the system when freed.
LARGE_BLOCK = 1 << 20


def map_large_blocks() -> bool:
    """Serve every block of LARGE_BLOCK or more from its own mapping (glibc; False elsewhere).

    glibc starts with 128 KiB and raises the threshold to the size of each mapped block
    freed (up to 32 MiB), so after the ledger's first dict resize its multi-megabyte tables
    came from the heap, and the freed ones stayed there: RSS after 1M tasks 98.1 MB, with
    this 87.8 MB (bench/ledger_memory.py). A fixed threshold also stops that raising. Called
    once at start by the daemon (and by the memory bench, which measures the same process).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK))
    except (OSError, AttributeError):
        return False


def trim_heap() -> bool:
    """Return freed heap pages to the system (glibc); False where that is not possible."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def settle() -> None:
    """Collect, then freeze what is left out of every later collection's walk (above)."""
    gc.collect()
    gc.freeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            last = _depth == 0
            if last and _was_enabled:
                gc.enable()
        if last:
            trim_heap()
