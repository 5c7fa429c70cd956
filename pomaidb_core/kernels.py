"""The typed Python face of PomaiDB's compiled kernels (the private `_kernels` module).

Every hot loop of the engine runs here: similarity scores, fused top-k selection (over all
rows, row ranges, or per-query blocks of rows), Hamming distances and ranks of 64-bit codes,
gathered int8 dot products, top-k columns of a score matrix, and CRC32C.  Inputs are numpy
arrays used in place, never copied: a wrong dtype, a strided view or a misaligned buffer
raises InvalidArgumentError saying how to fix it (usually
`np.ascontiguousarray(x, dtype=np.float32)`).  The GIL is released inside every kernel, so
Python threads (one per shard) scan in parallel.

Scores are always "higher is more similar":
- "ip": the inner product <q, x>;
- "cosine": <q, x> / (|q| |x|), and 0.0 when either norm is 0 (vectors need not be normalised);
- "l2": the negated squared Euclidean distance -|q - x|^2.

Besides vectors, `bm25_top_rows` ranks a layer's rows for a keyword query (bm25.py).

Instruction sets.  Everything is built for baseline x86-64, plus AVX2+FMA and AVX-512 kernels in
their own files; the avx512vnni level is the AVX-512 one with VPDPBUSD int8 dot products (the
centroid scores and the int8 pass: 12% lower search p50 on pypi-100k than avx512's int16
products, toggled in one process).  At import the best level that both the CPU (CPUID) and the
operating system (XGETBV) support becomes active.  POMAIDB_ISA=scalar|avx2|avx512|avx512vnni can
only lower it: naming a level this machine lacks, or an unknown name, emits a RuntimeWarning
and keeps the best supported level, because a database that refuses to import over a setting
meant for another machine helps nobody.  `use_isa()` switches levels at runtime (tests run every
kernel on every level this way); the active level is process-wide.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _kernels
from .errors import InvalidArgumentError

Metric = Literal["ip", "cosine", "l2"]
METRICS: tuple[str, ...] = ("ip", "cosine", "l2")
ISA_ENV_VAR = "POMAIDB_ISA"
HELPERS_ENV_VAR = "POMAIDB_SEARCH_HELPERS"

F32Array = npt.NDArray[np.float32]


def available_isas() -> list[str]:
    """Instruction-set levels this machine can run, lowest first ("scalar" is always there)."""
    return list(_kernels.supported_isas())


def active_isa() -> str:
    """The level every kernel call uses now: "avx512vnni", "avx512", "avx2" or "scalar"."""
    return str(_kernels.active_isa())


def set_isa(name: str) -> None:
    """Make `name` the active level for the whole process.

    Raises InvalidArgumentError when this machine cannot run it (see available_isas()).
    """
    _kernels.set_isa(name)


@contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run the body with level `name` active, then restore the previous level.

    Process-wide, not per thread: meant for tests and benchmarks, not for concurrent callers.
    """
    previous = active_isa()
    set_isa(name)
    try:
        yield
    finally:
        set_isa(previous)


def _as_query_matrix(queries: Any) -> Any:
    """A 1-d query is a batch of one: reshaped as a (1, d) view, not copied."""
    if isinstance(queries, np.ndarray) and queries.ndim == 1:
        return queries.reshape(1, -1)
    return queries


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {METRICS}, got {metric!r}")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidArgumentError(f"k must be an int, got {type(k).__name__}")


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise InvalidArgumentError(f"count must be an int, got {type(count).__name__}")


def scores(vectors: F32Array, queries: F32Array, metric: Metric) -> F32Array:
    """Score every query against every vector.

    vectors: (n, d) float32, C-contiguous.  queries: (q, d) float32, or (d,) for one query.
    Returns a (q, n) float32 array; entry [j, i] scores query j against vector i.
    """
    _check_metric(metric)
    result: F32Array = _kernels.scores(vectors, _as_query_matrix(queries), metric)
    return result


def topk(
    vectors: F32Array,
    queries: F32Array,
    k: int,
    metric: Metric,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    row_ranges: npt.NDArray[np.int64] | None = None,
) -> tuple[F32Array, npt.NDArray[np.int64]]:
    """The k best vectors for each query, scored and selected in one pass.

    vectors: (n, d) float32, C-contiguous.  queries: (q, d) float32, or (d,) for one query.
    k: >= 1; k > n is fine.
    mask: optional (n,) bool or uint8; rows where it is false/0 never qualify.
    row_ranges: optional (m, 2) int64 of [start, end) row ranges, 0 <= start <= end <= n; only
        rows inside some range qualify.  Ranges may be empty, overlap or come in any order; a
        row covered twice still counts once.
    Returns (scores, rows), both (q, k): best first, equal scores ordered by row ascending.
    When fewer than k rows qualify, the tail holds score -inf and row -1.  Rows whose score is
    NaN (NaN in the data) never qualify.  Never materialises the full (q, n) score matrix.
    """
    _check_metric(metric)
    _check_k(k)
    top_scores, top_rows = _kernels.topk(
        vectors, _as_query_matrix(queries), int(k), metric, mask, row_ranges
    )
    return top_scores, top_rows


BlockRanges = _kernels.BlockRanges
"""A segment's block ranges checked once: `BlockRanges(block_ranges, n_rows)` with
block_ranges as topk_blocks takes them, rows below n_rows. topk_blocks and topk_blocks_int8
take one in place of the array (for vectors of n_rows rows), which they would otherwise check
on every call: a pass over every block per query."""


def topk_blocks(
    vectors: F32Array,
    queries: F32Array,
    k: int,
    metric: Metric,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    *,
    block_ranges: npt.NDArray[np.int64] | BlockRanges,
    ptr: npt.NDArray[np.int64],
    blocks: npt.NDArray[np.int64],
) -> tuple[F32Array, npt.NDArray[np.int64]]:
    """topk where each query searches its own blocks of rows (block-routed search).

    block_ranges: (nb, 2) int64 [start, end) row ranges, 0 <= start <= end <= n; they may be
        empty or come in any order but must not overlap. Or a BlockRanges made of them.
    ptr: (q + 1,) int64 and blocks: (m,) int64, CSR style: query j considers only the rows of
        blocks blocks[ptr[j]:ptr[j + 1]] (ids in [0, nb), any order, a repeat counts once).
        ptr starts at 0, never decreases and ends at m; a query with no blocks gets padding.
    vectors, queries, k, metric, mask and the result are as for topk(), and a (row, query)
    scores bit-identically here and there: a query gets the same answer alone, in a batch, or
    from topk over the same rows.  Each block is read once and scored against every query
    that chose it, so a batch costs about one pass over the union of its blocks.
    """
    _check_metric(metric)
    _check_k(k)
    top_scores, top_rows = _kernels.topk_blocks(
        vectors, _as_query_matrix(queries), int(k), metric, mask, block_ranges, ptr, blocks
    )
    return top_scores, top_rows


def topk_blocks_int8(
    vectors: F32Array,
    queries: F32Array,
    k: int,
    metric: Metric,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    *,
    block_ranges: npt.NDArray[np.int64] | BlockRanges,
    ptr: npt.NDArray[np.int64],
    blocks: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int8],
    scale: F32Array,
    residual: F32Array,
    norm: F32Array,
    signs: npt.NDArray[np.uint64] | None = None,
    query_signs: npt.NDArray[np.uint64] | None = None,
    sign_sigmas: float = 3.0,
    keep_min: int = 1,
    nibbles: npt.NDArray[np.uint8] | None = None,
) -> tuple[F32Array, npt.NDArray[np.int64]]:
    """topk_blocks, bit for bit, reading an int8 copy of the rows first (and with `nibbles`, an
    int4 one before it).

    codes (n, d) int8 and scale, residual, norm (n,) float32 describe each row in routing
    space (the unit row for "cosine", the row itself otherwise): routing row i is about
    codes[i] * scale[i], exactly |routing row i - codes[i] * scale[i]| = residual[i] away from
    it, and has norm norm[i] (kernels.row_codes makes them).  Each query scores its blocks'
    rows in int8 first; a row whose score interval (the int8 estimate plus a bound on both
    quantisation errors) lies below the k-th best lower end cannot win and is never read in
    float.  The rest are scored exactly, so the result is that of topk_blocks whatever the
    codes, as long as residual and norm are true (an upper bound on residual is fine).
    Queries are scored one by one (no block sharing across a batch): meant for few queries.

    With signs (n, w) and query_signs (q, w) uint64 sign codes (w = ceil(d / 64), see
    wsbr_build.sign_codes), a sign stage runs first: of the allowed rows of a query's blocks
    only those within max(floor(min(d, d_k + sign_sigmas * sqrt(d_k * (1 - d_k / d)))), the
    keep_min-th smallest distance) of its code go on, d_k the k-th smallest Hamming distance
    (a band of binomial standard deviations), and the result is topk over those rows; if
    they are more than 40% of the rows, over all of them (streaming beats scattered reads).

    With nibbles (n, ceil(d / 64) * 32) uint8, the rows at level 7 packed two to a byte
    (kernels.row_codes makes them), an int4 pass comes next: where more than 2 * keep rows
    remain, keep = max(4 * k, 32), only the keep best by their int4 estimate go on, and the
    result is topk over those. Unlike the int8 pass this one has no bound (a bound at 15
    levels would discard little), so it trades exactness for half the bytes read: wsbr.py
    says what it keeps on real data.
    """
    _check_metric(metric)
    _check_k(k)
    top_scores, top_rows = _kernels.topk_blocks_int8(
        vectors, _as_query_matrix(queries), int(k), metric, mask, block_ranges, ptr, blocks,
        codes, scale, residual, norm, signs, query_signs, float(sign_sigmas), int(keep_min),
        nibbles,
    )
    return top_scores, top_rows


SegmentTables = _kernels.SegmentTables
"""One segment's search tables checked once, for wsbr_search: `SegmentTables(vectors, metric,
block_ranges, mu, projection, signatures, centroids, alpha, beta, level, codes, scale, residual,
norm, signs=None, nibbles=None)`, the arguments meaning what they mean in topk_blocks_int8 and wsbr_select
(l2 is metric == "l2"); block_ranges a BlockRanges, one range per signature, whose checked
ranges it shares. It keeps the arrays alive. A centroid table whose values lie in [-8, 7]
(wsbr.py writes them so) is packed two to a byte once here (`packed_bytes` of anonymous
memory): every selection then reads half the bytes, for the same integers."""


def wsbr_search(
    tables: SegmentTables,
    routing_queries: F32Array,
    queries: F32Array,
    k: int,
    *,
    top: int,
    widen: int,
    query_signs: npt.NDArray[np.uint64] | None = None,
    sign_sigmas: float = 3.0,
    keep_min: int = 1,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    allowed: npt.NDArray[np.int64] | None = None,
) -> tuple[F32Array, npt.NDArray[np.int64]] | None:
    """wsbr_select of the queries against the tables' segment, then topk_blocks_int8 over each
    query's selected blocks with `mask` (and, with query_signs, the tables' sign codes), in one
    call: bit for bit the answer of those two calls. For the few queries of a search, where
    checking the segment's arrays on every call and the selection's round trip through
    Python cost about what the selection itself did.

    With a mask, allowed (n_blocks,) int64 counts each block's allowed rows, and the answer is
    None when some query's selected blocks hold fewer than min(k, allowed.sum()) of them: the
    caller widens that selection (wsbr.py), which this call does not."""
    _check_k(k)
    _check_count(top)
    _check_count(widen)
    found = _kernels.wsbr_search(
        tables, routing_queries, _as_query_matrix(queries), query_signs, int(k), int(top),
        int(widen), float(sign_sigmas), int(keep_min), mask, allowed)
    return None if found is None else (found[0], found[1])


class WsbrCall(NamedTuple):
    """One wsbr_search's arguments, for wsbr_search_many (in the binding's order)."""

    tables: SegmentTables
    routing_queries: F32Array
    queries: F32Array
    query_signs: npt.NDArray[np.uint64] | None
    k: int
    top: int
    widen: int
    sign_sigmas: float = 3.0
    keep_min: int = 1
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None
    allowed: npt.NDArray[np.int64] | None = None


def wsbr_search_many(
    calls: Sequence[WsbrCall], helpers: int = 0
) -> list[tuple[F32Array, npt.NDArray[np.int64]] | None]:
    """wsbr_search for each call, under one release of the GIL, on this thread and on up to
    `helpers` threads of the kernels' task pool (pool_helpers() of them: one fewer than the
    cores), those busy elsewhere not waited for. Each answer is its call's, bit for bit
    wsbr_search's, whichever thread ran it: a read plan's segments searched at once."""
    if isinstance(helpers, bool) or not isinstance(helpers, (int, np.integer)) or helpers < 0:
        raise InvalidArgumentError(f"helpers must be an int >= 0, got {helpers!r}")
    # The calls go as they are (the binding checks every field); only a 1-d query becomes a
    # batch of one.
    found = _kernels.wsbr_search_many(
        [c._replace(queries=_as_query_matrix(c.queries)) if np.ndim(c.queries) == 1 else c
         for c in calls], int(helpers))
    return [None if f is None else (f[0], f[1]) for f in found]


def pool_helpers() -> int:
    """Threads of the kernels' task pool one search may use (wsbr_search_many): one fewer than
    the cores, or as few as POMAIDB_SEARCH_HELPERS says. 0 keeps every search on its calling
    thread: a helper polls for work for 0.3 ms after each task (so that back-to-back searches
    find it awake), which a machine shared with other CPU work may not want to pay."""
    if _HELPERS_LIMIT == 0:
        return 0  # and the pool's threads are never started
    threads = int(_kernels.pool_helpers())
    return threads if _HELPERS_LIMIT is None else min(threads, _HELPERS_LIMIT)


def row_codes(
    rows: F32Array, mu: F32Array, projection: npt.NDArray[np.int8], level: int,
    row_blocks: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[Any], ...]:
    """The per-row data a WSBR build stores, for (m, d) float32 routing-space rows, in one pass.

    Returns (codes (m, d) int8, scale, residual, norm (m,) float32, signs (m, ceil(d / 64))
    uint64, nibbles (m, ceil(d / 64) * 32) uint8, sketches (m,) uint64, block_sums (s, d)
    float32):
      * codes: each row scaled so its largest |component| is 127, rounded half to even, and
        scale = float32(max |row| / 127) (0 for a zero row), all in float64;
      * residual >= |row - codes * scale| and norm >= |row|, summed in float64 and rounded up
        (topk_blocks_int8's error bounds need upper bounds);
      * signs: bit c of word c // 64 set iff float32(row[c] - mu[c]) > 0, padding bits 0;
      * nibbles: each row scaled so its largest |component| is 7, rounded half to even (in
        float64), packed two to a byte (topk_blocks_int8's int4 pass reads them);
      * sketches: bit j set iff projection[j] . Q(row - mu) > 0, Q the quantisation to
        integers in [-level, level] (wsbr.quantize), so a row is sketched as a query is.
      * block_sums: row b the float32 sum, in row order, of the rows whose row_blocks entry is
        row_blocks[0] + b (s = row_blocks[-1] - row_blocks[0] + 1).
    mu: (d,) float32; projection: (64, d) int8; level in [1, 127] with d * level**2 <= 2**24;
    row_blocks: (m,) int64, non-decreasing, spanning at most m blocks.
    """
    result: tuple[npt.NDArray[Any], ...] = tuple(
        _kernels.row_codes(rows, mu, projection, int(level), row_blocks))
    return result


def l2_norms(vectors: F32Array) -> F32Array:
    """The Euclidean norm of each row of a (n, d) float32 array, as (n,) float32."""
    result: F32Array = _kernels.l2_norms(vectors)
    return result


def inverse_norms(rows: Any) -> F32Array:
    """1 / |row| of each row of a (n, d) array (0 for a zero row), as (n,) float32: the length
    summed in double in one fixed order on every ISA level (cpp/include/pomaidb/unit_rows.h)."""
    result: F32Array = _kernels.inverse_norms(_float_rows(rows))
    return result


def unit_rows(rows: Any) -> F32Array:
    """Each row of a (n, d) array times its inverse_norms entry, as (n, d) float32 (a zero row
    stays zero): the same bits as rows * inverse_norms(rows)[:, None] in float32."""
    result: F32Array = _kernels.unit_rows(_float_rows(rows))
    return result


def _float_rows(rows: Any) -> Any:
    if isinstance(rows, np.ndarray) and rows.dtype == np.float32 and rows.flags.c_contiguous:
        return rows
    return np.ascontiguousarray(rows, dtype=np.float32)


def hamming64(
    codes: npt.NDArray[np.uint64], query_codes: npt.NDArray[np.uint64] | int | np.uint64
) -> npt.NDArray[np.uint32]:
    """popcount(code ^ query) of every code against every query code.

    codes: (n,) uint64.  query_codes: (q,) uint64, or one code (int or np.uint64), which is a
    batch of one.  Returns (q, n) uint32.
    """
    if isinstance(query_codes, (int, np.integer)) and not isinstance(query_codes, bool):
        if not 0 <= int(query_codes) < 2**64:
            raise InvalidArgumentError(f"a query code must be in [0, 2**64), got {query_codes}")
        query_codes = np.array([query_codes], dtype=np.uint64)
    result: npt.NDArray[np.uint32] = _kernels.hamming64(codes, query_codes)
    return result


def hamming64_rank(
    codes: npt.NDArray[np.uint64], query_codes: npt.NDArray[np.uint64], count: int
) -> npt.NDArray[np.int64]:
    """The `count` codes nearest each query code, in (popcount(code ^ query), index) order.

    codes: (n,) uint64.  query_codes: (q,) uint64.  Returns (q, min(count, n)) int64 indices
    into codes: the first columns of a stable argsort of hamming64(codes, query_codes), from a
    counting sort over the 65 possible distances (O(n) per query, whatever count is).
    """
    _check_count(count)
    result: npt.NDArray[np.int64] = _kernels.hamming64_rank(codes, query_codes, int(count))
    return result


def dot_int8_rows(
    matrix: npt.NDArray[np.int8], queries: npt.NDArray[np.int8], rows: npt.NDArray[np.int64],
    *, packed: bool = False,
) -> npt.NDArray[np.int32]:
    """Exact integer inner products of each query with its own rows of an int8 matrix.

    matrix: (n, d) int8.  queries: (q, d) int8.  rows: (q, c) int64 row indices into matrix.
    Returns (q, c) int32: entry [j, i] = <matrix[rows[j, i]], queries[j]>, exact (d is at most
    131071, so no sum can overflow), hence the same on every ISA level.  Reads only the rows
    named, unlike a full product followed by a gather.  With `packed`, the matrix (values in
    [-8, 7], else InvalidArgumentError) is scored from its 4-bit packing, as a segment's
    centroid table is: the same integers.
    """
    result: npt.NDArray[np.int32] = _kernels.dot_int8_rows(matrix, queries, rows, bool(packed))
    return result


def argtopk(values: F32Array, count: int) -> npt.NDArray[np.int64]:
    """The columns of the `count` largest values of each row, best first.

    values: (q, c) float32.  Returns (q, min(count, c)) int64.  Equal values are ordered by
    column ascending (-0.0 equals 0.0); NaN ranks below every number, -inf included.  A
    selection, not a sort of the whole row: O(c) per row plus sorting the `count` kept.
    """
    _check_count(count)
    result: npt.NDArray[np.int64] = _kernels.argtopk(values, int(count))
    return result


def merge_ranked(
    parts: Sequence[tuple[F32Array, npt.NDArray[np.int64], npt.NDArray[np.uint64]]], k: int
) -> tuple[F32Array, npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The k best hits per query of several ranked lists (a read plan's segments).

    parts: (scores (q, c) float32, rows (q, c) int64, ids (n,) uint64) each, like topk's
    answers: each query's best first, padded with row -1; a hit's id is ids[row]. Returns
    (scores, ids, parts, rows), each (q, k): per query its hits of every part, by score
    descending, then id ascending, then part (results.merge_hits' order; NaN scores rank below
    every number), padded with part and row -1.
    """
    _check_k(k)
    scores, ids, sources, rows = _kernels.merge_ranked(list(parts), int(k))
    return scores, ids, sources, rows


def wsbr_select(
    routing_queries: F32Array,
    queries: F32Array,
    *,
    mu: F32Array,
    projection: npt.NDArray[np.int8],
    signatures: npt.NDArray[np.uint64],
    centroids: npt.NDArray[np.int8],
    alpha: F32Array,
    beta: F32Array,
    level: int,
    l2: bool,
    top: int,
    widen: int,
) -> npt.NDArray[np.int64]:
    """WSBR's block selection for a batch of queries against one segment (wsbr.py, steps 1-3).

    routing_queries and queries: (q, d) float32, the queries in routing space (unit length for
    cosine) and as given.  mu (d,), projection (64, d) int8, signatures (nb,) uint64, centroids
    (nb, d) int8, alpha and beta (nb,) float32: the segment's routing table; level: its
    quantisation level.  Per query: the sketch of Q(routing query - mu), the top + widen
    blocks nearest in (Hamming distance, block id) order, and, when widen > 0 and top < nb,
    the `top` of them with the best centroid score (alpha * (Q(query) . centroid), times
    max|query| / level plus beta when l2), ties by shortlist position.  Returns (q, min(top, nb))
    int64 block ids, each row the set the numpy composition of those steps selects (one
    rounding per float operation, exact integer dot products) in no particular order (the
    search scans them as a set; sorting them cost a tenth of a selection), in one call per
    batch.
    """
    _check_count(top)
    _check_count(widen)
    result: npt.NDArray[np.int64] = _kernels.wsbr_select(
        routing_queries, queries, mu, projection, signatures, centroids, alpha, beta,
        int(level), bool(l2), int(top), int(widen))
    return result


def bm25_top_rows(
    rows: list[npt.NDArray[np.uint32]],
    tf: list[npt.NDArray[np.uint32]],
    idf: npt.NDArray[np.float64],
    bounds: npt.NDArray[np.float64],
    lengths: npt.NDArray[np.float64],
    allowed: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None,
    *,
    k1: float,
    b: float,
    avg_length: float,
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """A layer's BM25 top k for one query, by MaxScore: rows that cannot make the top k are skipped.

    Per query term t: rows[t] (uint32, strictly ascending, each < len(lengths)) and tf[t]
    (uint32, >= 1) are its postings, idf[t] its IDF and bounds[t] (float64) at least its
    contribution to any of its rows. lengths: (n,) float64 document lengths; allowed: (n,)
    bool or uint8, rows where it is false/0 never qualify (None: every row may).
    A row's score is the sum over its terms, in term order, of
        idf * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg_length)))
    in float64: the same float numpy gives for that expression.
    Returns (rows int64, scores float64), ordered by row: the k best rows that hold a term and
    every row tied with the k-th (the caller breaks ties, by id). A posting naming a row
    >= n raises InvalidArgumentError; unsorted postings give an unspecified (safe) answer.
    """
    _check_k(k)
    found: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] = _kernels.bm25_top_rows(
        list(rows), list(tf), idf, bounds, lengths, allowed, float(k1), float(b), float(avg_length),
        int(k))
    return found


def crc32c(data: Any, value: int = 0) -> int:
    """CRC32C (Castagnoli) of any C-contiguous buffer, continuing from `value`.

    data: bytes, bytearray, memoryview, numpy array, mmap or a slice of one.  `value` is a
    previous result to chain from: crc32c(b, crc32c(a)) == crc32c(a + b).  Uses the SSE4.2 CRC32
    instruction on every level above "scalar", a table there.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"value must be an int, got {type(value).__name__}")
    if not 0 <= int(value) < 2**32:
        raise InvalidArgumentError(f"value must be a CRC32C in [0, 2**32), got {value}")
    return int(_kernels.crc32c(data, int(value)))


def _apply_isa_env() -> None:
    requested = os.environ.get(ISA_ENV_VAR, "").strip().lower()
    if not requested:
        return
    if requested not in available_isas():
        warnings.warn(
            f"{ISA_ENV_VAR}={requested!r} is not one of this machine's instruction sets "
            f"{available_isas()}; using {active_isa()!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    set_isa(requested)


def helpers_limit(value: str) -> int | None:
    """POMAIDB_SEARCH_HELPERS's limit on pool_helpers(): an int >= 0, or None (no limit) for
    an empty value; anything else warns and sets no limit, as a wrong POMAIDB_ISA does."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    warnings.warn(f"{HELPERS_ENV_VAR}={value!r} is not an int >= 0; searches use up to "
                  "one thread a core", RuntimeWarning, stacklevel=2)
    return None


_apply_isa_env()
_HELPERS_LIMIT = helpers_limit(os.environ.get(HELPERS_ENV_VAR, ""))
