"""What every test helper needs: the repository root, a free port, and `wait_for`, which polls
a condition until a deadline (tests never sleep to wait)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    cond: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `cond` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)  # polling interval of a deadline wait, not a fixed sleep
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")
