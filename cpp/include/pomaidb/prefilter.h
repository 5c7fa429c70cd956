// Block-routed top-k that reads an int8 copy of the rows first and the float rows only for the
// few rows that can still make the top k (WSBR's scan, pomaidb_core/wsbr.py).  The answer is
// exactly compute_topk_blocks': the int8 pass only discards rows that provably cannot win.
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
};

// compute_topk_blocks, same outputs bit for bit.  Per query: every allowed row of its blocks
// gets an interval certain to hold its float score (int8 estimate +- a Cauchy-Schwarz bound on
// both quantisation errors, plus a margin for float rounding); rows whose upper end is below
// the k-th best lower end cannot make the top k, and only the rest are scored exactly.
void compute_topk_blocks_int8(const KernelTable& kernels, const BlockTopkRequest& request,
                              const Int8Rows& rows, float* out_scores, std::int64_t* out_rows);

}  // namespace pomai
