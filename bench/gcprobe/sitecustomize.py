"""The live bench's `--gc` probe: every cyclic-GC collection of the process it is loaded in.

Put on ours' PYTHONPATH by bench/live_bench.py when `--gc` is given, with GC_PROBE_LOG naming
a file: Python imports `sitecustomize` at start, and this appends one line per collection,
`<wall time> <generation> <CPU us of the collecting thread> <thread name>`, from
`gc.callbacks`. Nothing is loaded without the variable.
"""

from __future__ import annotations

import gc
import os
import threading
import time

_path = os.environ.get("GC_PROBE_LOG")
if _path:
    _out = open(_path, "a", buffering=1)  # noqa: SIM115 (open for the process's lifetime)
    _started = [0.0]

    def _probe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _started[0] = time.thread_time()
            return
        spent = (time.thread_time() - _started[0]) * 1e6
        name = threading.current_thread().name
        _out.write(f"{time.time():.3f} {info['generation']} {spent:.0f} {name}\n")

    gc.callbacks.append(_probe)
