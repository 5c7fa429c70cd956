// Block-routed top-k that reads an int8 copy of the rows first and the float rows only for the
// few rows that can still make the top k (WSBR's scan, pomaidb_core/wsbr.py).  The int8 pass
// only discards rows that provably cannot win; an optional int4 pass before it (Int8Rows'
// nibbles) keeps a query's best rows by estimate, trading that proof for half the bytes.
// Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pomaidb/kernels.h"
#include "pomaidb/search.h"

namespace pomai {

// An int8 copy of a segment's rows in routing space (unit rows for kCosine, the rows as they
// are otherwise): routing row i ~ codes[i] * scale[i], off by residual[i] in L2 norm.
struct Int8Rows {
  const std::int8_t* codes;  // vectors.rows x vectors.cols
  const float* scale;        // vectors.rows
  const float* residual;     // vectors.rows: |routing row - codes * scale|
  const float* norm;         // vectors.rows: |routing row|
  // Optional (null: none): the routing rows at level 7 with the same max |component|, packed
  // two to a byte (pomaidb/int4.h), vectors.rows x i4_row_bytes(cols) bytes: an int4 pass
  // ranks a query's rows by them first (see compute_topk_blocks_int8).
  const std::uint8_t* nibbles = nullptr;
};

// The optional sign stage before the int8 pass.  Bit i of a row's code is set iff coordinate i
// of its routing row minus the segment's centre is > 0 (`words` 64-bit words a row, padding
// bits zero), and the query's code is made the same way.  Per query, of the allowed rows of
// its blocks only those whose Hamming distance to the query's code is at most
//   max(floor(min(D, d_k + sigmas * sqrt(d_k * (1 - d_k / D)))), the keep_min-th smallest)
// go on, d_k being the k-th smallest distance and D = vectors.cols: a band of `sigmas`
// binomial standard deviations above the k-th nearest code, so a query whose codes separate
// its neighbours poorly keeps more rows.  When that is more than 40% of the rows, all are
// scored (scattered rows cost about 2.5 times streamed ones).  48 bytes a 384-d row instead of
// 384 lets a query route to more blocks and still read fewer bytes (wsbr.py measures it).
struct SignCodes {
  const std::uint64_t* rows;     // vectors.rows x words
  const std::uint64_t* queries;  // queries.rows x words
  std::size_t words;
  double sigmas;         // >= 0
  std::size_t keep_min;  // >= 1
};

// compute_topk_blocks, same outputs bit for bit (with `signs`: compute_topk over the rows the
// sign stage keeps; with nibbles, where a query has more than 2 * max(4k, 32) such rows:
// over the max(4k, 32) best by their int4 estimate).  Per query: every allowed row of its blocks
// gets an interval certain to hold its float score (int8 estimate +- a Cauchy-Schwarz bound on
// both quantisation errors, plus a margin for float rounding); rows whose upper end is below
// the k-th best lower end cannot make the top k, and only the rest are scored exactly.
void compute_topk_blocks_int8(const KernelTable& kernels, const BlockTopkRequest& request,
                              const Int8Rows& rows, const SignCodes* signs, float* out_scores,
                              std::int64_t* out_rows);

}  // namespace pomai
