"""examples/langchain_rag.py runs offline to the end (CI runs it this way)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"


def test_the_langchain_rag_example_runs_offline_and_reopens_to_the_same_answers():
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--docs", "300", "--embeddings", "hashing"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "embeddings: HashingEmbeddings (as asked)" in out
    assert out.count("\nQ: ") == 3
    assert "score-threshold retriever at" in out and "MMR retriever" in out
    assert "same top 3 for" in out and out.rstrip().endswith("True")
