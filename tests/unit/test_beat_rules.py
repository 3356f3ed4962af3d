"""The beat alerts' promtool cases (tests/unit/promtool/beat-rules.test.yml) pass against the
shipped rules; the case fed with series a real beat produced is in
tests/integration/test_beat_redbeat.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent / "promtool" / "beat-rules.test.yml"


def test_beat_alert_cases_pass() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; make deps does it)")
    proc = subprocess.run([promtool, "test", "rules", TESTS.name], cwd=TESTS.parent,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
