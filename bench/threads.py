"""Per-thread CPU and wake-ups of a running process, for the idle bench's `--threads`.

CPU comes from /proc/<pid>/task/<tid>/schedstat (nanoseconds on the CPU, exact: not the
10 ms ticks of /proc/<pid>/stat), wake-ups from each thread's voluntary context switches.
Python 3.11 does not name native threads, so names come from `py-spy dump` when py-spy is
installed (it prints each thread's native id and Python name); otherwise the thread id is
the name. The scheduler's pool threads (`ThreadPoolExecutor-0_N`) are summed as one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

Sample = dict[int, tuple[int, int]]  # tid -> (CPU ns, voluntary context switches)


def sample(pid: int) -> Sample:
    out: Sample = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu_ns = int((task / "schedstat").read_text().split()[0])
            switches = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    switches = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
        out[int(task.name)] = (cpu_ns, switches)
    return out


def names(pid: int) -> dict[int, str]:
    """tid -> Python thread name, from py-spy (empty when it is not installed)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        text = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', text, re.M):
        found[int(tid)] = re.sub(r"ThreadPoolExecutor-(\d+)_\d+", r"pool-\1", name)
    return found


def per_thread(
    before: Sample, after: Sample, wall: float, named: dict[int, str]
) -> list[tuple[str, float, float]]:
    """(name, CPU ms/s, wake-ups/s) per thread name, busiest first."""
    rows: dict[str, list[float]] = {}
    for tid, (cpu, woke) in after.items():
        cpu0, woke0 = before.get(tid, (0, 0))
        row = rows.setdefault(named.get(tid, str(tid)), [0.0, 0.0])
        row[0] += (cpu - cpu0) / 1e6 / wall
        row[1] += (woke - woke0) / wall
    return sorted(((n, c, w) for n, (c, w) in rows.items()), key=lambda r: -r[1])
