// Ranking by Hamming distance (a counting sort; the popcounts come from the active level's
// hamming64) and by value (a selection over 64-bit keys).  Built for the baseline ISA.
#include "pomaidb/rank.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace pomai {
namespace {

constexpr std::size_t kDistances = 65;  // popcount of a 64-bit word: 0..64

// `order` (n slots) receives every id in rank order; only the first `count` are kept.  Placing
// them all avoids a branch on the slot that mispredicts for about count / n of the codes.
void rank_one(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
              std::uint64_t query, std::size_t count, std::uint32_t* distance,
              std::int64_t* order, std::int64_t* out) {
  kernels.hamming64(codes, n, query, distance);
  std::array<std::size_t, kDistances + 1> next{};
  for (std::size_t i = 0; i < n; ++i) ++next[distance[i] + 1];
  for (std::size_t h = 1; h <= kDistances; ++h) next[h] += next[h - 1];
  // Ids are visited ascending, so each distance's ids land in id order.
  for (std::size_t i = 0; i < n; ++i) order[next[distance[i]]++] = static_cast<std::int64_t>(i);
  std::copy(order, order + count, out);
}

// A key whose ascending order is the rank order: value descending, then column ascending.
// Unique per column, so a selection over keys is deterministic.
std::uint64_t rank_key(float value, std::size_t column) {
  const float v = value + 0.0f;  // -0.0 becomes +0.0: equal values, equal keys
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  // Unsigned order of `ascending` is the float order; NaN takes 0, below -inf.
  std::uint32_t ascending = (bits >> 31) != 0 ? ~bits : bits | 0x80000000u;
  if (std::isnan(v)) ascending = 0;
  return (static_cast<std::uint64_t>(~ascending) << 32) | column;
}

// Keys at or below a threshold taken from a strided sample of n keys: usually a few more than
// `count` of them, moved to `out` in one branchless pass; 0 when the sample says the
// selection would keep most keys anyway.  Returns how many were kept.
std::size_t keys_below_sampled_threshold(const std::uint64_t* keys, std::size_t n,
                                         std::size_t count, std::uint64_t* out) {
  constexpr std::size_t kSamples = 64;
  if (n <= 4 * kSamples || count >= n / 2) return 0;
  std::array<std::uint64_t, kSamples> sample{};
  for (std::size_t s = 0; s < kSamples; ++s) sample[s] = keys[s * n / kSamples];
  const std::size_t expected = (count * kSamples + n - 1) / n;  // count's rank in the sample
  const std::size_t rank = std::min(kSamples - 1, expected + expected / 2 + 3);
  std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank),
                   sample.end());
  const std::uint64_t threshold = sample[rank];
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    out[kept] = keys[i];
    kept += keys[i] <= threshold ? 1 : 0;
  }
  return kept;
}

// Moves the `count` smallest of n distinct keys to out[0, count), sorted if asked.  If at
// least `count` keys pass the sampled threshold, the `count` smallest are among them, so the
// exact selection runs on those few: the result never depends on the sample, only the speed
// does.
void smallest_keys(const std::uint64_t* keys, std::size_t n, std::size_t count, bool sorted,
                   std::uint64_t* out) {
  std::size_t pool = keys_below_sampled_threshold(keys, n, count, out);
  if (pool < count) {
    std::copy(keys, keys + n, out);
    pool = n;
  }
  std::nth_element(out, out + count, out + pool);
  if (sorted) std::sort(out, out + count);
}

}  // namespace

void rank_by_value(const float* values, std::size_t nq, std::size_t cols, std::size_t count,
                   std::int64_t* out, bool sorted) {
  std::vector<std::uint64_t> keys(cols);
  std::vector<std::uint64_t> kept(cols);
  for (std::size_t j = 0; j < nq; ++j) {
    const float* row = values + j * cols;
    for (std::size_t c = 0; c < cols; ++c) keys[c] = rank_key(row[c], c);
    smallest_keys(keys.data(), cols, count, sorted, kept.data());
    for (std::size_t i = 0; i < count; ++i) {
      out[j * count + i] = static_cast<std::int64_t>(kept[i] & 0xFFFFFFFFu);
    }
  }
}

void rank_by_hamming64(const KernelTable& kernels, const std::uint64_t* codes, std::size_t n,
                       const std::uint64_t* queries, std::size_t nq, std::size_t count,
                       std::int64_t* out) {
  std::vector<std::uint32_t> distance(n);
  std::vector<std::int64_t> order(n);
  for (std::size_t j = 0; j < nq; ++j) {
    rank_one(kernels, codes, n, queries[j], count, distance.data(), order.data(),
             out + j * count);
  }
}

void merge_ranked(const std::vector<RankedPart>& parts, std::size_t nq, std::size_t k,
                  MergedHit* out) {
  // Score keys as rank_key's, without its column: ascending key = score descending.
  const auto ahead = [](const MergedHit& a, const MergedHit& b) {
    const std::uint64_t ka = rank_key(a.score, 0);
    const std::uint64_t kb = rank_key(b.score, 0);
    if (ka != kb) return ka < kb;
    if (a.id != b.id) return a.id < b.id;
    return a.part != b.part ? a.part < b.part : a.row < b.row;
  };
  std::vector<MergedHit> candidates;
  for (std::size_t j = 0; j < nq; ++j) {
    candidates.clear();
    for (std::size_t p = 0; p < parts.size(); ++p) {
      const RankedPart& part = parts[p];
      for (std::size_t c = 0; c < part.cols; ++c) {
        const std::int64_t row = part.rows[j * part.cols + c];
        if (row < 0) continue;
        candidates.push_back({part.scores[j * part.cols + c],
                              part.ids[static_cast<std::size_t>(row)],
                              static_cast<std::int64_t>(p), row});
      }
    }
    const std::size_t kept = std::min(k, candidates.size());
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(kept),
                      candidates.end(), ahead);
    MergedHit* dst = out + j * k;
    std::copy(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(kept), dst);
    for (std::size_t i = kept; i < k; ++i) dst[i] = {0.0f, 0, -1, -1};
  }
}

}  // namespace pomai
