"""WSBR: determinism, recall against numpy brute force, exactness, widening, fail-closed sidecars."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from pomaidb_core import bench_data, fs, kernels, wsbr
from pomaidb_core.errors import CorruptionError, InvalidArgumentError
from pomaidb_core.options import IndexParams

METRICS = ("cosine", "ip", "l2")


def clustered(n: int, d: int, clusters: int, seed: int, spread: float = 0.35) -> np.ndarray:
    """Gaussian blobs around random unit centres (what embeddings look like, roughly)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(clusters, size=n)] + spread / np.sqrt(d) * rng.standard_normal((n, d))
    return rows.astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str,
                mask: np.ndarray | None = None) -> np.ndarray:
    """The numpy oracle: rows of the k best allowed scores (float64), best first."""
    x, q = vectors.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    s = q @ x.T
    if metric == "l2":
        s = 2 * s - (x * x).sum(1)[None, :] - (q * q).sum(1)[:, None]
    if mask is not None:
        s[:, ~mask] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


_built: dict = {}


def build(vectors: np.ndarray, metric: str, **params) -> tuple[np.ndarray, wsbr.WsbrIndex]:
    """(rows in block order, index), as the segment writer stores them.

    Builds are deterministic, so identical inputs share one (tests never mutate them).
    """
    key = (vectors.tobytes(), vectors.shape, metric, tuple(sorted(params.items())))
    if key not in _built:
        order, index = wsbr.build_index(vectors, metric, IndexParams(**params))
        _built[key] = (np.ascontiguousarray(vectors[order]), index)
    return _built[key]


@pytest.fixture(scope="module")
def data():
    base = clustered(6000, 24, 60, seed=1)
    queries = clustered(64, 24, 60, seed=2)
    return base, queries


def test_same_rows_and_seed_give_byte_identical_sidecar_and_order(data):
    base, _ = data
    order_a, index_a = wsbr.build_index(base, "cosine", IndexParams())
    order_b, index_b = wsbr.build_index(base.copy(), "cosine", IndexParams())
    assert np.array_equal(order_a, order_b)
    assert index_a.to_bytes(7) == index_b.to_bytes(7)


def test_order_is_a_permutation_and_blocks_are_contiguous_row_ranges(data):
    base, _ = data
    order, index = wsbr.build_index(base, "l2", IndexParams(wsbr_block_size=32))
    assert np.array_equal(np.sort(order), np.arange(len(base)))
    offsets = index.block_offsets
    assert offsets[0] == 0 and offsets[-1] == len(base) and index.n_blocks == len(offsets) - 1
    assert np.all(np.diff(offsets) >= 1) and np.all(np.diff(offsets) <= 32)


def test_query_gets_same_blocks_and_answer_alone_and_inside_any_batch(data):
    base, queries = data
    vectors, index = build(base, "cosine", wsbr_block_size=16)
    blocks = wsbr.route(index, queries, 10, top_blocks=20)
    batch = wsbr.search_segment(vectors, index, queries, 10, "cosine", top_blocks=20)
    for i in (0, 5, 63):
        assert np.array_equal(wsbr.route(index, queries[i], 10, top_blocks=20)[0], blocks[i])
        alone = wsbr.search_segment(vectors, index, queries[i], 10, "cosine", top_blocks=20)
        small = wsbr.search_segment(vectors, index, queries[i : i + 3], 10, "cosine", top_blocks=20)
        for scores, rows in (alone, (small[0][:1], small[1][:1])):
            assert np.array_equal(rows[0], batch[1][i])
            assert np.array_equal(scores[0], batch[0][i])


@pytest.mark.parametrize("metric", METRICS)
def test_default_search_recall_on_clustered_data(data, metric):
    base, queries = data
    vectors, index = build(base, metric)
    _, rows = wsbr.search_segment(vectors, index, queries, 10, metric)
    assert recall(rows, brute_force(vectors, queries, 10, metric)) >= 0.9


def test_shortlist_mode_beats_literal_mode_at_equal_scan(data):
    base, queries = data
    vectors, index = build(base, "cosine", wsbr_block_size=16)
    truth = brute_force(vectors, queries, 10, "cosine")
    found = {mode: wsbr.search_segment(vectors, index, queries, 10, "cosine", top_blocks=15,
                                       widen_blocks=45, mode=mode)[1] for mode in wsbr.MODES}
    assert recall(found["shortlist"], truth) > recall(found["literal"], truth)


@pytest.mark.parametrize("metric", METRICS)
def test_every_block_selected_equals_exact_search(data, metric):
    base, queries = data
    vectors, index = build(base, metric, wsbr_block_size=64)
    mask = np.random.default_rng(3).random(len(base)) < 0.5
    for m in (None, mask):
        routed = wsbr.search_segment(vectors, index, queries, 10, metric, mask=m,
                                     top_blocks=index.n_blocks)
        exact = kernels.topk(vectors, queries, 10, metric, mask=m)
        assert np.array_equal(routed[1], exact[1]) and np.array_equal(routed[0], exact[0])


@pytest.mark.parametrize("n_queries", [1, 40])
@pytest.mark.parametrize("metric", METRICS)
def test_selected_blocks_are_scored_exactly(data, n_queries, metric):
    """A routed search equals kernels.topk over the rows of each query's selected blocks."""
    base, queries = data
    vectors, index = build(base, metric, wsbr_block_size=32)
    mask = np.random.default_rng(4).random(len(base)) < 0.7
    queries = queries[:n_queries]
    scores, rows = wsbr.search_segment(vectors, index, queries, 10, metric, mask=mask,
                                       top_blocks=6)
    for i, blocks in enumerate(wsbr.route(index, queries, 10, mask=mask, top_blocks=6)):
        assert len(blocks) < index.n_blocks
        ranges = index.block_ranges[blocks]
        s, r = kernels.topk(vectors, queries[i], 10, metric, mask=mask, row_ranges=ranges)
        assert np.array_equal(rows[i], r[0]) and np.array_equal(scores[i], s[0])


@pytest.mark.parametrize("n_queries", [1, 16])
def test_selective_filter_widens_until_k_rows_are_covered(data, n_queries):
    base, queries = data
    vectors, index = build(base, "cosine", wsbr_block_size=16)
    mask = np.zeros(len(base), dtype=bool)
    mask[np.random.default_rng(5).choice(len(base), size=60, replace=False)] = True
    scanned = wsbr.route(index, queries[:n_queries], 10, mask=mask, top_blocks=1)
    for blocks in scanned:
        assert mask[np.concatenate([np.arange(*index.block_ranges[b]) for b in blocks])].sum() >= 10
        assert len(blocks) < index.n_blocks  # widened, not a full scan
    _, rows = wsbr.search_segment(vectors, index, queries[:n_queries], 10, "cosine",
                                       mask=mask, top_blocks=1)
    assert np.all(rows >= 0) and np.all(mask[rows])


@pytest.mark.parametrize("n_queries", [1, 16])
def test_filter_matching_fewer_than_k_rows_returns_all_of_them(data, n_queries):
    base, queries = data
    vectors, index = build(base, "cosine", wsbr_block_size=16)
    mask = np.zeros(len(base), dtype=bool)
    mask[np.random.default_rng(6).choice(len(base), size=12, replace=False)] = True
    scores, rows = wsbr.search_segment(vectors, index, queries[:n_queries], 20, "cosine",
                                       mask=mask, top_blocks=2)
    exact = kernels.topk(vectors, queries[:n_queries], 20, "cosine", mask=mask)
    assert np.array_equal(rows, exact[1]) and np.array_equal(scores, exact[0])
    assert np.all((rows >= 0).sum(axis=1) == 12)


def test_ten_percent_filter_keeps_recall(data):
    base, queries = data
    vectors, index = build(base, "cosine")
    mask = np.arange(len(base)) % 10 == 3
    _, rows = wsbr.search_segment(vectors, index, queries, 10, "cosine", mask=mask)
    assert np.all(mask[rows])
    assert recall(rows, brute_force(vectors, queries, 10, "cosine", mask)) >= 0.9


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("n", "d"), [(1, 1), (5, 3), (40, 17), (300, 97), (200, 1)])
def test_awkward_shapes_build_and_search(metric, n, d):
    rng = np.random.default_rng(n * 1000 + d)
    base = rng.standard_normal((n, d)).astype(np.float32)
    vectors, index = build(base, metric, wsbr_block_size=8)
    queries = rng.standard_normal((3, d)).astype(np.float32)
    k = min(5, n)
    routed = wsbr.search_segment(vectors, index, queries, k, metric, top_blocks=index.n_blocks)
    assert np.array_equal(routed[1], kernels.topk(vectors, queries, k, metric)[1])
    _, rows = wsbr.search_segment(vectors, index, queries, k, metric, top_blocks=1)
    assert np.all(rows >= 0)  # widened until k rows were covered


@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_and_zero_vectors(metric):
    rng = np.random.default_rng(6)
    base = np.repeat(rng.standard_normal((4, 8)).astype(np.float32), 50, axis=0)
    base[::7] = 0.0
    vectors, index = build(base, metric, wsbr_block_size=16)
    assert index.n_blocks >= 200 // 16
    queries = np.vstack([base[:2], np.zeros((1, 8), np.float32)])
    scores, rows = wsbr.search_segment(vectors, index, queries, 10, metric, top_blocks=3)
    assert np.all(rows >= 0)
    exact = kernels.topk(vectors, queries, 10, metric)
    assert np.allclose(scores, exact[0], atol=1e-5)  # ties among duplicates may pick other rows


def test_empty_segment():
    vectors, index = build(np.zeros((0, 4), np.float32), "cosine")
    assert index.n_blocks == 0
    data = index.to_bytes(1)
    again = wsbr.WsbrIndex.from_bytes(data, n_rows=0, dim=4, segment_checksum=1)
    scores, rows = wsbr.search_segment(vectors, again, np.ones((2, 4), np.float32), 3, "cosine")
    assert np.all(rows == -1) and np.all(np.isneginf(scores))


def test_sidecar_round_trips_through_the_file_system(tmp_path, data):
    base, queries = data
    vectors, index = build(base, "l2")
    path = str(tmp_path / "1-1.wsbr")
    index.write(path, segment_checksum=0xDEADBEEF)
    assert not fs.exists(path + ".tmp")
    again = wsbr.WsbrIndex.read(path, n_rows=len(base), dim=base.shape[1],
                                segment_checksum=0xDEADBEEF)
    assert again.to_bytes(0xDEADBEEF) == index.to_bytes(0xDEADBEEF)
    for mode in wsbr.MODES:
        a = wsbr.search_segment(vectors, index, queries, 10, "l2", mode=mode)
        b = wsbr.search_segment(vectors, again, queries, 10, "l2", mode=mode)
        assert np.array_equal(a[1], b[1])
    assert again.default_top_blocks() == index.default_top_blocks()
    assert again.default_widen_blocks() == index.default_widen_blocks()


def test_missing_sidecar_is_corruption(tmp_path):
    with pytest.raises(CorruptionError):
        wsbr.WsbrIndex.read(str(tmp_path / "nope.wsbr"), n_rows=1, dim=1, segment_checksum=0)


@pytest.fixture(scope="module")
def sidecar(data):
    base, _ = data
    _, index = wsbr.build_index(base[:500], "cosine", IndexParams(wsbr_block_size=16))
    return index.to_bytes(42)


def _read(data: bytes, n_rows: int = 500, dim: int = 24, checksum: int = 42) -> wsbr.WsbrIndex:
    return wsbr.WsbrIndex.from_bytes(data, n_rows=n_rows, dim=dim, segment_checksum=checksum)


def test_intact_sidecar_parses(sidecar):
    assert _read(sidecar).n_blocks > 1


@pytest.mark.parametrize("where", ["magic", "header", "crc", "payload", "offsets", "centroids",
                                   "row_codes", "row_residual", "footer", "last"])
def test_any_flipped_byte_is_corruption(sidecar, where):
    n_blocks = _read(sidecar).n_blocks
    layout, _ = wsbr._section_layout(24, n_blocks, 500)
    position = {"magic": 0, "header": 20, "crc": 58, "payload": 64 + 5,
                "offsets": 64 + layout["block_offsets"][0] + 8,
                "centroids": 64 + layout["centroids"][0] + 3,
                "row_codes": 64 + layout["row_codes"][0] + 100,
                "row_residual": 64 + layout["row_residual"][0] + 7, "footer": len(sidecar) - 6,
                "last": len(sidecar) - 1}[where]
    damaged = bytearray(sidecar)
    damaged[position] ^= 0x40
    with pytest.raises(CorruptionError):
        _read(bytes(damaged))


@pytest.mark.parametrize("size", [0, 10, 63, 64, 71, 1000, -1])
def test_truncated_sidecar_is_corruption(sidecar, size):
    with pytest.raises(CorruptionError):
        _read(sidecar[:size])


def test_trailing_garbage_is_corruption(sidecar):
    with pytest.raises(CorruptionError):
        _read(sidecar + b"\0" * 8)


@pytest.mark.parametrize("field", ["n_rows", "dim", "checksum"])
def test_sidecar_of_another_segment_is_corruption(sidecar, field):
    wrong = {"n_rows": {"n_rows": 501}, "dim": {"dim": 25}, "checksum": {"checksum": 43}}[field]
    with pytest.raises(CorruptionError):
        _read(sidecar, **wrong)


def test_forged_header_with_huge_block_count_is_rejected_before_allocating(sidecar):
    """A header whose CRC was recomputed but whose lengths lie is still caught by size checks."""
    damaged = bytearray(sidecar)
    damaged[24:28] = (400).to_bytes(4, "little")  # n_blocks
    damaged[60:64] = kernels.crc32c(bytes(damaged[:60])).to_bytes(4, "little")
    with pytest.raises(CorruptionError):
        _read(bytes(damaged))


def test_bad_arguments_are_rejected(data):
    base, queries = data
    vectors, index = build(base[:200], "cosine")
    with pytest.raises(InvalidArgumentError):
        wsbr.search_segment(vectors, index, queries, 10, "l2")
    with pytest.raises(InvalidArgumentError):
        wsbr.search_segment(vectors, index, queries, 0, "cosine")
    with pytest.raises(InvalidArgumentError):
        wsbr.search_segment(vectors, index, queries, 10, "cosine", mode="fast")
    with pytest.raises(InvalidArgumentError):
        wsbr.search_segment(vectors, index, queries[:, :5], 10, "cosine")
    with pytest.raises(InvalidArgumentError):
        wsbr.build_index(base, "hamming", IndexParams())


def test_remembered_budgets_change_no_answer_and_skip_no_check(data):
    """Unmasked budgets are kept on the index per (k, knobs, share): a search answers as on a
    fresh copy of the index, after searches with other arguments, and a bad k is refused even
    where an equal good one (True == 1) was remembered."""
    base, queries = data
    vectors, index = build(base, "cosine")
    asks = [dict(k=10), dict(k=1), dict(k=10, share=0.25), dict(k=25, share=0.5),
            dict(k=10, top_blocks=7), dict(k=10, mode="literal")]
    first = [wsbr.search_segment(vectors, index, queries, metric="cosine", **a) for a in asks]
    for ask, answer in zip(reversed(asks), reversed(first)):
        fresh = index.with_defaults(index.top_blocks, index.widen_blocks)
        assert not fresh.budgets
        for found in (wsbr.search_segment(vectors, index, queries, metric="cosine", **ask),
                      wsbr.search_segment(vectors, fresh, queries, metric="cosine", **ask)):
            assert np.array_equal(found[1], answer[1]) and np.array_equal(found[0], answer[0])
    with pytest.raises(InvalidArgumentError):
        wsbr.search_segment(vectors, index, queries, True, "cosine")


def _without_row_codes(index: wsbr.WsbrIndex) -> wsbr.WsbrIndex:
    """The index as a version 1 sidecar holds it (written before the int8 row copy)."""
    old = copy.copy(index)
    old.rows = None
    return old


def _without_signs(index: wsbr.WsbrIndex) -> wsbr.WsbrIndex:
    """The index as a version 2 sidecar holds it (written before the sign codes and the int4
    row copy)."""
    old = copy.copy(index)
    assert old.rows is not None
    old.rows = old.rows._replace(signs=None, nibbles=None)
    return old


def _without_nibbles(index: wsbr.WsbrIndex) -> wsbr.WsbrIndex:
    """The index as a version 3 sidecar holds it (written before the int4 row copy)."""
    old = copy.copy(index)
    assert old.rows is not None and old.rows.nibbles is not None
    old.rows = old.rows._replace(nibbles=None)
    return old


@pytest.fixture(scope="module")
def signed_data():
    """128-d blobs: enough sign bits for a sign stage to work on."""
    return clustered(6000, 128, 60, seed=1), clustered(64, 128, 60, seed=2)


def build_signed(vectors: np.ndarray, metric: str) -> tuple[np.ndarray, wsbr.WsbrIndex]:
    """build() with the sign codes kept whatever their calibrated share: a 6,000-row segment
    would drop them (test_sign_codes_are_kept_where_the_band_keeps_few_rows), and these tests
    are about the search that uses them."""
    key = ("signed", vectors.tobytes(), metric)
    if key not in _built:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(wsbr, "_SIGN_MAX_SHARE", 1.0)
            order, index = wsbr.build_index(vectors, metric, IndexParams(wsbr_block_size=16))
        assert index.rows is not None and index.rows.signs is not None
        _built[key] = (np.ascontiguousarray(vectors[order]), index)
    return _built[key]


@pytest.mark.parametrize(("older", "version"), [(_without_row_codes, 1), (_without_signs, 2)])
def test_older_sidecars_open_and_search_like_version_2(signed_data, older, version):
    """Versions 1 and 2 read back as written; both scan the routed blocks whole, alike."""
    base, queries = signed_data
    vectors, index = build_signed(base, "cosine")
    assert int.from_bytes(index.to_bytes(42)[4:6], "little") == 4
    data_ = older(index).to_bytes(42)
    assert int.from_bytes(data_[4:6], "little") == version
    again = wsbr.WsbrIndex.from_bytes(data_, n_rows=len(base), dim=128, segment_checksum=42)
    assert again.to_bytes(42) == data_
    assert (again.rows is None) == (version == 1)
    assert again.rows is None or again.rows.signs is None
    v2 = _without_signs(index)
    for query in queries[:8]:
        a = wsbr.search_segment(vectors, again, query, 10, "cosine")
        b = wsbr.search_segment(vectors, v2, query, 10, "cosine")
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _rewritten_head(data: bytes, offset: int, value: bytes) -> bytes:
    """data with header bytes changed and the header checksum made to match again."""
    forged = bytearray(data)
    forged[offset : offset + len(value)] = value
    forged[60:64] = kernels.crc32c(bytes(forged[:60])).to_bytes(4, "little")
    return bytes(forged)


def test_version_3_and_4_sidecars_read_back_as_written(signed_data):
    """Version 4 holds the int4 row copy (flag bit 1) beside the sign codes (bit 0), mapped
    like every section; version 3 still opens, without it."""
    base, _ = signed_data
    _, index = build_signed(base, "cosine")
    for source, version, flags in ((index, 4, 3), (_without_nibbles(index), 3, 0)):
        written = source.to_bytes(42)
        assert (int.from_bytes(written[4:6], "little"), written[10]) == (version, flags)
        again = wsbr.WsbrIndex.from_bytes(written, n_rows=len(base), dim=128, segment_checksum=42)
        assert again.to_bytes(42) == written
        assert again.rows is not None and again.rows.signs is not None
        assert (again.rows.nibbles is None) == (version == 3)
    again = wsbr.WsbrIndex.from_bytes(index.to_bytes(42), n_rows=len(base), dim=128,
                                      segment_checksum=42)
    assert np.array_equal(again.rows.nibbles, index.rows.nibbles)


def test_unknown_section_flags_are_corruption(signed_data):
    """Flags are frozen values: a bit no reader knows, a version 4 file without the int4
    copy, or flags in an older version all fail, however well the header's checksum matches."""
    base, _ = signed_data
    _, index = build_signed(base, "cosine")
    v4, v3 = index.to_bytes(42), _without_nibbles(index).to_bytes(42)
    for forged in (_rewritten_head(v4, 10, b"\x07"), _rewritten_head(v4, 10, b"\x01"),
                   _rewritten_head(v4, 11, b"\x01"), _rewritten_head(v3, 10, b"\x02")):
        with pytest.raises(CorruptionError):
            wsbr.WsbrIndex.from_bytes(forged, n_rows=len(base), dim=128, segment_checksum=42)
    layout, _ = wsbr._section_layout(128, index.n_blocks, len(base), signs=True, nibbles=True)
    damaged = bytearray(v4)
    damaged[64 + layout["row_nibbles"][0] + 77] ^= 0x10
    with pytest.raises(CorruptionError, match="payload checksum"):
        wsbr.WsbrIndex.from_bytes(bytes(damaged), n_rows=len(base), dim=128, segment_checksum=42)


@pytest.mark.parametrize("metric", METRICS)
def test_sign_stage_keeps_recall_and_a_query_answers_alike_in_any_batch(signed_data, metric):
    """Default budgets on a version 3 index go through the sign stage, for one query or a
    batch of 64 alike; recall is that of scanning the routed blocks whole, or better."""
    base, queries = signed_data
    vectors, index = build_signed(base, metric)
    truth = brute_force(vectors, queries, 10, metric)
    batch = wsbr.search_segment(vectors, index, queries, 10, metric)
    for i in (0, 7, 63):
        alone = wsbr.search_segment(vectors, index, queries[i], 10, metric)
        assert np.array_equal(alone[1][0], batch[1][i]) and np.array_equal(alone[0][0], batch[0][i])
    whole = wsbr.search_segment(vectors, _without_signs(index), queries, 10, metric)
    assert recall(batch[1], truth) >= recall(whole[1], truth) - 0.02


@pytest.mark.parametrize("metric", METRICS)
def test_int8_prefilter_gives_the_float_scan_answer_bit_for_bit(data, metric):
    """search() calls (few queries) read the int8 rows first; batches scan floats; both equal."""
    base, queries = data
    vectors, index = build(base, metric, wsbr_block_size=16)
    mask = np.random.default_rng(5).random(len(base)) < 0.3
    for m in (None, mask):
        batch = wsbr.search_segment(vectors, index, queries, 10, metric, mask=m, top_blocks=12)
        floats = wsbr.search_segment(vectors, _without_row_codes(index), queries, 10, metric,
                                     mask=m, top_blocks=12)
        for i in range(len(queries)):
            alone = wsbr.search_segment(vectors, index, queries[i], 10, metric, mask=m,
                                        top_blocks=12)
            assert np.array_equal(alone[0][0], floats[0][i])
            assert np.array_equal(alone[1][0], floats[1][i])
        assert np.array_equal(batch[1], floats[1]) and np.array_equal(batch[0], floats[0])



def test_few_dimensions_or_explicit_knobs_get_no_sign_codes(data, signed_data):
    """24 sign bits cannot separate rows, and knobs set at build are searched as given:
    both scan the routed blocks, 24-d rows in int8 alone (a version 2 sidecar), 128-d ones
    after an int4 pass (version 4 without row_signs)."""
    for base, params, head in ((data[0], {}, (2, 0)),
                               (signed_data[0], {"wsbr_top_blocks": 30}, (4, 2))):
        _, index = build(base, "cosine", **params)
        assert index.rows is not None and index.rows.signs is None
        written = index.to_bytes(1)
        assert (int.from_bytes(written[4:6], "little"), written[10]) == head


def test_sign_codes_are_kept_where_the_band_keeps_few_rows():
    """The calibration keeps the codes of a segment whose queries' band keeps few rows (a
    50k-row 256-d mixture: about 3%) and drops them where it keeps many (20k rows at 128-d:
    over 8%), where reading scattered rows would cost more than scanning the blocks."""
    large, queries = bench_data.synthetic(50_000, 256, 32)
    order, index = wsbr.build_index(large, "cosine", IndexParams())
    assert index.rows is not None and index.rows.signs is not None
    _, truth = kernels.topk(large[order], queries, 10, "cosine")
    share, survival = wsbr._sign_band(index, wsbr.routing_rows(queries, "cosine"), list(truth))
    assert share < wsbr._SIGN_MAX_SHARE and survival >= wsbr._SIGN_MIN_SURVIVAL
    small, _ = bench_data.synthetic(20_000, 128, 1)
    _, index = wsbr.build_index(small, "cosine", IndexParams())
    assert index.rows is not None and index.rows.signs is None


PYPI = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "pypi-100k")


@pytest.mark.skipif(not os.path.isfile(os.path.join(PYPI, "base.f16.npy")),
                    reason="needs ../shared/data/pypi-100k (CI has it)")
def test_sign_codes_follow_the_band_on_real_embeddings():
    """On 100k real sentence embeddings the band keeps few rows (about 6%) and nearly all of
    the top 10: a cosine segment keeps its codes. Sign codes follow angles, so with the rows
    scaled by 0.5-2x an "ip" search ranks by more than the angle and the band loses the top
    rows (forced on pypi-100k: recall 0.916): that segment keeps the plain scan."""
    rows = np.load(os.path.join(PYPI, "base.f16.npy")).astype(np.float32)
    _, index = wsbr.build_index(rows, "cosine", IndexParams())
    assert index.rows is not None and index.rows.signs is not None
    rows = rows[:50_000] * np.random.default_rng(6).uniform(0.5, 2.0, size=(50_000, 1)).astype(np.float32)
    _, index = wsbr.build_index(rows, "ip", IndexParams())
    assert index.rows is not None and index.rows.signs is None


def test_calibration_scores_every_centroid_where_the_hamming_order_loses_true_blocks():
    """5,000 clusters of about 24 rows in 256-d (bench scale's data, scaled down): blocks mix
    clusters, their 64-bit majority signatures represent none of them, and the 7T Hamming
    shortlist drops true blocks that their centroid scores would pick. The calibration sees
    it and keeps a shortlist of every block (widen_blocks = n_blocks, not scaled down with
    a segment's share), which reaches the recall with fewer blocks than the rule's."""
    rng = np.random.default_rng(21)
    centres = rng.standard_normal((5_000, 256)).astype(np.float32)

    def around(count: int) -> np.ndarray:
        points = centres[rng.integers(0, len(centres), count)]
        points += 0.6 * rng.standard_normal(points.shape).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    x, queries = around(120_000), around(200)
    order, index = wsbr.build_index(x, "cosine", IndexParams())
    assert index.widen_blocks == index.n_blocks
    assert index.top_blocks < wsbr.default_top_blocks(len(x), index.block_size)
    assert wsbr._scaled_widen(index, wsbr.budget_scale(10, 0.25)) == index.n_blocks
    _, truth = kernels.topk(x, queries, 10, "cosine")

    def recall(**knobs) -> float:
        _, rows = wsbr.search_segment(x[order], index, queries, 10, "cosine", **knobs)
        return float(np.mean([np.isin(order[r], t).mean() for r, t in zip(rows, truth)]))

    every = recall()
    assert every >= 0.98
    assert every - recall(top_blocks=index.top_blocks, widen_blocks=7 * index.top_blocks) >= 0.02


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_calibration_recall_equals_routing_each_budget(metric):
    """_TrueBlockRecall (one Hamming ranking and one prefix of centroid scores for every
    budget the calibration tries) counts exactly the true blocks route() selects."""
    rng = np.random.default_rng(11)
    n, d = 8_000, 96
    centres = rng.standard_normal((40, d)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 1.5 * rng.standard_normal((n, d)).astype(np.float32)
    if metric == "ip":
        x *= rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
    order, index = wsbr.build_index(x, metric, IndexParams())
    queries = wsbr.routing_rows(x, metric)[rng.choice(n, 60)]
    queries += 0.3 * rng.standard_normal(queries.shape).astype(np.float32)
    _, rows = kernels.topk(x, queries, 10, metric)
    place = np.empty(n, np.int64)
    place[order] = np.arange(n)
    truth = [np.searchsorted(index.block_offsets, place[r], side="right") - 1 for r in rows]
    fast = wsbr._TrueBlockRecall(index, queries, truth)
    seen = set()
    for top in (10, 13, 20, 31, 64, index.top_blocks, index.n_blocks - 1, index.n_blocks):
        for widen in (7 * top, index.n_blocks):  # the default shortlist, and every block
            chosen = wsbr.route(index, queries, 10, top_blocks=top, widen_blocks=widen)
            want = sum(int(np.isin(b, c).sum()) for b, c in zip(truth, chosen)) / sum(map(len, truth))
            assert fast.recall(top, widen) == want
            seen.add(want)
    assert len(seen) >= 4  # budgets from poor to complete recall, not one easy case


def test_calibration_with_no_widening_builds_and_counts_like_routing():
    """wsbr_widen_blocks=0 (literal selection) is a valid knob: a calibrated build succeeds and
    the calibration's count equals route()'s for it too."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3_000, 32)).astype(np.float32)
    order, index = wsbr.build_index(x, "l2", IndexParams(wsbr_widen_blocks=0))
    assert index.widen_blocks == 0
    queries = x[rng.choice(len(x), 40)] + 0.1 * rng.standard_normal((40, 32)).astype(np.float32)
    _, rows = kernels.topk(x, queries, 10, "l2")
    place = np.empty(len(x), np.int64)
    place[order] = np.arange(len(x))
    truth = [np.searchsorted(index.block_offsets, place[r], side="right") - 1 for r in rows]
    fast = wsbr._TrueBlockRecall(index, queries, truth)
    for top in (10, 17, 40, index.n_blocks):
        chosen = wsbr.route(index, queries, 10, top_blocks=top, widen_blocks=0)
        want = sum(int(np.isin(b, c).sum()) for b, c in zip(truth, chosen)) / sum(map(len, truth))
        assert fast.recall(top, 0) == want
