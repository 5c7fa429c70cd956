"""examples/llamaindex_rag.py runs offline end to end (CI runs every example through pytest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_rag.py"


def test_llamaindex_rag_example_runs_offline_and_passes_its_checks(tmp_path: Path) -> None:
    # cwd outside the repository, so the installed pomaidb is imported, never the source tree.
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--docs", "200", "--path", str(tmp_path / "db"),
         "--embeddings", "hashing"],  # CI never loads (or downloads) a model
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "embeddings: feature hashing (as asked)" in out.stdout
    assert "probe found first: ok" in out.stdout
    assert "same results after reopen: ok" in out.stdout
    assert (tmp_path / "db").is_dir()
