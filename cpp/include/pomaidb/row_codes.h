// The per-row data a WSBR build stores beside a segment (wsbr.py's sidecar sections
// row_codes .. row_norm, row_signs and row_nibbles, and the row sketches the block signatures
// are voted from), and the sums of each block's rows that its centroid is the mean of, for a chunk of
// routing-space rows in one pass: the build reads its rows once for all of these instead of
// once each.  Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pomaidb/kernels.h"

namespace pomai {

// Where row i's results go (m rows, dim columns, words = ceil(dim / 64)).
struct RowCodesOut {
  std::int8_t* codes;        // m x dim: row scaled so max |component| is 127, rounded
  float* scale;              // m: float32(max |row| / 127), 0 for a zero row
  float* residual;           // m: >= |row - codes * scale|, summed in double, rounded up
  float* norm;               // m: >= |row|, summed in double, rounded up
  std::uint64_t* signs;      // m x words: bit c set iff float32(row[c] - mu[c]) > 0
  // m x i4_row_bytes(dim) (pomaidb/int4.h): the row scaled so max |component| is 7 (the same
  // max as codes'), rounded, packed two to a byte
  std::uint8_t* nibbles;
  std::uint64_t* sketches;   // m: sketch_row of the row (pomaidb/sketch.h)
  // (row_blocks[m - 1] - row_blocks[0] + 1) x dim, zeroed by the caller: row i is added to
  // row row_blocks[i] - row_blocks[0], in float32 and in row order.
  float* block_sums;
};

// The sketch inputs of one segment: mu (dim), the int8 projection (kSketchBits x dim) and the
// quantisation level L.
struct SketchBasis {
  const float* mu;
  const std::int8_t* projection;
  float level;
};

// row_blocks (m, non-decreasing) names the block of each row, for out.block_sums.
void row_codes(const KernelTable& kernels, const float* rows, std::size_t m, std::size_t dim,
               const SketchBasis& basis, const std::int64_t* row_blocks, const RowCodesOut& out);

}  // namespace pomai
