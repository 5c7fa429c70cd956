"""kernels.row_codes (a WSBR build's per-row pass) against numpy oracles, on every ISA level:
the int8 row copy and its bounds, the sign codes, the int4 row copy, and the row sketches,
which must equal a query's sketch bit for bit (wsbr_select sketches queries with the same
float steps)."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels, wsbr_build
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.wsbr import quant_level, quantize


def _int8_oracle(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, scale) by the definition: float64, max |component| to 127 (times 127 / max),
    half to even."""
    wide = rows.astype(np.float64)
    amax = np.abs(wide).max(axis=1)
    scale = np.where(amax > 0, amax / 127, 0.0)
    codes = np.rint(wide * (1.0 / np.where(scale > 0, scale, 1.0))[:, None]).astype(np.int8)
    return codes, scale.astype(np.float32)


def _nibble_oracle(rows: np.ndarray) -> np.ndarray:
    """The level-7 codes by the definition: float64, times 7 / max |component|, half to even."""
    wide = rows.astype(np.float64)
    amax = np.abs(wide).max(axis=1, keepdims=True)
    return np.rint(wide * np.where(amax > 0, 7.0 / np.where(amax > 0, amax, 1.0), 0.0)).astype(np.int8)


def unpack_nibbles(packed: np.ndarray, dim: int) -> np.ndarray:
    """The values of rows packed as cpp/include/pomaidb/int4.h says: byte j of each 32-byte
    chunk c holds 8 plus column 64c + j low and 8 plus column 64c + 32 + j high."""
    chunks = packed.reshape(len(packed), -1, 32)
    low, high = (chunks & 15).astype(np.int8) - 8, (chunks >> 4).astype(np.int8) - 8
    return np.concatenate([low, high], axis=2).reshape(len(packed), -1)[:, :dim]


def _sketch_oracle(rows: np.ndarray, mu: np.ndarray, projection: np.ndarray, level: int) -> np.ndarray:
    """Bit j iff projection[j] . Q(row - mu) > 0, in int64 (wsbr.py's docstring)."""
    q = quantize(rows - mu, level).astype(np.int64)
    bits = q @ projection.astype(np.int64).T > 0
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _inputs(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    level = quant_level(dim)
    rows = rng.standard_normal((n, dim)).astype(np.float32) * rng.uniform(0.01, 100, (n, 1)).astype(np.float32)
    rows[0] = 0.0  # a zero row: scale 0, codes 0
    if n > 2:
        rows[1] = rows[2]  # equal rows get equal codes
    mu = rng.standard_normal(dim).astype(np.float32)
    projection = rng.integers(-level, level + 1, size=(64, dim), dtype=np.int8)
    return rows, mu, projection, level


@pytest.mark.parametrize("dim", [1, 7, 63, 64, 65, 130, 384])
def test_row_codes_match_the_oracles(isa, dim):
    rng = np.random.default_rng(dim)
    rows, mu, projection, level = _inputs(rng, 50, dim)
    row_blocks = np.sort(rng.integers(0, 20, len(rows))) + 7  # consecutive ids, some repeated
    row_blocks = np.unique(row_blocks, return_inverse=True)[1].astype(np.int64) + 7
    codes, scale, residual, norm, signs, nibbles, sketches, sums = kernels.row_codes(
        rows, mu, projection, level, row_blocks)
    want_codes, want_scale = _int8_oracle(rows)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(scale, want_scale)
    wide = rows.astype(np.float64)
    true_residual = np.linalg.norm(wide - codes.astype(np.float64) * scale.astype(np.float64)[:, None], axis=1)
    assert (residual >= true_residual).all()
    assert (norm >= np.linalg.norm(wide, axis=1)).all()
    np.testing.assert_allclose(residual, true_residual, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(norm, np.linalg.norm(wide, axis=1), rtol=1e-6, atol=1e-30)
    np.testing.assert_array_equal(signs, wsbr_build.sign_codes(rows, mu))
    assert nibbles.shape == (len(rows), -(-dim // 64) * 32) and nibbles.dtype == np.uint8
    np.testing.assert_array_equal(unpack_nibbles(nibbles, dim), _nibble_oracle(rows))
    assert (unpack_nibbles(nibbles, -(-dim // 64) * 64)[:, dim:] == 0).all()  # padding: 0
    np.testing.assert_array_equal(sketches, _sketch_oracle(rows, mu, projection, level))
    want_sums = np.zeros((row_blocks[-1] - 6, dim), np.float32)
    for row, block in zip(rows, row_blocks):  # float32, in row order
        want_sums[block - 7] += row
    np.testing.assert_array_equal(sums, want_sums)


def test_a_row_is_sketched_as_a_query_selecting_blocks_is(isa):
    """A row's sketch equals the sketch wsbr_select computes for the same row as a query: with
    one block per signature and no re-rank, the nearest block is the one whose signature is
    the row's own sketch."""
    rng = np.random.default_rng(7)
    rows, mu, projection, level = _inputs(rng, 40, 96)
    sketches = kernels.row_codes(rows, mu, projection, level, np.zeros(len(rows), np.int64))[6]
    others = sketches ^ np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # 64 bits from every sketch
    for i, row in enumerate(rows):
        signatures = np.array([others[i], sketches[i]], dtype=np.uint64)
        chosen = kernels.wsbr_select(row[None], row[None], mu=mu, projection=projection,
                                     signatures=signatures, centroids=np.zeros((2, 96), np.int8),
                                     alpha=np.ones(2, np.float32), beta=np.zeros(2, np.float32),
                                     level=level, l2=False, top=1, widen=0)
        assert chosen.tolist() == [[1]]


def test_the_build_pass_reads_rows_in_the_given_order_through_a_unit_row_view():
    """Chunk by chunk, as one call over the unit rows in `order` would; block sums whole
    across chunk boundaries."""
    rng = np.random.default_rng(3)
    vectors, mu, projection, level = _inputs(rng, 20_000, 48)
    order = rng.permutation(len(vectors))
    offsets = np.unique(np.r_[0, rng.integers(1, len(vectors), 900), len(vectors)])
    view = wsbr_build.UnitRowView(vectors)
    *got, sums = wsbr_build.row_codes(view, order, offsets, mu, projection, level)
    unit = np.ascontiguousarray(wsbr_build.unit_rows(vectors)[order])
    row_blocks = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    *want, _ = kernels.row_codes(unit, mu, projection, level, row_blocks)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    want_sums = np.add.reduceat(unit.astype(np.float64), offsets[:-1])
    np.testing.assert_allclose(sums, want_sums, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case, message", [
    (dict(rows=np.zeros((3, 5), np.float64)), "dtype float32"),
    (dict(mu=np.zeros(4, np.float32)), "dim = len\\(mu\\)"),
    (dict(projection=np.zeros((63, 5), np.int8)), "one per sketch bit"),
    (dict(level=0), "level must be"),
    (dict(level=128), "level must be"),
    (dict(row_blocks=np.zeros(2, np.int64)), "one per row"),
    (dict(row_blocks=np.array([0, 2, 1], np.int64)), "non-decreasing"),
    (dict(row_blocks=np.array([0, 1, 5], np.int64)), "at most one block per row"),
])
def test_bad_inputs_raise(case, message):
    args = dict(rows=np.zeros((3, 5), np.float32), mu=np.zeros(5, np.float32),
                projection=np.zeros((64, 5), np.int8), level=quant_level(5),
                row_blocks=np.zeros(3, np.int64))
    args.update(case)
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.row_codes(**args)


def test_a_block_span_that_overflows_int64_is_refused():
    """row_blocks far apart: their difference overflows a signed subtraction; refused before
    any block sum is written."""
    args = dict(rows=np.zeros((2, 5), np.float32), mu=np.zeros(5, np.float32),
                projection=np.zeros((64, 5), np.int8), level=quant_level(5))
    for blocks in ([-2**63, 2**63 - 1], [0, 2**63 - 1], [-2**63, 0]):
        with pytest.raises(InvalidArgumentError, match="at most one block per row"):
            kernels.row_codes(**args, row_blocks=np.array(blocks, np.int64))


@pytest.mark.parametrize("magnitude", [1e-38, 1e-42])
def test_rows_too_small_to_scale_sketch_like_the_zero_row(isa, magnitude):
    """level / max |row| overflows float32: the row quantises to zeros (wsbr.quantize and the
    kernels alike), never through an undefined float-to-int conversion (UBSan runs this)."""
    rng = np.random.default_rng(8)
    rows = (rng.standard_normal((4, 96)) * magnitude).astype(np.float32)
    mu = np.zeros(96, np.float32)
    level = quant_level(96)
    projection = rng.integers(-level, level + 1, size=(64, 96), dtype=np.int8)
    assert not quantize(rows, level).any()
    sketches = kernels.row_codes(rows, mu, projection, level, np.zeros(4, np.int64))[6]
    assert not sketches.any()
    np.testing.assert_array_equal(sketches, _sketch_oracle(rows, mu, projection, level))
    chosen = kernels.wsbr_select(rows, rows, mu=mu, projection=projection,
                                 signatures=np.array([1, 0], np.uint64),
                                 centroids=np.zeros((2, 96), np.int8), alpha=np.ones(2, np.float32),
                                 beta=np.zeros(2, np.float32), level=level, l2=True, top=1, widen=1)
    assert chosen.tolist() == [[1]] * 4  # sketch 0 is nearest signature 0 at block 1
