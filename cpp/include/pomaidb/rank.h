// Ranking: 64-bit codes by Hamming distance to a query code, and the columns of a score matrix
// by value (block routing's candidate and shortlist steps).  Pure C++: callers validate inputs
// and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pomaidb/kernels.h"

namespace pomai {

// For each of the nq query codes, the ids of the `count` codes nearest to it in (popcount(code ^
// query), id) order: out is (nq, count), count <= n.  A counting sort over the 65 possible
// distances, O(n) per query whatever count is.
void rank_by_hamming64(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
                       const std::uint64_t* queries, std::size_t nq, std::size_t count,
                       std::int64_t* out);

// For each of the nq rows of `values` (nq, cols), the columns of its `count` largest values,
// best first, equal values by column ascending; NaN ranks below every number (-inf included).
// out is (nq, count), count <= cols < 2^32. With sorted = false the same columns come in no
// particular order (a caller that only needs the set skips the sort).
void rank_by_value(const float* values, std::size_t nq, std::size_t cols, std::size_t count,
                   std::int64_t* out, bool sorted = true);

// One ranked list of a merge: (nq, cols) scores and rows, each query's best first, padded
// with row -1; ids[row] is a row's id (every row given is below n_ids).
struct RankedPart {
  const float* scores;
  const std::int64_t* rows;
  std::size_t cols;
  const std::uint64_t* ids;
};

// The hit of a merge: a row of one part and what it is ranked by.
struct MergedHit {
  float score;
  std::uint64_t id;
  std::int64_t part;
  std::int64_t row;
};

// For each of the nq queries, its k best hits over all parts (padding skipped), best first,
// in out[j * k ...): score descending, then id ascending, then part (a stable sort of the
// parts' lists in order, by score then id); NaN scores rank below every number.  Slots
// past a query's hits get part -1.
void merge_ranked(const std::vector<RankedPart>& parts, std::size_t nq, std::size_t k,
                  MergedHit* out);

}  // namespace pomai
