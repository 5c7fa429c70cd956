// WSBR block selection (see pomaidb/route.h).  Built for the baseline ISA without FMA, so every
// float operation rounds once, as numpy's do; the integer dot products come from the active
// level's dot_i8_rows.
#include "pomaidb/route.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <vector>

#include "pomaidb/rank.h"

namespace pomai {
namespace {

// wsbr.quantize of one row: scaled so its largest |component| is `level`, rounded half to
// even (np.rint); a zero row stays zero.  Returns max |row|.
float quantize_row(const float* row, std::size_t dim, float level, std::int8_t* out) {
  float amax = 0.0f;
  for (std::size_t i = 0; i < dim; ++i) amax = std::max(amax, std::fabs(row[i]));
  const float scale = amax > 0.0f ? level / amax : 0.0f;
  for (std::size_t i = 0; i < dim; ++i) {
    out[i] = static_cast<std::int8_t>(std::nearbyint(row[i] * scale));
  }
  return amax;
}

// Per-query scratch, sized once per call.
struct Scratch {
  std::vector<float> centred;
  std::vector<std::int8_t> q8;
  std::vector<std::int32_t> dots;
  std::vector<std::int64_t> candidates;
  std::vector<float> est;
  std::vector<std::int64_t> chosen;
};

std::uint64_t sketch(const KernelTable& kernels, const RoutingTable& t, const float* routing_row,
                     Scratch& s) {
  for (std::size_t i = 0; i < t.dim; ++i) s.centred[i] = routing_row[i] - t.mu[i];
  quantize_row(s.centred.data(), t.dim, t.level, s.q8.data());
  static constexpr auto kBits = [] {
    std::array<std::int64_t, kSketchBits> ids{};
    std::iota(ids.begin(), ids.end(), 0);
    return ids;
  }();
  kernels.dot_i8_rows(t.projection, t.dim, kBits.data(), kSketchBits, s.q8.data(), s.dots.data());
  std::uint64_t code = 0;
  for (std::size_t j = 0; j < kSketchBits; ++j) {
    code |= static_cast<std::uint64_t>(s.dots[j] > 0) << j;
  }
  return code;
}

void select_one(const KernelTable& kernels, const RoutingTable& t, const float* routing_row,
                const float* query, std::size_t top, std::size_t widen, Scratch& s,
                std::int64_t* out) {
  const std::uint64_t code = sketch(kernels, t, routing_row, s);
  const bool rerank = widen > 0 && top < t.n_blocks;
  const std::size_t shortlist = rerank ? std::min(top + widen, t.n_blocks) : top;
  rank_by_hamming64(kernels, t.signatures, t.n_blocks, &code, 1, shortlist, s.candidates.data());
  if (!rerank) {
    std::copy_n(s.candidates.data(), top, out);
    return;
  }
  const float amax = quantize_row(query, t.dim, t.level, s.q8.data());
  kernels.dot_i8_rows(t.centroids, t.dim, s.candidates.data(), shortlist, s.q8.data(),
                      s.dots.data());
  const float gain = amax / t.level;
  for (std::size_t c = 0; c < shortlist; ++c) {
    const auto b = static_cast<std::size_t>(s.candidates[c]);
    float e = t.alpha[b] * static_cast<float>(s.dots[c]);
    if (t.l2) {
      e = e * gain;
      e = e + t.beta[b];
    }
    s.est[c] = e;
  }
  rank_by_value(s.est.data(), 1, shortlist, top, s.chosen.data());
  for (std::size_t i = 0; i < top; ++i) {
    out[i] = s.candidates[static_cast<std::size_t>(s.chosen[i])];
  }
}

}  // namespace

void select_blocks(const KernelTable& kernels, const RoutingTable& table,
                   const float* routing_queries, const float* queries, std::size_t nq,
                   std::size_t top, std::size_t widen, std::int64_t* out) {
  top = std::min(top, table.n_blocks);
  const std::size_t shortlist = std::min(top + widen, table.n_blocks);
  Scratch s{std::vector<float>(table.dim), std::vector<std::int8_t>(table.dim),
            std::vector<std::int32_t>(std::max(shortlist, kSketchBits)),
            std::vector<std::int64_t>(shortlist), std::vector<float>(shortlist),
            std::vector<std::int64_t>(top)};
  for (std::size_t j = 0; j < nq; ++j) {
    select_one(kernels, table, routing_queries + j * table.dim, queries + j * table.dim, top,
               widen, s, out + j * top);
  }
}

}  // namespace pomai
