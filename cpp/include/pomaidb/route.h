// WSBR block selection for a batch of queries against one segment's routing table (steps 1-3 of
// pomaidb_core/wsbr.py's docstring) in one call: query sketch, Hamming shortlist, centroid
// scores, selection.  Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pomaidb/kernels.h"
#include "pomaidb/sketch.h"

namespace pomai {

// One segment's routing table, as stored in its WSBR sidecar.
struct RoutingTable {
  std::size_t dim;
  std::size_t n_blocks;
  float level;                     // quantisation level L: quantised values are in [-L, L]
  bool l2;                         // centroid scores take the l2 form (gain and beta)
  const float* mu;                 // dim
  const std::int8_t* projection;   // kSketchBits x dim
  const std::uint64_t* signatures; // n_blocks
  const std::int8_t* centroids;    // n_blocks x dim
  const float* alpha;              // n_blocks
  const float* beta;               // n_blocks
  // The centroids packed by pack_i4_rows (pomaidb/int4.h), or null: the same integers in half
  // the bytes, for tables whose values lie in [-8, 7] (kernels.SegmentTables packs them once).
  const std::uint8_t* packed_centroids = nullptr;
};

// For each of nq queries, the min(top, n_blocks) blocks WSBR scores, best first:
//   sketch of routing_queries[j] (its routing-space row), the top + widen blocks nearest in
//   (Hamming distance, block id) order, re-ranked by (centroid score of queries[j] descending,
//   shortlist position) when widen > 0 and top < n_blocks.
// Every float step is the one numpy does in wsbr.py (one rounding per operation, integer
// dot products), so the selection equals the Python composition bit for bit.
// out is (nq, min(top, n_blocks)).
void select_blocks(const KernelTable& kernels, const RoutingTable& table,
                   const float* routing_queries, const float* queries, std::size_t nq,
                   std::size_t top, std::size_t widen, std::int64_t* out);

}  // namespace pomai
