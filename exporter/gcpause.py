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
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


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
            if _depth == 0 and _was_enabled:
                gc.enable()
