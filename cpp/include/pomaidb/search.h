// Scoring and fused top-k selection over a row-major float32 matrix, on a KernelTable.
//
// Scores are "higher is more similar": inner product for kIp; dot / (|q| |x|) for kCosine,
// defined as 0 when either norm is 0; the negated squared Euclidean distance for kL2.
// Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pomaidb/kernels.h"

namespace pomai {

enum class Metric { kIp, kCosine, kL2 };

struct Matrix {
  const float* data;  // rows * cols floats, row-major, rows `cols` apart
  std::size_t rows;
  std::size_t cols;  // >= 1
};

struct RowRange {
  std::size_t start;  // first row
  std::size_t end;    // one past the last row; == start for an empty range
};

// Sorted, disjoint, non-empty ranges covering exactly the rows of `ranges` (which may overlap,
// touch, be empty or come in any order).
std::vector<RowRange> normalize_ranges(std::vector<RowRange> ranges);

// out[j * vectors.rows + i] = score(queries row j, vectors row i).
void compute_scores(const KernelTable& kernels, Matrix vectors, Matrix queries, Metric metric,
                    float* out);

struct TopkRequest {
  Matrix vectors;
  Matrix queries;  // same cols as vectors
  Metric metric;
  std::size_t k;                // >= 1
  const std::uint8_t* mask;     // null, or vectors.rows flags: rows flagged 0 never qualify
  std::vector<RowRange> ranges;  // from normalize_ranges, within [0, vectors.rows)
};

// For each query, the k best qualifying rows: out_scores / out_rows are (queries.rows, k),
// best first, ties by row ascending; slots beyond the qualifying rows hold -inf and -1.
// Rows whose score is NaN never qualify.  Vectors are streamed once per call in blocks that
// stay in cache while every query is scored against them.
void compute_topk(const KernelTable& kernels, const TopkRequest& request, float* out_scores,
                  std::int64_t* out_rows);

struct BlockTopkRequest {
  Matrix vectors;
  Matrix queries;  // same cols as vectors
  Metric metric;
  std::size_t k;             // >= 1
  const std::uint8_t* mask;  // null, or vectors.rows flags: rows flagged 0 never qualify
  // Pairwise disjoint (possibly empty) ranges within vectors; the caller keeps them alive.
  std::span<const RowRange> blocks;
  // Query j considers the rows of blocks[query_blocks[p]] for query_block_ptr[j] <= p <
  // query_block_ptr[j + 1]: queries.rows + 1 non-decreasing offsets starting at 0, and block
  // ids below blocks.size(), in any order, repeats allowed.
  const std::int64_t* query_block_ptr;
  const std::int64_t* query_blocks;
};

// compute_topk where each query has its own rows, the union of its blocks (block-routed
// search).  Each block is read once and scored against all the queries that chose it; a query
// keeps one heap across all its blocks.  Outputs and order as compute_topk, and every score is
// bit-identical to the one compute_topk gives the same (row, query).
void compute_topk_blocks(const KernelTable& kernels, const BlockTopkRequest& request,
                         float* out_scores, std::int64_t* out_rows);

// out[i] = |vectors row i|.
void compute_l2_norms(const KernelTable& kernels, Matrix vectors, float* out);

}  // namespace pomai
