"""examples/quickstart.py runs end to end (CI runs every example)."""

from __future__ import annotations

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                       "quickstart.py")


def test_quickstart_runs_and_finds_the_same_results_after_reopening(tmp_path):
    result = subprocess.run([sys.executable, EXAMPLE], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "stored 5000 vectors" in result.stdout
    assert "after reopening, the same filtered search:" in result.stdout
