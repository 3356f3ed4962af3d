"""`celery beat` with RedBeat (tests/app/beat.py) as a subprocess, for the beat tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.common import ROOT


class Beat:
    """`celery beat` with RedBeat (tests/app/beat.py) as a subprocess."""

    def __init__(self, env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="ce-beat-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.app.beat", "beat", "--loglevel",
             "INFO", "--pidfile", ""],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # beat closes RedBeat's scheduler, which releases the lock
            self.proc.wait(20)
