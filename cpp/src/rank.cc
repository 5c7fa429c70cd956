// Counting-sort ranking of codes by Hamming distance.  Built for the baseline ISA; the
// popcounts come from the active level's hamming64.
#include "pomaidb/rank.h"

#include <array>
#include <vector>

namespace pomai {
namespace {

constexpr std::size_t kDistances = 65;  // popcount of a 64-bit word: 0..64

void rank_one(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
              std::uint64_t query, std::size_t count, std::uint32_t* distance,
              std::int64_t* out) {
  kernels.hamming64(codes, n, query, distance);
  std::array<std::size_t, kDistances + 1> next{};
  for (std::size_t i = 0; i < n; ++i) ++next[distance[i] + 1];
  for (std::size_t h = 1; h <= kDistances; ++h) next[h] += next[h - 1];
  // Ids are visited ascending, so each distance's ids land in id order; slots at or past
  // `count` belong to codes that did not make the cut.
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t slot = next[distance[i]]++;
    if (slot < count) out[slot] = static_cast<std::int64_t>(i);
  }
}

}  // namespace

void rank_by_hamming64(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
                       const std::uint64_t* queries, std::size_t nq, std::size_t count,
                       std::int64_t* out) {
  std::vector<std::uint32_t> distance(n);
  for (std::size_t j = 0; j < nq; ++j) {
    rank_one(kernels, codes, n, queries[j], count, distance.data(), out + j * count);
  }
}

}  // namespace pomai
