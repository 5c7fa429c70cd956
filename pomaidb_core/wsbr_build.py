"""WSBR training at freeze and compaction time: block formation and the ITQ sketch projection.

Pure functions of a segment's routing-space rows (see wsbr.py; an array, or a UnitRowView of a
cosine segment's vectors) and a seeded numpy Generator;
they write nothing and know no file format. Every random choice comes from the Generator, so
the same rows and seed give the same blocks and projection on the same machine.

Cost is what shapes this module: a 1M-row segment must build at >= 50,000 rows/s on one core,
so flat k-means with k = n / block_size (every row against every centroid: O(n^2 d / B), 78 s
for 400k rows) is out. Instead (n rows, k = n / B, d' = `_KMEANS_DIMS`):

1. PCA to d' dimensions (randomised subspace iteration on a `_PCA_SAMPLE`-row sample);
2. two-level k-means in that space: about sqrt(k) coarse clusters
   (Lloyd on `_COARSE_SAMPLE_PER_CLUSTER` sample rows per centroid, then every row assigned),
   then each coarse cluster of c rows cut by its own k-means into about c / B fine clusters
   (trained on `_SAMPLE_PER_CLUSTER` rows per centroid). A row meets about 2 sqrt(k)
   centroids instead of k: O(n sqrt(n / B) d'), the only super-linear term, small at 1M rows;
3. `_REFINE_ROUNDS` rounds of Lloyd in the full space where a row may only move to one of
   the `_REFINE_NEIGHBOURS` centroids nearest its current one, searched among the children of
   the `_NEAR_COARSE` nearest coarse clusters (O(k^1.5 d), not O(k^2 d)). This lets rows cross
   the coarse boundaries. Measured on pypi-100k at equal rows scanned (4 / 6 / 8 %), the
   blocks route 1.2 / 0.8 / 0.6 points of recall@10 below the old flat k-means; more refine
   rounds, neighbours, iterations or samples did not close that gap, fewer coarse clusters
   (sqrt(k) / 4) halve it at 4x the cost of this step;
4. clusters larger than block_size are cut at the median of their principal axis, recursively,
   so no block exceeds block_size rows (blocks average about 0.6 block_size).

Every other pass over the rows is linear: sums per cluster use `segment_sums`
(np.add.reduceat costs about a microsecond a row), projections run in row chunks, and once
the blocks are formed one kernel pass over their rows (`row_codes`) makes everything a
sidecar stores per row, and the sums the block centroids are taken from.

Blocks are numbered cluster by cluster, so neighbouring block ids tend to be near each other
in space and a query's selected blocks coalesce into fewer row ranges.
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels
from .worker import checkpoint

_KMEANS_DIMS = 128  # PCA dimensions k-means is trained and assigned in
_KMEANS_ITERS = 6  # Lloyd iterations on the training sample
_SAMPLE_PER_CLUSTER = 16  # training rows per fine centroid
_COARSE_SAMPLE_PER_CLUSTER = 256  # training rows per coarse centroid
_NEAR_COARSE = 4  # coarse clusters searched for a fine centroid's refine neighbours
_REFINE_ROUNDS = 1
_REFINE_NEIGHBOURS = 32
_SPLIT_POWER_ITERS = 3
_PCA_SAMPLE = 10_000  # rows the PCA and ITQ are fitted on
_PCA_OVERSAMPLE = 16
_PCA_POWER_ITERS = 4
_ITQ_ITERS = 30
_CHUNK_ROWS = 8192  # rows per BLAS call when assigning: bounds the (rows, k) distance buffer


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (zero rows stay zero): cosine's routing rows."""
    return kernels.unit_rows(rows)


class UnitRowView:
    """The rows of `vectors` at unit length, scaled as they are read (slices and index
    arrays): the functions here read a cosine segment's routing rows through it instead of
    a normalised copy, which at 1M x 384 costs 1.5 GB and seconds of page faults. The
    inverse norms (4 bytes a row) are computed once: a build reads the rows a few dozen
    times, and recomputing each norm on every read was a fifth of a 1M-row build."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.shape = vectors.shape
        self.dtype = vectors.dtype
        self._inverse_norms = np.empty(len(vectors), dtype=np.float32)
        for start in range(0, len(vectors), _CHUNK_ROWS):
            self._inverse_norms[start : start + _CHUNK_ROWS] = kernels.inverse_norms(
                vectors[start : start + _CHUNK_ROWS])

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index) -> np.ndarray:
        return self.vectors[index] * self._inverse_norms[index][..., None]


def sample_rows(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct row indices (all of them, in order, when count >= n)."""
    if count >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=count, replace=False))


def pca_basis(centred: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """(d, min(dims, d)) orthonormal basis of the top principal directions of `centred` rows.

    Randomised subspace iteration: O(rows * d * dims) for any d, where an exact eigh of the
    d x d covariance would cost O(d^3) (minutes at d = 3072).
    """
    d = centred.shape[1]
    dims = min(dims, d)
    width = min(d, dims + _PCA_OVERSAMPLE)
    basis = np.linalg.qr(centred.T @ (centred @ rng.standard_normal((d, width)).astype(np.float32)))[0]
    for _ in range(_PCA_POWER_ITERS):
        basis = np.linalg.qr(centred.T @ (centred @ basis))[0]
    small = centred @ basis  # (rows, width): the data in the found subspace
    _, _, vt = np.linalg.svd(small, full_matrices=False)
    return np.ascontiguousarray((basis @ vt.T)[:, :dims], dtype=np.float32)


def itq_projection(routing: np.ndarray, bits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mu (d,), w (bits, d)) so that sign(w @ (x - mu)) is an ITQ code of x.

    Iterative quantisation (Gong & Lazebnik): PCA to min(bits, d) dimensions, then the rotation
    minimising the distance between the projected sample and its sign code. Rows of w beyond
    the data's dimension are zero (their bit is always 0 and never affects a Hamming distance).
    """
    n, d = routing.shape
    sample = routing[sample_rows(n, _PCA_SAMPLE, rng)]
    mu = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = sample - mu
    basis = pca_basis(centred, bits, rng)  # (d, m)
    m = basis.shape[1]
    projected = centred @ basis
    rotation = np.linalg.qr(rng.standard_normal((m, m)))[0].astype(np.float32)
    for _ in range(_ITQ_ITERS):
        codes = np.where(projected @ rotation > 0, 1.0, -1.0).astype(np.float32)
        # float64: LAPACK's float32 SVD is several times slower for this 64 x 64 matrix
        u, _, vt = np.linalg.svd((projected.T @ codes).astype(np.float64))
        rotation = (u @ vt).astype(np.float32)
    w = np.zeros((bits, d), dtype=np.float32)
    w[:m] = (basis @ rotation).T
    return mu, w


def project(x: np.ndarray, mu: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(x - mu) @ basis in row chunks (no full-size centred copy of x)."""
    out = np.empty((len(x), basis.shape[1]), dtype=np.float32)
    for start in range(0, len(x), _CHUNK_ROWS):
        np.matmul(x[start : start + _CHUNK_ROWS] - mu, basis, out=out[start : start + _CHUNK_ROWS])
    return out


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def assign_nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (L2) of every row; ties go to the lower index."""
    c_norms = _sq_norms(centroids)
    scaled = -2.0 * centroids.T  # |c|^2 - 2 x.c orders centroids as |x - c|^2 does
    labels = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), _CHUNK_ROWS):
        checkpoint()
        dist = x[start : start + _CHUNK_ROWS] @ scaled
        dist += c_norms
        labels[start : start + _CHUNK_ROWS] = dist.argmin(axis=1)
    return labels


def cluster_means(x: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Mean of each cluster's rows; an empty cluster keeps its previous centroid."""
    k = len(previous)
    counts = np.bincount(labels, minlength=k)
    filled = counts > 0
    offsets = np.concatenate(([0], np.cumsum(counts)))
    sums = segment_sums(x, offsets, np.argsort(labels, kind="stable"))[filled]
    means = previous.copy()
    means[filled] = sums / counts[filled, None].astype(np.float32)
    return means


def segment_sums(x: np.ndarray, offsets: np.ndarray, order: np.ndarray | None = None,
                 dtype: type | None = None) -> np.ndarray:
    """(len(offsets) - 1, d) sums of row segments: segment s holds the rows
    order[offsets[s]:offsets[s + 1]] of x (order: the identity when None).

    Adds the p-th row of every segment at once, for p = 0, 1, ...: a few vectorised passes,
    where np.add.reduceat over many short segments costs about a microsecond per row. Each
    segment is summed in row order, so the result does not depend on the other segments.
    """
    counts = np.diff(offsets)
    sums = np.zeros((len(counts), x.shape[1]), dtype=dtype or x.dtype)
    segments = np.arange(len(counts))
    for p in range(int(counts.max(initial=0))):
        segments = segments[counts[segments] > p]
        at = offsets[segments] + p
        sums[segments] += x[at if order is None else order[at]]
    return sums


def kmeans(x: np.ndarray, k: int, per_cluster: int, iters: int,
           rng: np.random.Generator) -> np.ndarray:
    """The cluster of every row of x by Lloyd's k-means with k centroids trained on a sample.

    The sample holds about `per_cluster` rows per centroid; the initial centroids are random
    distinct sample rows and an empty cluster keeps its old centroid. Every row is assigned
    once at the end, so the cost is O((sample * iters + rows) * k * d).
    """
    sample = x[sample_rows(len(x), max(k, per_cluster * k), rng)]
    centroids = sample[sample_rows(len(sample), k, rng)].copy()
    for _ in range(iters):
        checkpoint()
        centroids = cluster_means(sample, assign_nearest(sample, centroids), centroids)
    return assign_nearest(x, centroids)


def _two_level(x: np.ndarray, block_size: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, coarse parent of each label, label count) of a two-level k-means of x.

    About sqrt(n / block_size) coarse clusters, then each coarse cluster of c rows is cut into
    about c / block_size fine ones, so a row is compared with about 2 sqrt(n / block_size)
    centroids in all instead of n / block_size. Fine labels are numbered coarse cluster by
    coarse cluster.
    """
    n = len(x)
    coarse_k = min(n, math.isqrt(-(-n // block_size) - 1) + 1)  # ceil(sqrt(n / B))
    coarse = kmeans(x, coarse_k, _COARSE_SAMPLE_PER_CLUSTER, _KMEANS_ITERS, rng)
    order = np.argsort(coarse, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(coarse, minlength=coarse_k))))
    labels = np.empty(n, dtype=np.int64)
    parents: list[np.ndarray] = []
    first = 0  # the first fine label of this coarse cluster
    for c in range(coarse_k):
        rows = order[bounds[c] : bounds[c + 1]]
        if not len(rows):
            continue
        fine_k = max(1, round(len(rows) / block_size))
        if fine_k == 1:
            fine = np.zeros(len(rows), dtype=np.int64)
        else:
            fine = kmeans(x[rows], fine_k, _SAMPLE_PER_CLUSTER, _KMEANS_ITERS, rng)
        labels[rows] = fine + first
        parents.append(np.full(fine_k, c, dtype=np.int64))
        first += fine_k
    parent = np.concatenate(parents)
    return labels, parent, len(parent)


def _neighbour_lists(centroids: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """(k, m) ids of each centroid's m nearest centroids (itself included), ascending.

    Searched only among the children of the _NEAR_COARSE coarse clusters nearest its own
    (their centres: the mean of their children), which keeps the cost O(k^1.5 d), not O(k^2 d).
    """
    k = len(centroids)
    m = min(_REFINE_NEIGHBOURS, k)
    n_coarse = int(parent.max()) + 1
    counts = np.bincount(parent, minlength=n_coarse)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    coarse = segment_sums(centroids, bounds) / np.maximum(counts, 1)[:, None].astype(np.float32)
    c_norms = _sq_norms(centroids)
    near_coarse = _nearest(coarse, coarse, min(_NEAR_COARSE, n_coarse))
    out = np.empty((k, m), dtype=np.int64)
    for c in range(n_coarse):
        coarse_ids = np.union1d(near_coarse[c], [c])
        cand = np.concatenate([np.arange(bounds[p], bounds[p + 1]) for p in coarse_ids])
        if len(cand) < m:  # tiny trees: fall back to every centroid
            cand = np.arange(k)
        mine = np.arange(bounds[c], bounds[c + 1])
        dist = c_norms[cand][None, :] - 2.0 * (centroids[mine] @ centroids[cand].T)
        dist[np.arange(len(mine)), np.searchsorted(cand, mine)] = -np.inf  # itself first
        best = np.argpartition(dist, m - 1, axis=1)[:, :m]
        out[mine] = np.sort(cand[best], axis=1)
    return out


def _nearest(points: np.ndarray, centres: np.ndarray, m: int) -> np.ndarray:
    """(len(points), m) ids of each point's m nearest centres (L2), in no particular order."""
    dist = _sq_norms(centres)[None, :] - 2.0 * (points @ centres.T)
    return np.argpartition(dist, m - 1, axis=1)[:, :m]


def refine(x: np.ndarray, labels: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Lloyd rounds in the full space where a row may only move among its centroid's nearest
    centroids (which may belong to another coarse cluster: this repairs the two-level
    k-means' hard coarse boundaries)."""
    k = len(parent)
    centroids = cluster_means(x, labels, np.zeros((k, x.shape[1]), dtype=np.float32))
    counts = np.bincount(labels, minlength=k)
    for round_ in range(_REFINE_ROUNDS):
        if round_:  # the means of the moved clusters (none after the last round: never read)
            centroids = cluster_means(x, labels, centroids)
            counts = np.bincount(labels, minlength=k)
        near = _neighbour_lists(centroids, parent)
        c_norms = np.where(counts > 0, _sq_norms(centroids), np.inf)  # empty: no centroid
        order = np.argsort(labels, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(counts)))
        for c in np.nonzero(counts)[0]:
            checkpoint()
            rows = order[bounds[c] : bounds[c + 1]]
            cand = near[c]
            dist = c_norms[cand][None, :] - 2.0 * (x[rows] @ centroids[cand].T)
            labels[rows] = cand[dist.argmin(axis=1)]
    return labels


def _split(x_rows: np.ndarray, rows: np.ndarray, block_size: int, out: list[np.ndarray]) -> None:
    """Cut `rows` (their vectors: x_rows) at the median of their principal axis until no
    piece exceeds block_size."""
    if len(rows) <= block_size:
        out.append(np.sort(rows))
        return
    centred = x_rows - x_rows.mean(axis=0)
    axis = centred[np.argmax(_sq_norms(centred))].copy()
    for _ in range(_SPLIT_POWER_ITERS):  # from the farthest row: enough to find a good cut
        nxt = centred.T @ (centred @ axis)
        norm = float(np.sqrt(nxt @ nxt))
        if norm == 0.0:
            break
        axis = nxt / norm
    rank = np.argsort(centred @ axis, kind="stable")
    half = len(rows) // 2
    for part in (rank[:half], rank[half:]):
        _split(x_rows[part], rows[part], block_size, out)


def form_blocks(routing: np.ndarray, block_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Partition rows 0..n-1 into blocks of at most block_size similar rows.

    Returns the blocks in block-id order, each an ascending array of row indices.
    """
    n = len(routing)
    if n == 0:
        return []
    k = -(-n // block_size)
    if k == 1:
        return [np.arange(n)]
    sample = routing[sample_rows(n, _PCA_SAMPLE, rng)]
    mu = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    basis = pca_basis(sample - mu, _KMEANS_DIMS, rng)
    labels, parent, k = _two_level(project(routing, mu, basis), block_size, rng)
    labels = refine(routing, labels, parent)
    return split_clusters(routing, labels, k, block_size)


def split_clusters(routing: np.ndarray, labels: np.ndarray, k: int,
                   block_size: int) -> list[np.ndarray]:
    """Clusters 0..k-1 of `labels` as blocks, the oversized ones cut by _split, in label order."""
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=k))))
    blocks: list[np.ndarray] = []
    for c in range(k):
        if bounds[c + 1] > bounds[c]:
            rows = order[bounds[c] : bounds[c + 1]]
            _split(routing[rows], rows, block_size, blocks)
    return blocks


def row_codes(routing, order: np.ndarray, offsets: np.ndarray, mu: np.ndarray,
              projection: np.ndarray, level: int) -> tuple[np.ndarray, ...]:
    """(codes, scale, residual, norm, signs, nibbles, sketches, block_sums) of routing[order]:
    the int8 and int4 row copies kernels.topk_blocks_int8 reads, the sign codes (as
    sign_codes), each row's 64-bit sketch against mu and the int8 projection at quantisation
    level `level` (the sketch of a query, bit for bit), and per block (rows
    offsets[b]:offsets[b + 1] of routing[order]) the float32 sum of its rows. One kernel pass
    per chunk of rows (kernels.row_codes), so the rows are gathered once, and a cosine
    segment's unit rows are never all in memory."""
    n, dim = len(order), routing.shape[1]
    words = -(-dim // 64)
    out = (np.empty((n, dim), np.int8), np.empty(n, np.float32), np.empty(n, np.float32),
           np.empty(n, np.float32), np.empty((n, words), np.uint64),
           np.empty((n, words * 32), np.uint8), np.empty(n, np.uint64))
    sums = np.zeros((len(offsets) - 1, dim), np.float32)
    row_blocks = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    mu = np.ascontiguousarray(mu, dtype=np.float32)
    projection = np.ascontiguousarray(projection, dtype=np.int8)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        rows = np.ascontiguousarray(routing[order[start:stop]], dtype=np.float32)
        *parts, block_sums = kernels.row_codes(rows, mu, projection, level, row_blocks[start:stop])
        for target, part in zip(out, parts):
            target[start:stop] = part
        first = row_blocks[start]
        sums[first : first + len(block_sums)] += block_sums  # a block cut by the chunk: two parts
        checkpoint()
    return (*out, sums)


def sign_codes(routing: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """(n, ceil(d / 64)) uint64 sign codes of (n, d) routing-space rows (queries; a segment's
    rows get theirs from row_codes, bit for bit the same): bit i of word i // 64 is set iff
    coordinate i of the row minus `mu` is > 0; padding bits are zero. One float32 subtraction
    and comparison per coordinate, so a query's code matches however it is batched."""
    n, dim = routing.shape
    codes = np.zeros((n, -(-dim // 64) * 8), dtype=np.uint8)
    centred = np.asarray(routing, dtype=np.float32) - np.asarray(mu, dtype=np.float32)
    bits = np.packbits(centred > 0, axis=1, bitorder="little")
    codes[:, : bits.shape[1]] = bits
    return codes.view("<u8").astype(np.uint64, copy=False)
