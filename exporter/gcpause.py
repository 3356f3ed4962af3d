"""`gc_paused()`: the cyclic garbage collector switched off around a large batch job.

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


def trim_heap() -> bool:
    """Return freed heap pages to the system (glibc); False where that is not possible."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


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
