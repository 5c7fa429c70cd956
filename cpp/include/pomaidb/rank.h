// Ranking 64-bit codes by Hamming distance to a query code (block routing's first step).
// Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pomaidb/kernels.h"

namespace pomai {

// For each of the nq query codes, the ids of the `count` codes nearest to it in (popcount(code ^
// query), id) order: out is (nq, count), count <= n.  A counting sort over the 65 possible
// distances, O(n) per query whatever count is.
void rank_by_hamming64(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
                       const std::uint64_t* queries, std::size_t nq, std::size_t count,
                       std::int64_t* out);

}  // namespace pomai
