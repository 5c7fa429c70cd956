"""mypy passes on the public API and the engine modules behind it (STYLE.md: mypy on the public API)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ["__init__", "db", "membrane", "options", "errors", "results", "shard", "shard_runtime", "layers",
           "mailbox", "wal", "memtable", "records", "segment", "manifest", "marker", "fs"]


def test_public_api_type_checks(tmp_path):
    pytest.importorskip("mypy")
    files = [os.path.join(REPO, "pomaidb_core", f"{name}.py") for name in CHECKED]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), *files],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
