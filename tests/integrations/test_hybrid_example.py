"""examples/hybrid_rag.py runs offline end to end (CI runs every example through pytest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hybrid_rag.py"


def test_the_hybrid_example_shows_vector_search_missing_the_identifier_and_hybrid_finding_it():
    run = subprocess.run([sys.executable, str(EXAMPLE)], check=False, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "vector search finds the PDB-4471 line: False" in run.stdout
    assert "hybrid search finds the PDB-4471 line: True" in run.stdout
