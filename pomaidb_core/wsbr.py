"""WSBR (WAL-Sketched Block Routing): PomaiDB's one ANN routing algorithm, per segment.

Build (freeze and compaction, `build_index`):
  The segment's rows are grouped into blocks of at most `block_size` similar rows (k-means
  plus median splits, wsbr_build.py); the segment writer stores them block by block, so every
  block is one contiguous row range. Routing works in the *routing space*: rows scaled to unit
  length for "cosine", the rows as they are for "ip" and "l2". From a seeded sample it fits
  `mu` (the mean) and a 64 x d ITQ projection; a row's 64-bit sketch has bit j set iff
  `P_j . Q(x - mu) > 0`, and a block's signature is the bitwise majority of its rows' sketches
  (bit set iff set in more than half of them). Each block also gets a centroid record: a
  4-bit direction and two f32 coefficients (see "Centroid scores").

Search (`search_segment`), per query, with T = top_blocks and W = widen_blocks:
  1. the query's sketch, computed exactly as a row's (the same mu and projection);
  2. every block ranked by (hamming(query sketch, block signature), block_id), ascending;
  3. "literal" mode: the first T blocks are selected.
     "shortlist" mode: the first T + W blocks are candidates; they are re-ranked by
     (centroid score descending, hamming, block_id) and the first T are selected. A
     segment whose calibration found the Hamming order losing true blocks stores
     W = n_blocks: every centroid is scored, and the Hamming order only breaks ties;
  4. the selected blocks are scored exactly. With the sidecar's int8 row copy (version 2):
     one kernels.topk_blocks_int8 call, which scores the selected rows in int8 first and
     reads in float only the rows whose score interval can still reach the k best (the answer
     is bit for bit that of scoring every selected row in float, with 4x fewer bytes read).
     Without it (version 1 sidecars, or batches of more than _INT8_MAX_BATCH queries): one
     kernels.topk_blocks call, which reads each selected block once for every query of the
     batch that selected it.
     With the sidecar's sign codes (version 3) and default budgets, a sign stage comes first:
     the query routes to more blocks (_SIGN_BLOCKS_FACTOR), and of their rows only those
     whose sign codes (one bit a dimension: is the coordinate above the centre mu) lie in a
     band near the query's go on to the int8 pass (see the comment above _SIGN_BLOCKS_FACTOR
     for the band, the measured trade, and which segments keep codes). Explicit top_blocks /
     widen_blocks scan their blocks whole, as above.
     With the sidecar's int4 row copy (version 4), an int4 pass ranks those rows (the blocks'
     allowed rows, or the sign stage's) before the int8 pass and keeps only its best few
     (see the comment above _NIBBLES_MIN_DIM): half the bytes, no longer bit for bit.
  Steps 1-3 run in one kernels.wsbr_select call per segment and batch (the float steps are
  those of `quantize` and the centroid scores below, one rounding per operation).
  With a mask (tombstones, shadowed rows, a filter) letting through a fraction s < 1 of the
  rows, T and W are first multiplied by s^(-1/4) (a selective filter's k best rows spread
  over more blocks). Then, for each query whose selected blocks hold fewer than
  min(k, allowed rows) allowed rows, T and W are doubled together and step 3 repeated until
  they do or every block is selected: a filtered search never returns fewer than k rows when
  k rows are allowed. With T >= n_blocks every row is scored: the result equals exact search.

Determinism: the query sketch and the centroid scores use only integer-valued float32
arithmetic. `Q(v)` rounds v * (L / max|v|) to integers in [-L, L] (L = `quant_level(dim)`, at
most 127), the projection is stored as such integers, the centroid directions as the same at
level 7 (`Q7`, see _CENTROID_LEVEL), and dim * L^2 <= 2^24, so every partial sum of a dot
product is an exactly representable integer and the result is the same whatever the BLAS,
the summation order or the batch a query arrives in (the only rounded steps, the cosine
normalisation and Q, work row by row). Ties are broken by block id: a query selects the same
blocks alone or in any batch.

Centroid scores: est_b(q) = alpha_b * (Q(q) . C_b) * g(q) + beta_b, estimating the best score
of q in block b; c_b is the mean of the block's routing rows:
  cosine: C_b = Q7(c_b / |c_b|), alpha_b = max|c_b / |c_b|| / 7, beta_b = 0, g = 1
  ip:     as cosine, alpha_b also times the mean row norm of the block, g = 1
  l2:     C_b = Q7(c_b), alpha_b = 2 max|c_b| / 7, beta_b = -|c_b|^2, g(q) = max|q| / L
          (-|q - c_b|^2 up to the query's own constant).

Sidecar file `<m>-<s>.wsbr` (version 4, or 2 or 3 where the rows get no int4 copy; version 1
still opens), little-endian:
  header, 64 bytes:
     0  4s   magic b"WSBR"
     4  u16  version (1 to 4)
     6  u16  header size (64)
     8  u8   metric: 0 "ip", 1 "cosine", 2 "l2" (frozen values, never reused)
     9  u8   quant level L, must equal quant_level(dim)
    10  u16  zero before version 4; in version 4 the section flags: bit 0 row_signs present,
             bit 1 row_nibbles present (always set), other bits zero (frozen values)
    12  u32  dim
    16  u64  n_rows (must equal the segment's)
    24  u32  n_blocks (1 <= n_blocks <= n_rows, or 0 when n_rows is 0)
    28  u32  block_size the blocks were built with
    32  u32  default top_blocks
    36  u32  default widen_blocks
    40  u64  segment checksum (the segment file's data checksum; binds the pair)
    48  u64  seed the projection and blocks were trained with
    56  u32  payload CRC32C (every byte from offset 64 to the footer)
    60  u32  header CRC32C (bytes 0..59)
  payload, each section starting at a multiple of 8 (zero padding between):
    mu             f32[dim]
    projection     i8[64 * dim]             row j gives bit j
    block_offsets  u64[n_blocks + 1]        0 = offsets[0] < ... < offsets[n_blocks] = n_rows
    signatures     u64[n_blocks]
    alpha          f32[n_blocks]
    beta           f32[n_blocks]
    centroids      i8[n_blocks * dim]         C_b; values in [-7, 7] (sidecars written before
                                            the 4-bit table, in [-L, L]: read and scored as such)
  version 2 and later, the int8 row copy (wsbr_build.row_codes) of the routing rows, row order:
    row_codes      i8[n_rows * dim]         row r ~ row_codes[r] * row_scale[r]
    row_scale      f32[n_rows]
    row_residual   f32[n_rows]              >= |routing row r - row_codes[r] * row_scale[r]|
    row_norm       f32[n_rows]              >= |routing row r|
  version 3, and version 4 with flag bit 0, the sign codes (wsbr_build.sign_codes),
  w = ceil(dim / 64):
    row_signs      u64[n_rows * w]          bit i of word i // 64 of row r: routing row r's
                                            coordinate i minus mu[i] is > 0 (padding bits 0)
  version 4, the int4 row copy (wsbr_build.row_codes' nibbles):
    row_nibbles    u8[n_rows * w * 32]      routing row r scaled so its max |component| is 7,
                                            rounded half to even, in 32-byte chunks of 64
                                            columns: byte j of chunk c holds 8 plus column
                                            64c + j in its low nibble, 8 plus column 64c + 32 + j
                                            in its high one (past dim: 8; pomaidb/int4.h)
  footer, 8 bytes: u32 n_blocks, 4s b"RBSW".
Sidecars are memory-mapped when read, so the row copy is file-backed (the OS pages it) and
not counted by memory_bytes(). Version 1 (no row copy) searches scan the float rows.
A missing, truncated or damaged sidecar, or one that does not match its segment, raises
CorruptionError: search never falls back to a full scan or another index.

Defaults (`default_block_size`, `default_top_blocks`), from a measured study of the prototype
and bench_wsbr.py on real sentence embeddings: see `_AUTO_BLOCK_SIZES` and
`default_top_blocks`.
"""

from __future__ import annotations

import copy
import math
import struct
import weakref
from functools import cached_property
from typing import NamedTuple

import numpy as np

from . import fs, kernels
from .errors import CorruptionError, InvalidArgumentError
from .kernels import (
    crc32c,
    dot_int8_rows,
    hamming64_rank,
    topk,
    topk_blocks,
    topk_blocks_int8,
    wsbr_search_many,
    wsbr_select,
)
from .options import IndexParams
from .wsbr_build import (
    UnitRowView,
    form_blocks,
    itq_projection,
    row_codes,
    segment_sums,
    sign_codes,
    unit_rows,
)

MAGIC = b"WSBR"
FOOTER_MAGIC = b"RBSW"
VERSION = 4  # written where the rows get nibbles (_NIBBLES_MIN_DIM), else 2 or 3; 1 is read
_READ_VERSIONS = (1, 2, 3, 4)
_FLAG_SIGNS, _FLAG_NIBBLES = 1, 2  # version 4's section flags (frozen: stored in sidecars)
SEED = 0x57534252  # "WSBR": the fixed seed of every sidecar's training
SIGNATURE_BITS = 64
MODES = ("shortlist", "literal")
METRIC_CODES = {"ip": 0, "cosine": 1, "l2": 2}  # frozen: stored in sidecars

_HEADER = struct.Struct("<4sHHBBHIQIIIIQQII")
_FOOTER = struct.Struct("<I4s")
_EXACT_SUM_LIMIT = 1 << 24  # float32 holds every integer up to here exactly
_U32_MAX = (1 << 32) - 1

# (largest segment rows, block size): small segments need small blocks to route well (the
# study: ten 10k segments at B=32 lose 5-8 points against B=16); large ones need larger
# blocks to keep k-means training, the centroid table and per-block overheads cheap. Past
# 131k rows B=64: four 250k-row segments of bench scale's 1M x 384 mixture, which score
# every centroid (see _ROW_COST), searched in 3.1-3.7 ms p50 at recall@10 0.980 where B=32
# took 4.4 ms at 0.987 (half the centroids to read); pypi-100k as one segment routes as
# well at B=64 (0.979 vs 0.975, the same p50).
_AUTO_BLOCK_SIZES = ((32_768, 16), (131_072, 32), (None, 64))
# top_blocks = ceil(_AUTO_TOP_SCALE * (16 / block_size)^_AUTO_TOP_EXPONENT * sqrt(n_rows)):
# the blocks needed for a recall@10 of 0.96 grow like sqrt(n_rows) on pypi-100k (T for 0.95:
# 101 at 10k rows, ~155 at 25k, ~210 at 50k, ~264 at 100k with B=32), fewer with larger blocks.
_AUTO_TOP_SCALE = 1.2
_AUTO_TOP_EXPONENT = 0.3
_AUTO_MIN_TOP = 8
_AUTO_WIDEN_FACTOR = 7  # shortlist = top_blocks * (1 + factor)
# Centroid directions are quantised at this level: integers in [-7, 7], which the kernels
# pack two to a byte (kernels.SegmentTables, cpp/include/pomaidb/int4.h). A default search of
# a large segment scores every centroid (see _ROW_COST), so this halves what its selection
# reads. On real queries, a budget's blocks hold the same share of the true top 10 as with
# 8-bit directions (pypi-100k 25k-row segments: 0.941 and 0.944 against 0.941 and 0.947; the
# 1M x 384 mixture's 250k-row ones: 0.989 and 0.984 against 0.989 and 0.982); 2-bit ones
# (level 1) lost 1 to 9 points.
_CENTROID_LEVEL = 7
# Default top_blocks of segments with at least _CALIBRATE_MIN_ROWS rows is measured on the
# segment itself (see _calibrated); smaller ones use the sqrt(n) rule above.
_CALIBRATE_MIN_ROWS = 2_000
_CALIBRATE_QUERIES = 200
_CALIBRATE_K = 10
_CALIBRATE_RECALL = 0.965
# Where the rule's budget misses the target, the 64-bit Hamming shortlist may be what loses
# the true blocks: on a 1M x 384 mixture of 10k small clusters (bench scale's data), blocks
# mix two or three clusters, their majority signatures represent none of them, and a true
# block's Hamming place had p90 4,337 of 13,279 blocks in a 250k-row segment, while its
# centroid score placed it p90 16th. The calibration then also measures a shortlist of every
# block (widen_blocks = n_blocks: all centroids scored, the shortlist's Hamming order only
# breaking ties), and keeps it where it costs less (_route_cost): there the blocks needed
# for 0.965 fell from about 1,000 to 250-320. A row scanned costs about _ROW_COST centroids
# scored (measured on one 250k x 384 segment: 46 ns a row in the sign stage and int8 pass,
# 20 ns a centroid in the re-rank). Through the engine, four such segments (13k blocks each at B=32,
# 20 MB of centroids a query, past the cache) searched in 4.3-4.8 ms p50 at recall@10 0.987
# with every centroid scored, 4.4 ms at 0.946 with the 7T shortlist; pypi-100k's segments
# keep the 7T shortlist.
_ROW_COST = 2
# A segment's default top_blocks is calibrated for the recall of its own top _CALIBRATE_K.
# budget_scale() adapts it to a search: times (k / _CALIBRATE_K) ^ _BUDGET_EXPONENT for
# k > _CALIBRATE_K, and times share ^ _BUDGET_EXPONENT (at least _MIN_BUDGET_SCALE) for a
# segment holding a fraction `share` of the rows searched, which holds only its share of the
# answer, mostly among its very best rows. Measured on pypi-100k, real queries: the blocks
# for recall 0.965 of a segment's top j grow 1.2x / 1.5x / 2x from j = 10 to 20 / 50 / 100
# (25k and 100k rows alike), while fewer than 10 need 0.7x to 1.2x (no saving to rely on);
# four 25k-row shards at 0.7x each still find 0.965 of the global top 10 (1x: 0.977).
_BUDGET_EXPONENT = 0.3
_MIN_BUDGET_SCALE = 0.7
# Batches above this size scan float blocks shared across their queries (topk_blocks): the
# int8 prefilter scores queries one by one, which wins for the few queries of a search() call.
_INT8_MAX_BATCH = 8
_BUDGETS_KEPT = 64  # distinct (k, knobs, share) budgets an index remembers
# The sign stage (version 3 sidecars, default budgets; any batch size, so a query's answer does
# not depend on its batch): a query routes to _SIGN_BLOCKS_FACTOR times the default top_blocks
# out of the same shortlist, and of their allowed rows only those whose sign codes lie within
# _SIGN_SIGMAS binomial standard deviations of its k-th nearest code (at least
# _SIGN_KEEP_PER_K * k rows) are scored in int8 (kernels.topk_blocks_int8). The band adapts to
# the query: measured over the 1.5T routed blocks, it keeps (share of rows kept, share of the
# true top 10 found there that survive) pypi-100k real queries 7.6% / 1.000, a 25k sample
# 14% / 0.999, a 100k x 384 Gaussian mixture 5.5% / 1.000; queries from elsewhere (random
# directions against pypi-100k, 128-d blobs against other blobs) 40% / 0.968 and 85% / 0.991,
# where a fixed 5% share kept only 0.62 and 0.59 of them. Scan time on pypi-100k (one segment,
# 300 real queries): 0.33 ms for T blocks scanned whole (recall 0.957), 0.17 ms for 1.5T
# blocks and a 5% share (0.969). The stage pays only where the band keeps few rows: scattered
# rows cost about 2.5x streamed ones, and the codes of 1.5T blocks are read. Paired through
# the engine in one process, one 100k-row segment (band 6%) went 0.56 -> 0.41 ms (recall 0.964
# -> 0.976), but four 25k-row shards (band 14%) 0.89 -> 1.31 ms. So calibration measures the
# band's share on 64 of its queries (_sign_share; it tracks real queries': 0.152 vs 0.136 at
# 25k, 0.067 vs 0.061 at 100k, 0.021 vs 0.020 on a 100k x 384 mixture) and keeps the codes
# only below _SIGN_MAX_SHARE, and only if the band keeps _SIGN_MIN_SURVIVAL of the true top
# 10 found in the routed blocks (the band follows angles; "ip" and "l2" rank by more).
# Segments of fewer than _SIGN_MIN_DIM dimensions (too few bits to separate rows) or
# _CALIBRATE_MIN_ROWS rows get none (a version 2 sidecar); nor do segments built with explicit
# knobs, which are searched as given. Filters letting through less than _SIGN_MIN_ALLOWED of
# the rows skip the stage: it reads the codes of every row, the int8 pass only the allowed ones.
_SIGN_BLOCKS_FACTOR = 1.5
_SIGN_SIGMAS = 3.0
_SIGN_KEEP_PER_K = 16
_SIGN_MIN_DIM = 64
_SIGN_MIN_ALLOWED = 0.5
_SIGN_MAX_SHARE = 0.08
_SIGN_MIN_SURVIVAL = 0.99
# Calibration queries the share is measured on: as many rows as midpoints (see _calibrated).
_SIGN_CALIBRATE_QUERIES = np.r_[0:32, _CALIBRATE_QUERIES // 2 : _CALIBRATE_QUERIES // 2 + 32]
# The int4 row copy (version 4 sidecars): each routing row at level 7 (the same max |component|
# as its int8 codes), packed two to a byte. Without a sign stage, the int8 pass read every
# allowed row of a query's blocks at d bytes a row; now an int4 pass ranks them first, at half
# the bytes, and only its best max(4k, 32) go on to the int8 pass (kernels.topk_blocks_int8).
# Measured on pypi-100k's 25k-row segments (real queries, the blocks of a default search,
# about 1,700 rows a query): the true top 10 among those rows all lie in the int4 top 32 (in
# the top 16: 0.995-0.999 of them); engine recall@10 0.9645 either way, p50 10% lower (in-
# process toggle, 8 interleaved rounds: median ratio 0.905). Behind a sign stage, whose rows
# are fewer and scattered, 1% lower (1M x 384 mixture). The copy pays only where a packed row
# is at most _NIBBLES_MAX_SHARE of an int8 one (ceil(d / 64) * 32 bytes: d = 65 gains
# nothing) and the rows have _NIBBLES_MIN_DIM dimensions (fewer make coarse estimates).
_NIBBLES_MIN_DIM = 64
_NIBBLES_MAX_SHARE = 0.75


def _nibbles_pay(dim: int) -> bool:
    return dim >= _NIBBLES_MIN_DIM and -(-dim // 64) * 32 <= _NIBBLES_MAX_SHARE * dim


class RowCodes(NamedTuple):
    """The sidecar's int8 copy of the routing rows (wsbr_build.row_codes), their sign codes
    (wsbr_build.sign_codes; None in a version 2 sidecar) and their int4 copy (None before
    version 4), in row order."""

    codes: np.ndarray  # (n_rows, dim) int8
    scale: np.ndarray  # (n_rows,) float32
    residual: np.ndarray
    norm: np.ndarray
    signs: np.ndarray | None = None  # (n_rows, ceil(dim / 64)) uint64
    nibbles: np.ndarray | None = None  # (n_rows, ceil(dim / 64) * 32) uint8 (version 4)


def quant_level(dim: int) -> int:
    """The integer range [-L, L] of quantised vectors: the largest L <= 127 with dim*L^2 <= 2^24."""
    return min(127, math.isqrt(_EXACT_SUM_LIMIT // max(dim, 1)))


def quantize(rows: np.ndarray, level: int) -> np.ndarray:
    """Each row scaled so its largest |component| is `level`, rounded: integer-valued float32.

    A zero row stays zero, and so does a row so small (max |component| below about 4e-37)
    that level / max overflows float32: it routes like the zero vector."""
    amax = np.abs(rows).max(axis=1)
    scale = np.zeros(len(rows), dtype=np.float32)
    with np.errstate(over="ignore"):
        np.divide(np.float32(level), amax, out=scale, where=amax > 0)
    scale[np.isinf(scale)] = 0
    return np.rint(rows * scale[:, None])


def routing_rows(vectors: np.ndarray, metric: str) -> np.ndarray:
    """The rows routing works on: unit length for cosine (zero rows stay zero), else as given."""
    return unit_rows(vectors) if metric == "cosine" else vectors


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(m, 64) bool -> (m,) uint64 with bit j = bits[:, j]."""
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel().astype(np.uint64)


def budget_scale(k: int, share: float) -> float:
    """The factor a segment's default top_blocks and widen_blocks are scaled by when a search
    wants its k best rows and the segment holds `share` of the rows searched (see
    _BUDGET_EXPONENT)."""
    more = (max(k, _CALIBRATE_K) / _CALIBRATE_K) ** _BUDGET_EXPONENT
    return more * max(_MIN_BUDGET_SCALE, min(1.0, share) ** _BUDGET_EXPONENT)


def default_block_size(n_rows: int) -> int:
    for limit, size in _AUTO_BLOCK_SIZES:
        if limit is None or n_rows <= limit:
            return size
    raise AssertionError("the last row of _AUTO_BLOCK_SIZES has no limit")


def default_top_blocks(n_rows: int, block_size: int) -> int:
    scale = _AUTO_TOP_SCALE * (16 / block_size) ** _AUTO_TOP_EXPONENT
    return max(_AUTO_MIN_TOP, math.ceil(scale * math.sqrt(n_rows)))


class WsbrIndex:
    """A segment's routing data: blocks, sketch projection, signatures and centroid table.

    Immutable once built or read; safe to share between threads (the float copies made on
    first use are pure functions of the stored arrays).
    """

    def __init__(self, *, metric: str, dim: int, n_rows: int, block_size: int, top_blocks: int,
                 widen_blocks: int, seed: int, mu: np.ndarray, projection: np.ndarray,
                 block_offsets: np.ndarray, signatures: np.ndarray, alpha: np.ndarray,
                 beta: np.ndarray, centroids: np.ndarray, rows: RowCodes | None) -> None:
        self.metric = metric
        self.dim = dim
        self.n_rows = n_rows
        self.n_blocks = len(block_offsets) - 1
        self.block_size = block_size
        self.top_blocks = top_blocks
        self.widen_blocks = widen_blocks
        self.seed = seed
        self.level = quant_level(dim)
        self.mu = mu
        self.projection = projection
        self.block_offsets = block_offsets
        self.signatures = signatures
        self.alpha = alpha
        self.beta = beta
        self.centroids = centroids
        self.rows = rows  # None for a version 1 sidecar
        # (mask, allowed rows per block) of the last mask searched with: callers pass the same
        # cached mask array query after query and never change one in place, so its per-block
        # counts (a pass over every row) are computed once, not per query.
        self.allowed_cache: tuple[weakref.ref, np.ndarray] | None = None
        # (vectors, rows, their kernels.SegmentTables): see search_tables
        self._tables: tuple[np.ndarray, RowCodes, kernels.SegmentTables] | None = None
        # search arguments -> _budget's answer for unmasked searches
        self.budgets: dict[tuple, tuple[int, int, np.ndarray]] = {}

    def memory_bytes(self) -> int:
        arrays = [self.mu, self.projection, self.block_offsets, self.signatures, self.alpha,
                  self.beta, self.centroids]
        arrays += [self.__dict__[name] for name in ("block_sizes", "block_ranges")
                   if name in self.__dict__]  # made by the first search, in anonymous memory
        # the kernels' checked copy of the block ranges (two size_t a block), and their packed
        # centroid table
        table = 16 * self.n_blocks if "block_table" in self.__dict__ else 0
        if self._tables is not None:
            table += self._tables[2].packed_bytes
        return sum(np.asarray(a).nbytes for a in arrays) + table

    def default_top_blocks(self) -> int:
        return self.top_blocks

    def with_defaults(self, top_blocks: int, widen_blocks: int) -> WsbrIndex:
        """The same index with other default knobs (they are stored in the sidecar)."""
        clone = copy.copy(self)
        clone.top_blocks, clone.widen_blocks = top_blocks, widen_blocks
        clone.budgets = {}
        return clone

    def default_widen_blocks(self) -> int:
        return self.widen_blocks

    @cached_property
    def block_sizes(self) -> np.ndarray:
        return np.diff(self.block_offsets)

    @cached_property
    def block_ranges(self) -> np.ndarray:
        """(n_blocks, 2) int64 [start, end) row range of every block."""
        return np.ascontiguousarray(np.stack((self.block_offsets[:-1], self.block_offsets[1:]), 1))

    def search_tables(self, vectors: np.ndarray) -> kernels.SegmentTables:
        """The kernels' checked tables of this index over its segment's float `vectors`, made
        once: a segment passes the same mapped array to every search. Needs the int8 row copy."""
        cached = self._tables
        rows = self.rows
        assert rows is not None
        if cached is None or cached[0] is not vectors or cached[1] is not rows:
            tables = kernels.SegmentTables(
                vectors, self.metric, self.block_table, self.mu, self.projection,
                self.signatures, self.centroids, self.alpha, self.beta, self.level, rows.codes,
                rows.scale, rows.residual, rows.norm, rows.signs, rows.nibbles)
            cached = self._tables = (vectors, rows, tables)
        return cached[2]

    @cached_property
    def block_table(self) -> kernels.BlockRanges:
        """block_ranges as the kernels take them checked once (a search passes these)."""
        return kernels.BlockRanges(self.block_ranges, self.n_rows)

    # ------------------------------------------------------------------ serialisation

    def to_bytes(self, segment_checksum: int) -> bytes:
        """The sidecar file: the version its sections need (that of the file it was read
        from, for an index read from one)."""
        sections = [self.mu.astype("<f4"), self.projection.astype(np.int8),
                    self.block_offsets.astype("<u8"), self.signatures.astype("<u8"),
                    self.alpha.astype("<f4"), self.beta.astype("<f4"),
                    self.centroids.astype(np.int8)]
        version, flags = 1, 0
        rows = self.rows
        if rows is not None:
            version = 2
            sections += [rows.codes.astype(np.int8), rows.scale.astype("<f4"),
                         rows.residual.astype("<f4"), rows.norm.astype("<f4")]
            if rows.signs is not None:
                version, flags = 3, _FLAG_SIGNS
                sections.append(rows.signs.astype("<u8"))
            if rows.nibbles is not None:
                version, flags = 4, flags | _FLAG_NIBBLES
                sections.append(rows.nibbles.astype(np.uint8))
        payload = bytearray()
        for section in sections:
            payload += section.tobytes()
            payload += bytes(-len(payload) % 8)
        flags = flags if version == 4 else 0  # a header field only since version 4
        head = _HEADER.pack(MAGIC, version, _HEADER.size, METRIC_CODES[self.metric], self.level,
                            flags, self.dim, self.n_rows, self.n_blocks, self.block_size,
                            self.top_blocks, self.widen_blocks, segment_checksum, self.seed,
                            crc32c(payload), 0)[:60]
        return head + struct.pack("<I", crc32c(head)) + bytes(payload) + _FOOTER.pack(
            self.n_blocks, FOOTER_MAGIC)

    @classmethod
    def from_bytes(cls, data, *, n_rows: int, dim: int, segment_checksum: int) -> WsbrIndex:
        """Parse and check a sidecar; any inconsistency raises CorruptionError."""
        buf = memoryview(data).cast("B")
        if len(buf) < _HEADER.size + _FOOTER.size:
            raise CorruptionError(f"WSBR sidecar truncated: {len(buf)} bytes")
        fields = _HEADER.unpack_from(buf, 0)
        (magic, version, header_size, metric_code, level, flags, s_dim, s_rows, n_blocks,
         block_size, top_blocks, widen_blocks, s_checksum, seed, payload_crc, header_crc) = fields
        if magic != MAGIC:
            raise CorruptionError(f"WSBR sidecar has bad magic {bytes(magic)!r}")
        if crc32c(buf[:60]) != header_crc:
            raise CorruptionError("WSBR sidecar header checksum mismatch")
        if (version not in _READ_VERSIONS or header_size != _HEADER.size
                or (version < 4 and flags != 0)):
            raise CorruptionError(f"WSBR sidecar version {version} is not supported")
        if version < 4:
            flags = _FLAG_SIGNS if version == 3 else 0
        elif flags & ~(_FLAG_SIGNS | _FLAG_NIBBLES) or not flags & _FLAG_NIBBLES:
            raise CorruptionError(f"WSBR sidecar has unknown section flags {flags:#x}")
        metric = {code: name for name, code in METRIC_CODES.items()}.get(metric_code)
        if metric is None or level != quant_level(s_dim) or top_blocks < 1 or block_size < 1:
            raise CorruptionError("WSBR sidecar header has invalid fields")
        if s_dim != dim or s_rows != n_rows or s_checksum != segment_checksum:
            raise CorruptionError(
                f"WSBR sidecar belongs to another segment (dim {s_dim}, rows {s_rows}, "
                f"checksum {s_checksum:#x}; expected {dim}, {n_rows}, {segment_checksum:#x})")
        if n_blocks > n_rows or (n_rows > 0) != (n_blocks > 0):
            raise CorruptionError(f"WSBR sidecar has an impossible block count {n_blocks}")
        layout, payload_size = _section_layout(dim, n_blocks, n_rows if version >= 2 else None,
                                               signs=bool(flags & _FLAG_SIGNS),
                                               nibbles=bool(flags & _FLAG_NIBBLES))
        end = _HEADER.size + payload_size
        if len(buf) != end + _FOOTER.size:
            raise CorruptionError(
                f"WSBR sidecar is {len(buf)} bytes; its header implies {end + _FOOTER.size}")
        if _FOOTER.unpack_from(buf, end) != (n_blocks, FOOTER_MAGIC):
            raise CorruptionError("WSBR sidecar footer mismatch")
        if crc32c(buf[_HEADER.size : end]) != payload_crc:
            raise CorruptionError("WSBR sidecar payload checksum mismatch")
        arrays = {name: np.frombuffer(buf, dtype=dtype, count=count, offset=_HEADER.size + off)
                  for name, (off, dtype, count) in layout.items()}
        offsets = arrays["block_offsets"].astype(np.int64)
        if len(offsets) and (offsets[0] != 0 or offsets[-1] != n_rows
                             or np.any(offsets[1:] <= offsets[:-1])):
            raise CorruptionError("WSBR sidecar block offsets are not a partition of the rows")
        if not all(np.isfinite(arrays[name]).all() for name in ("mu", "alpha", "beta")):
            raise CorruptionError("WSBR sidecar has non-finite routing parameters")
        rows = None
        if version >= 2:
            signs = nibbles = None
            if flags & _FLAG_SIGNS:
                signs = arrays["row_signs"].reshape(n_rows, -1).astype(np.uint64, copy=False)
            if flags & _FLAG_NIBBLES:
                nibbles = arrays["row_nibbles"].reshape(n_rows, -1)
            rows = RowCodes(arrays["row_codes"].reshape(n_rows, dim), arrays["row_scale"],
                            arrays["row_residual"], arrays["row_norm"], signs, nibbles)
        return cls(metric=metric, dim=dim, n_rows=n_rows, block_size=block_size,
                   top_blocks=top_blocks, widen_blocks=widen_blocks, seed=seed,
                   mu=arrays["mu"], projection=arrays["projection"].reshape(SIGNATURE_BITS, dim),
                   block_offsets=offsets, signatures=arrays["signatures"].astype(np.uint64),
                   alpha=arrays["alpha"], beta=arrays["beta"],
                   centroids=arrays["centroids"].reshape(n_blocks, dim), rows=rows)

    def write(self, path: str, segment_checksum: int) -> int:
        """Write to path + ".tmp", fsync, rename over path (the caller fsyncs the directory);
        returns the file's size."""
        tmp = path + ".tmp"
        data = self.to_bytes(segment_checksum)
        fs.write_file(tmp, data)
        fs.rename(tmp, path)
        return len(data)

    @classmethod
    def read(cls, path: str, *, n_rows: int, dim: int, segment_checksum: int) -> WsbrIndex:
        if not fs.exists(path):
            raise CorruptionError(f"WSBR sidecar {path} is missing")
        try:
            # Mapped, not read: the int8 row copy stays file-backed (see the module docstring).
            return cls.from_bytes(fs.map_file(path) or b"", n_rows=n_rows, dim=dim,
                                  segment_checksum=segment_checksum)
        except CorruptionError as exc:
            raise CorruptionError(f"{path}: {exc}") from None


def _section_layout(dim: int, n_blocks: int, code_rows: int | None, signs: bool = False,
                    nibbles: bool = False) -> tuple[dict, int]:
    """({name: (offset from the payload start, dtype, count)}, payload size); code_rows is
    n_rows for a sidecar with the int8 row copy (version 2 and later), None for version 1;
    signs and nibbles: with the sign codes, with the int4 row copy."""
    sections = [("mu", "<f4", dim), ("projection", np.int8, SIGNATURE_BITS * dim),
                ("block_offsets", "<u8", n_blocks + 1), ("signatures", "<u8", n_blocks),
                ("alpha", "<f4", n_blocks), ("beta", "<f4", n_blocks),
                ("centroids", np.int8, n_blocks * dim)]
    if code_rows is not None:
        sections += [("row_codes", np.int8, code_rows * dim), ("row_scale", "<f4", code_rows),
                     ("row_residual", "<f4", code_rows), ("row_norm", "<f4", code_rows)]
        if signs:
            sections.append(("row_signs", "<u8", code_rows * -(-dim // 64)))
        if nibbles:
            sections.append(("row_nibbles", np.uint8, code_rows * -(-dim // 64) * 32))
    layout: dict = {}
    offset = 0
    for name, dtype, count in sections:
        layout[name] = (offset, dtype, count)
        offset += np.dtype(dtype).itemsize * count
        offset += -offset % 8
    return layout, offset


# ---------------------------------------------------------------------------- build


def build_index(vectors: np.ndarray, metric: str, params: IndexParams) -> tuple[np.ndarray, WsbrIndex]:
    """Blocks and routing data for a segment of (n, d) float32 rows in arrival order.

    Returns (order, index): the segment must store row order[r] as its row r, which makes
    every block the contiguous row range [block_offsets[b], block_offsets[b + 1]).
    """
    if metric not in METRIC_CODES:
        raise InvalidArgumentError(f"metric must be one of {tuple(METRIC_CODES)}, got {metric!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise InvalidArgumentError(f"vectors must be (n, d) with d >= 1, got {vectors.shape}")
    n, dim = vectors.shape
    block_size = params.wsbr_block_size or default_block_size(n)
    rng = np.random.Generator(np.random.PCG64(SEED))
    # cosine reads unit rows as it goes: a normalised copy would cost 4 bytes * n * dim
    routing = UnitRowView(vectors) if metric == "cosine" else vectors
    blocks = form_blocks(routing, block_size, rng)
    order = np.concatenate(blocks).astype(np.int64) if blocks else np.zeros(0, np.int64)
    offsets = np.zeros(len(blocks) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blocks], out=offsets[1:])
    if n > 0:
        mu, w = itq_projection(routing, SIGNATURE_BITS, rng)
    else:
        mu, w = np.zeros(dim, np.float32), np.zeros((SIGNATURE_BITS, dim), np.float32)
    level = quant_level(dim)
    projection = quantize(w, level)
    top = params.wsbr_top_blocks or default_top_blocks(n, block_size)
    widen = _widen_for(top, params.wsbr_widen_blocks)
    projection = projection.astype(np.int8)
    *codes, signs, nibbles, sketches, sums = row_codes(routing, order, offsets, mu, projection,
                                                        level)
    knobs = params.wsbr_top_blocks is not None or params.wsbr_widen_blocks is not None
    if dim < _SIGN_MIN_DIM or knobs or n < _CALIBRATE_MIN_ROWS:
        signs = None  # else kept if _calibrated finds that they pay
    alpha, beta, centroids = _centroid_table(sums, routing, order, offsets, metric)
    index = WsbrIndex(metric=metric, dim=dim, n_rows=n, block_size=block_size,
                      top_blocks=min(top, _U32_MAX), widen_blocks=min(widen, _U32_MAX), seed=SEED,
                      mu=mu, projection=projection, block_offsets=offsets,
                      signatures=_majority(sketches, offsets), alpha=alpha, beta=beta,
                      centroids=centroids,
                      rows=RowCodes(*codes, signs, nibbles if _nibbles_pay(dim) else None))
    if params.wsbr_top_blocks is None and n >= _CALIBRATE_MIN_ROWS:
        index = _calibrated(index, vectors, routing, order, rng, params.wsbr_widen_blocks)
    return order, index


def _calibrated(index: WsbrIndex, vectors: np.ndarray, routing: np.ndarray, order: np.ndarray,
                rng: np.random.Generator, widen_blocks: int | None) -> WsbrIndex:
    """The index with a default top_blocks raised until it reaches the target recall here.

    The sqrt(n) rule was fitted on one data set (sentence embeddings); harder data needs
    more blocks. This measures the segment's own data with sample queries (see below,
    exact truth from the kernels): if the rule's budget misses _CALIBRATE_RECALL, it
    doubles and then bisects until it does. It never lowers the rule's budget, because
    queries from another distribution than the rows route worse than any sample of them;
    but where the rule missed, it also measures a shortlist of every block (see _ROW_COST)
    and keeps the cheaper of the two budgets that reach the target.

    vectors and routing are in arrival order; row order[p] is stored at position p.
    """
    n = index.n_rows
    sample = rng.choice(n, size=(_CALIBRATE_QUERIES, 2), replace=True)
    # Half the queries are rows (in-distribution), half midpoints of two random rows (between
    # clusters, like queries from another distribution: questions against passages).
    queries = routing[sample[:, 0]].copy()
    half = _CALIBRATE_QUERIES // 2
    queries[half:] = (queries[half:] + routing[sample[half:, 1]]) / 2
    _, rows = topk(vectors, queries, _CALIBRATE_K + 1, index.metric)
    self_row = np.where(np.arange(len(queries)) < half, sample[:, 0], -2)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    truth = [position[r[(r != s) & (r >= 0)][:_CALIBRATE_K]] for r, s in zip(rows, self_row)]
    truth_blocks = [np.searchsorted(index.block_offsets, t, side="right") - 1 for t in truth]

    recall = _TrueBlockRecall(index, queries, truth_blocks).recall
    # the sqrt(n) rule is a floor: calibration only raises it
    top = _smallest_top(lambda t: recall(t, _widen_for(t, widen_blocks)), index.top_blocks,
                        index.n_blocks)
    widen = _widen_for(top, widen_blocks)
    if widen_blocks is None and top > index.top_blocks:  # the rule missed: try every block
        every = index.n_blocks
        full_top = _smallest_top(lambda t: recall(t, every), _CALIBRATE_K, top)
        if _route_cost(index, full_top, every) < _route_cost(index, top, widen):
            top, widen = full_top, every
    index = index.with_defaults(min(top, _U32_MAX), min(widen, _U32_MAX))
    if index.rows is not None and index.rows.signs is not None:
        picked = _SIGN_CALIBRATE_QUERIES
        share, survival = _sign_band(index, queries[picked], [truth[i] for i in picked])
        if share > _SIGN_MAX_SHARE or survival < _SIGN_MIN_SURVIVAL:
            index.rows = index.rows._replace(signs=None)
    return index


def _smallest_top(recall, low: int, high: int) -> int:
    """About the smallest top_blocks in [low, high] whose recall(top) reaches
    _CALIBRATE_RECALL (within high / 16), searching up from `low` by doublings, then
    bisecting; `high` caps the search (n_blocks, or a budget known to be enough)."""
    start, top = 0, low
    while top < high and recall(top) < _CALIBRATE_RECALL:
        start, top = top, top * 2
    top = min(top, high)
    start = max(start, low) if top > low else top
    while top - start > max(1, top // 16):
        middle = (start + top) // 2
        start, top = (start, middle) if recall(middle) >= _CALIBRATE_RECALL else (middle, top)
    return max(_AUTO_MIN_TOP, top)


def _route_cost(index: WsbrIndex, top: int, widen: int) -> float:
    """A default search's work, in centroids scored: the shortlist, plus the rows of the
    selected blocks at _ROW_COST each."""
    shortlist = min(top + widen, index.n_blocks)
    return shortlist + _ROW_COST * top * index.n_rows / max(1, index.n_blocks)


class _TrueBlockRecall:
    """For _calibrated: the share of the queries' true blocks that a default search with a
    given top_blocks and widen_blocks selects, for many budgets at the cost of about one.

    Routing each candidate budget anew scored the centroids of its whole shortlist every time
    (a fifth of a 1M-row build). Here the queries' Hamming ranking and the centroid scores
    of its prefix are computed once (the prefix grows when a larger budget needs more), and
    a true block counts as selected when it lies in the shortlist and fewer than `top` of the
    shortlist rank before it by (score descending, shortlist position): steps 2-3 of the
    module docstring with the kernels' arithmetic, so the answer is route()'s, bit for bit.
    """

    def __init__(self, index: WsbrIndex, queries: np.ndarray,
                 truth_blocks: list[np.ndarray]) -> None:
        self.index = index
        self.true_count = sum(len(b) for b in truth_blocks)
        routing = np.ascontiguousarray(routing_rows(queries, index.metric), dtype=np.float32)
        self.sketches = kernels.row_codes(routing, index.mu, index.projection, index.level,
                                          np.zeros(len(queries), np.int64))[6]
        self.q8 = quantize(queries, index.level).astype(np.int8)
        # the l2 gain of the kernels: max |query| / L in float32
        self.gain = np.abs(queries).max(axis=1).astype(np.float32) / np.float32(index.level)
        self.places = []  # each true block's place in its query's (distance, block id) order
        for sketch, blocks in zip(self.sketches, truth_blocks):
            order = hamming64_rank(index.signatures, sketch[None], index.n_blocks)[0]
            place = np.empty(index.n_blocks, np.int64)
            place[order] = np.arange(index.n_blocks)
            self.places.append(place[blocks])
        self.scores = np.zeros((len(queries), 0), np.float32)  # of each Hamming order's prefix

    def recall(self, top: int, widen: int) -> float:
        index = self.index
        total = max(1, self.true_count)
        if top >= index.n_blocks:
            return self.true_count / total  # every block is scored
        assert top >= _CALIBRATE_K  # so route() never widens for k: the rule's floor is larger
        shortlist = min(top + widen, index.n_blocks)
        self._score_prefix(shortlist)
        hits = 0
        positions = np.arange(shortlist)
        for scores, places in zip(self.scores[:, :shortlist], self.places):
            inside = places[places < shortlist]
            own = scores[inside]
            ahead = ((scores[None, :] > own[:, None])
                     | ((scores[None, :] == own[:, None]) & (positions[None, :] < inside[:, None])))
            hits += int((ahead.sum(axis=1) < top).sum())
        return hits / total

    def _score_prefix(self, length: int) -> None:
        """Centroid scores (the kernels' est) of the first `length` blocks of each query's
        Hamming order."""
        done = self.scores.shape[1]
        if length <= done:
            return
        index = self.index
        fresh = np.ascontiguousarray(hamming64_rank(index.signatures, self.sketches, length)[:, done:])
        dots = dot_int8_rows(index.centroids, self.q8, fresh).astype(np.float32)
        scores = index.alpha[fresh] * dots
        if index.metric == "l2":
            scores = scores * self.gain[:, None] + index.beta[fresh]
        self.scores = np.concatenate([self.scores, scores], axis=1)


_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint16)


def _hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of each (w,) uint64 code row to `query` (numpy 2's bitwise_count,
    else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(codes ^ query).sum(axis=1, dtype=np.int64)
    return _POPCOUNT[(codes ^ query).view(np.uint8)].sum(axis=1, dtype=np.int64)


def _block_rows(offsets: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """The rows of the given blocks, block by block (block b: offsets[b]:offsets[b + 1])."""
    starts, sizes = offsets[blocks], offsets[blocks + 1] - offsets[blocks]
    return np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))


def _sign_band(index: WsbrIndex, queries: np.ndarray,
               truth: list[np.ndarray]) -> tuple[float, float]:
    """For routing-space queries and their true top rows (stored positions): the share of the
    rows of their (sign-stage sized) routed blocks that the sign stage keeps
    (kernels.topk_blocks_int8's band at k = _CALIBRATE_K), and the share of the true rows found
    in those blocks that it keeps."""
    assert index.rows is not None and index.rows.signs is not None
    top, widen = _signed_budget(index.top_blocks, index.widen_blocks)
    codes = index.rows.signs
    kept = seen = survived = found = 0
    chosen = route(index, queries, _CALIBRATE_K, top_blocks=top, widen_blocks=widen)
    for blocks, query, true_rows in zip(chosen, sign_codes(queries, index.mu), truth):
        rows = _block_rows(index.block_offsets, blocks)
        distance = _hamming(codes[rows], query)
        nearest = min(_CALIBRATE_K, len(rows)) - 1
        floor = min(_SIGN_KEEP_PER_K * _CALIBRATE_K, len(rows)) - 1
        ordered = np.partition(distance, (nearest, floor))
        dk = float(ordered[nearest])
        band = dk + _SIGN_SIGMAS * math.sqrt(dk * max(0.0, 1.0 - dk / index.dim))
        limit = max(math.floor(min(band, index.dim)), ordered[floor])
        kept += int((distance <= limit).sum())
        seen += len(rows)
        inside = np.isin(true_rows, rows)
        true_distance = _hamming(codes[true_rows[inside]], query)
        survived += int((true_distance <= limit).sum())
        found += int(inside.sum())
    return kept / max(1, seen), survived / max(1, found)


def _majority(sketches: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per block, bit j set iff it is set in more than half of the block's row sketches."""
    if len(offsets) == 1:
        return np.zeros(0, np.uint64)
    bits = np.unpackbits(sketches.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    counts = segment_sums(bits, offsets, dtype=np.int32)
    return _pack_bits(2 * counts > np.diff(offsets)[:, None])


def _centroid_table(sums: np.ndarray, routing: np.ndarray, order: np.ndarray,
                    offsets: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, beta, int8 centroids at _CENTROID_LEVEL) per block of routing rows; block b
    holds the rows order[offsets[b]:offsets[b + 1]], which sum to sums[b]."""
    n_blocks = len(offsets) - 1
    dim = routing.shape[1]
    if n_blocks == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, dim), np.int8)
    sizes = np.diff(offsets)[:, None]
    means = sums / sizes.astype(np.float32)
    beta = np.zeros(n_blocks, dtype=np.float32)
    if metric == "l2":
        direction = means
        gain = np.float32(2.0)
        beta = -np.einsum("ij,ij->i", means, means)
    else:
        direction = routing_rows(means, "cosine")
        gain = np.float32(1.0)
        if metric == "ip":
            row_norms = np.sqrt(np.einsum("ij,ij->i", routing, routing, dtype=np.float64))[order]
            gain = (np.add.reduceat(row_norms, offsets[:-1]) / sizes[:, 0]).astype(np.float32)
    amax = np.abs(direction).max(axis=1)
    alpha = (gain * amax / np.float32(_CENTROID_LEVEL)).astype(np.float32)
    return alpha, beta.astype(np.float32), quantize(direction, _CENTROID_LEVEL).astype(np.int8)


# ---------------------------------------------------------------------------- search


def search_segment(vectors: np.ndarray, index: WsbrIndex, queries: np.ndarray, k: int,
                   metric: str, *, mask: np.ndarray | None = None, top_blocks: int | None = None,
                   widen_blocks: int | None = None, mode: str = "shortlist",
                   routing_queries: np.ndarray | None = None,
                   share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The k best allowed rows of one segment per query, routed by WSBR.

    vectors: the segment's (n_rows, dim) float32 rows in block order. mask: (n_rows,) bool of
    allowed rows, or None. routing_queries: routing_rows(queries, metric) when the caller
    already has it (a search over several segments computes it once). share: the segment's
    fraction of all the rows the caller searches, which scales the default budgets with k
    (budget_scale; explicit top_blocks / widen_blocks are used as given). Returns (scores (q, k)
    float32, rows (q, k) int64) like kernels.topk, best first, padded with -inf / -1. The
    selected blocks are scored in one kernel call: kernels.topk_blocks_int8 with the sidecar's
    int8 row copy for up to _INT8_MAX_BATCH queries, else kernels.topk_blocks, which reads each
    block once for all the queries that chose it (the same answer either way). With sign codes
    and default budgets, kernels.topk_blocks_int8 and its sign stage for any number of queries.
    The int8 path selects and scores in one call (kernels.wsbr_search) unless a mask leaves a
    query's selected blocks short of k allowed rows.
    """
    return search_segments([(vectors, index, mask, share)], queries, k, metric,
                           top_blocks=top_blocks, widen_blocks=widen_blocks, mode=mode,
                           routing_queries=routing_queries)[0]


def search_segments(segments: list[tuple[np.ndarray, WsbrIndex, np.ndarray | None, float]],
                    queries: np.ndarray, k: int, metric: str, *, top_blocks: int | None = None,
                    widen_blocks: int | None = None, mode: str = "shortlist",
                    routing_queries: np.ndarray | None = None,
                    helpers: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """search_segment of each (vectors, index, mask, share) of `segments`, in order. Their
    one-call searches (kernels.wsbr_search) run at once, on this thread and up to `helpers`
    threads of the kernels' pool (kernels.wsbr_search_many): the same answers."""
    routes = [_route_segment(vectors, index, queries, k, metric, mask, top_blocks, widen_blocks,
                             mode, routing_queries, share)
              for vectors, index, mask, share in segments]
    answers = iter(wsbr_search_many([r.call for r in routes if r.call is not None], helpers))
    out = []
    for route_ in routes:
        found = next(answers) if route_.call is not None else None
        out.append(found if found is not None else _search_routed(route_, k, metric))
    return out


class _Route(NamedTuple):
    """One segment's search up to its one-call kernel search (`call`, None where it takes
    another path): what the other paths need too."""

    vectors: np.ndarray
    index: WsbrIndex
    queries: np.ndarray
    routing_queries: np.ndarray
    mask: np.ndarray | None
    signed: bool
    int8: bool
    query_signs: np.ndarray | None
    top: int
    widen: int
    allowed: np.ndarray
    call: kernels.WsbrCall | None


def _route_segment(vectors: np.ndarray, index: WsbrIndex, queries: np.ndarray, k: int,
                   metric: str, mask: np.ndarray | None, top_blocks: int | None,
                   widen_blocks: int | None, mode: str, routing_queries: np.ndarray | None,
                   share: float) -> _Route:
    if metric != index.metric:
        raise InvalidArgumentError(f"segment was indexed for {index.metric!r}, not {metric!r}")
    if vectors.shape != (index.n_rows, index.dim):
        raise InvalidArgumentError(
            f"vectors must be the segment's ({index.n_rows}, {index.dim}) rows, got {vectors.shape}")
    queries = _query_matrix(queries, index.dim)
    if routing_queries is None:
        routing_queries = routing_rows(queries, index.metric)
    signed = (index.rows is not None and index.rows.signs is not None and top_blocks is None
              and widen_blocks is None and _mostly_allowed(index, mask))
    int8 = index.rows is not None and (signed or len(queries) <= _INT8_MAX_BATCH)
    query_signs = sign_codes(routing_queries, index.mu) if signed else None
    top, widen, allowed = _budget(index, k, mask, top_blocks, widen_blocks, mode, share, signed)
    call = None
    if int8 and k <= top < index.n_blocks:
        call = kernels.WsbrCall(index.search_tables(vectors), routing_queries, queries,
                                query_signs, k, top, widen, _SIGN_SIGMAS, _SIGN_KEEP_PER_K * k,
                                mask, None if mask is None else allowed)
    return _Route(vectors, index, queries, routing_queries, mask, signed, int8, query_signs, top,
                  widen, allowed, call)


def _search_routed(r: _Route, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A segment's search where its one-call search does not answer: a mask left some query
    short of k rows (widened here), a batch too large for the int8 pass, or every block
    selected."""
    index = r.index
    routed = _routed(index, r.queries, r.routing_queries, k, r.top, r.widen, r.allowed)
    if routed is None:
        return topk(r.vectors, r.queries, k, metric, mask=r.mask)
    ptr, blocks = routed
    if r.int8:
        rows = index.rows
        assert rows is not None
        return topk_blocks_int8(r.vectors, r.queries, k, metric, r.mask,
                                block_ranges=index.block_table, ptr=ptr, blocks=blocks,
                                codes=rows.codes, scale=rows.scale, residual=rows.residual,
                                norm=rows.norm, signs=rows.signs if r.signed else None,
                                query_signs=r.query_signs, sign_sigmas=_SIGN_SIGMAS,
                                keep_min=_SIGN_KEEP_PER_K * k, nibbles=rows.nibbles)
    return topk_blocks(r.vectors, r.queries, k, metric, r.mask, block_ranges=index.block_table,
                       ptr=ptr, blocks=blocks)


def route(index: WsbrIndex, queries: np.ndarray, k: int, *, mask: np.ndarray | None = None,
          top_blocks: int | None = None, widen_blocks: int | None = None,
          mode: str = "shortlist") -> list[np.ndarray]:
    """The blocks each query's search scores: one ascending int64 array of block ids per query.

    Steps 1-3 of the module docstring, with the widening for masks.
    """
    queries = _query_matrix(queries, index.dim)
    top, widen, allowed = _budget(index, k, mask, top_blocks, widen_blocks, mode)
    routed = _routed(index, queries, routing_rows(queries, index.metric), k, top, widen, allowed)
    if routed is None:
        return [np.arange(index.n_blocks)] * len(queries)
    ptr, blocks = routed
    return [np.sort(blocks[lo:hi]) for lo, hi in zip(ptr[:-1].tolist(), ptr[1:].tolist())]


def _budget(index: WsbrIndex, k: int, mask: np.ndarray | None, top_blocks: int | None,
            widen_blocks: int | None, mode: str, share: float = 1.0,
            signed: bool = False) -> tuple[int, int, np.ndarray]:
    """(top, widen) of a search, and the allowed rows of each block: the knobs given, or the
    segment's defaults scaled for k, its share of the rows, the sign stage and the mask.
    Unmasked budgets are kept on the index: every query of a membrane asks for the same."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be an int >= 1, got {k!r}")
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {MODES}, got {mode!r}")
    if mask is not None:
        return _budget_of(index, k, mask, top_blocks, widen_blocks, mode, share, signed)
    key = (k, top_blocks, widen_blocks, mode, share, signed)
    budget = index.budgets.get(key)
    if budget is None:
        budget = _budget_of(index, k, None, top_blocks, widen_blocks, mode, share, signed)
        if len(index.budgets) >= _BUDGETS_KEPT:
            index.budgets.clear()
        index.budgets[key] = budget
    return budget


def _budget_of(index: WsbrIndex, k: int, mask: np.ndarray | None, top_blocks: int | None,
               widen_blocks: int | None, mode: str, share: float,
               signed: bool) -> tuple[int, int, np.ndarray]:
    scale = budget_scale(k, share)
    top = math.ceil(index.default_top_blocks() * scale) if top_blocks is None else top_blocks
    widen = _scaled_widen(index, scale) if widen_blocks is None else widen_blocks
    if top < 1 or widen < 0:
        raise InvalidArgumentError(f"need top_blocks >= 1 and widen_blocks >= 0, got {top}, {widen}")
    if signed:
        top, widen = _signed_budget(top, widen)
    if mode == "literal":
        widen = 0
    allowed = _allowed_per_block(index, mask)
    allowed_rows = index.n_rows if mask is None else int(allowed.sum())
    top, widen = _scale_for_selectivity(top, widen, allowed_rows, index.n_rows)
    return top, widen, allowed


def _routed(index: WsbrIndex, queries: np.ndarray, routing_queries: np.ndarray, k: int,
            top: int, widen: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """route() for a _budget as (ptr, blocks) int64 arrays, kernels.topk_blocks' form: query
    j's blocks are blocks[ptr[j]:ptr[j + 1]], distinct, in no particular order. None when
    every query selects every block (an exact search; not spelled out, as that is q * n_blocks
    ids)."""
    if top >= index.n_blocks:
        return None
    selected = _select_blocks(index, queries, routing_queries, top, widen)
    return _widen_until_k_allowed(index, queries, routing_queries, selected, allowed, k, top,
                                  widen)


def _csr_of_matrix(selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, blocks) for a (q, c) matrix of block ids: row j is query j's blocks."""
    ptr = np.arange(len(selected) + 1, dtype=np.int64) * selected.shape[1]
    return ptr, np.ascontiguousarray(selected, dtype=np.int64).reshape(-1)


def _csr_of_groups(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(g) for g in groups], out=ptr[1:])
    return ptr, np.concatenate(groups).astype(np.int64, copy=False)


def _query_matrix(queries: np.ndarray, dim: int) -> np.ndarray:
    if (isinstance(queries, np.ndarray) and queries.dtype == np.float32 and queries.ndim == 2
            and queries.shape[1] == dim and queries.flags.c_contiguous):
        return queries  # the engine's checked matrix (a numpy call costs microseconds here)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries.reshape(1, -1)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise InvalidArgumentError(f"queries must be (q, {dim}), got {queries.shape}")
    return queries


def _allowed_per_block(index: WsbrIndex, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return index.block_sizes
    mask = np.asarray(mask)
    if mask.shape != (index.n_rows,):
        raise InvalidArgumentError(f"mask must have shape ({index.n_rows},), got {mask.shape}")
    if index.n_blocks == 0:
        return np.zeros(0, np.int64)
    cached = index.allowed_cache
    if cached is not None and cached[0]() is mask:  # the same (cached) mask as the last query
        return cached[1]
    counts = np.add.reduceat(mask, index.block_offsets[:-1], dtype=np.int64)
    index.allowed_cache = (weakref.ref(mask), counts)
    return counts


def _widen_for(top: int, widen_blocks: int | None) -> int:
    """A segment's default widen_blocks for a default top_blocks `top`: the given knob, or
    _AUTO_WIDEN_FACTOR times top."""
    return _AUTO_WIDEN_FACTOR * top if widen_blocks is None else widen_blocks


def _scaled_widen(index: WsbrIndex, scale: float) -> int:
    """The default widen_blocks scaled like top_blocks, except that a default shortlist of
    every block (see _ROW_COST) stays every block: that segment's Hamming order loses true
    blocks all the way down."""
    widen = index.default_widen_blocks()
    return widen if widen >= index.n_blocks else math.ceil(widen * scale)


def _signed_budget(top: int, widen: int) -> tuple[int, int]:
    """(top, widen) for the sign stage: more blocks from the same shortlist, since it reads
    only a few of their rows."""
    signed_top = math.ceil(top * _SIGN_BLOCKS_FACTOR)
    return signed_top, max(0, top + widen - signed_top)


def _mostly_allowed(index: WsbrIndex, mask: np.ndarray | None) -> bool:
    """At least _SIGN_MIN_ALLOWED of the rows pass the mask: the sign stage reads every row's
    code in its blocks, so below that the int8 pass over the allowed rows alone costs less."""
    return mask is None or int(_allowed_per_block(index, mask).sum()) >= _SIGN_MIN_ALLOWED * index.n_rows


def _scale_for_selectivity(top: int, widen: int, allowed: int, n_rows: int) -> tuple[int, int]:
    """top and widen times s^(-1/4), s = the allowed fraction of the rows.

    A filter passing a fraction s of the rows makes a query's k best allowed rows about its
    k/s best rows overall, which lie in more blocks. On pypi-100k at s = 0.1 the default
    selection keeps recall@10 above 0.96 with 1.8x the blocks (s^(-1/4) = 1.78); tombstones
    (s near 1) barely change it.
    """
    if allowed >= n_rows or allowed == 0:
        return top, widen
    factor = (n_rows / allowed) ** 0.25
    return math.ceil(top * factor), math.ceil(widen * factor)


def _select_blocks(index: WsbrIndex, queries: np.ndarray, routing_queries: np.ndarray, top: int,
                   widen: int) -> np.ndarray:
    """(q, min(top, n_blocks)) selected block ids per query, in no particular order.

    One kernel call does steps 1-3 (sketch, Hamming shortlist, centroid re-rank); its ties
    by shortlist column are the (est, hamming, block_id) order of the module docstring.
    """
    return wsbr_select(routing_queries, queries, mu=index.mu,
                       projection=index.projection, signatures=index.signatures,
                       centroids=index.centroids, alpha=index.alpha, beta=index.beta,
                       level=index.level, l2=index.metric == "l2", top=top, widen=widen)


def _widen_until_k_allowed(index: WsbrIndex, queries: np.ndarray, routing_queries: np.ndarray,
                           selected: np.ndarray, allowed: np.ndarray, k: int, top: int,
                           widen: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, blocks): per query, `selected`, or for queries whose blocks hold fewer than k
    allowed rows (fewer than all allowed rows if those are fewer than k), the selection with
    top and widen doubled, repeatedly, up to every block."""
    if allowed is index.block_sizes and selected.shape[1] >= k:
        return _csr_of_matrix(selected)  # no mask, and no block is empty: k rows are there
    need = min(int(allowed.sum()), k)
    short = np.nonzero(allowed[selected].sum(axis=1) < need)[0]
    if not len(short):
        return _csr_of_matrix(selected)
    groups = list(selected)
    while len(short):
        top, widen = 2 * top, 2 * widen
        if top >= index.n_blocks:
            for i in short:
                groups[i] = np.arange(index.n_blocks)
            break
        wider = _select_blocks(index, queries[short], routing_queries[short], top, widen)
        for i, blocks in zip(short, wider):
            groups[i] = blocks
        short = short[allowed[wider].sum(axis=1) < need]
    return _csr_of_groups(groups)
