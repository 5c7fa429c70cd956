"""examples/quickstart.py runs end to end (CI runs every example) and leaves no files behind."""

from __future__ import annotations

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                       "quickstart.py")


def test_quickstart_runs_finds_the_same_results_after_reopening_and_cleans_up(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))  # where tempfile puts the example's database
    result = subprocess.run([sys.executable, EXAMPLE], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "stored 5000 vectors in " + str(scratch) in result.stdout
    assert "after reopening, the same filtered search:" in result.stdout
    assert list(scratch.iterdir()) == []
