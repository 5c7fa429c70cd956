// WSBR block selection (see pomaidb/route.h).  Built for the baseline ISA without FMA, so every
// float operation rounds once, as numpy's do; the integer dot products come from the active
// level's dot_i8_rows, or its dot_i4_rows for a packed centroid table (the same integers).
#include "pomaidb/route.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "pomaidb/int4.h"
#include "pomaidb/prefetch.h"
#include "pomaidb/rank.h"
#include "pomaidb/sketch.h"

namespace pomai {
namespace {

// A shortlist of at least 1 / kStreamShare of the blocks has its centroids scored by reading
// the whole table in storage order, one stream the prefetcher follows, instead of its rows
// scattered in Hamming order: streamed rows cost a fraction of scattered ones. Measured
// interleaved through the engine on pypi-100k (four 25k-row segments, shortlists of half
// their blocks): p50 13-14% lower; with the caches flushed before each query, selections
// over shortlists of 10-60% of the blocks took 23-35% less time streamed.
constexpr std::size_t kStreamShare = 4;

bool streams(std::size_t shortlist, std::size_t n_blocks) {
  return kStreamShare * shortlist >= n_blocks;
}

// Per-query scratch, sized once per call.
struct Scratch {
  std::vector<float> centred;
  std::vector<std::int8_t> q8;
  std::vector<std::int32_t> dots;
  std::vector<std::int64_t> candidates;
  std::vector<float> est;
  std::vector<std::int64_t> chosen;
  std::vector<std::int64_t> every;  // 0..n_blocks-1 when the shortlist's centroids stream
  std::vector<std::int32_t> block_dots;
};

// The dots of centroids `ids` with the quantised query, from the packed table when there is one.
void centroid_dots(const KernelTable& kernels, const RoutingTable& t, const std::int64_t* ids,
                   std::size_t n, const std::int8_t* q8, std::int32_t* out) {
  if (t.packed_centroids != nullptr) {
    kernels.dot_i4_rows(t.packed_centroids, t.dim, ids, n, q8, out);
  } else {
    kernels.dot_i8_rows(t.centroids, t.dim, ids, n, q8, out);
  }
}

// The dots of the shortlist's centroids, which lie scattered in the table (Hamming order):
// each chunk's rows are asked for a chunk ahead, so their loads overlap the work before them
// (a 25k-row pypi segment: 40 -> 35 us a selection).
void scattered_dots(const KernelTable& kernels, const RoutingTable& t, const std::int64_t* ids,
                    std::size_t n, const std::int8_t* q8, std::int32_t* out) {
  constexpr std::size_t kChunk = 16;
  const bool packed = t.packed_centroids != nullptr;
  const std::size_t row_bytes = packed ? i4_row_bytes(t.dim) : t.dim;
  const void* table = packed ? static_cast<const void*>(t.packed_centroids) : t.centroids;
  const auto prefetch = [&](std::size_t from) {
    for (std::size_t c = from; c < std::min(from + kChunk, n); ++c) {
      prefetch_bytes(static_cast<const char*>(table) + static_cast<std::size_t>(ids[c]) * row_bytes,
                     row_bytes);
    }
  };
  prefetch(0);
  for (std::size_t start = 0; start < n; start += kChunk) {
    prefetch(start + kChunk);
    centroid_dots(kernels, t, ids + start, std::min(kChunk, n - start), q8, out + start);
  }
}

void select_one(const KernelTable& kernels, const RoutingTable& t, const float* routing_row,
                const float* query, std::size_t top, std::size_t widen, Scratch& s,
                std::int64_t* out) {
  const std::uint64_t code = sketch_row(kernels, routing_row, t.dim, t.mu, t.projection, t.level,
                                        {s.centred.data(), s.q8.data(), s.dots.data()});
  const bool rerank = widen > 0 && top < t.n_blocks;
  const std::size_t shortlist = rerank ? std::min(top + widen, t.n_blocks) : top;
  rank_by_hamming64(kernels, t.signatures, t.n_blocks, &code, 1, shortlist, s.candidates.data());
  if (!rerank) {
    std::copy_n(s.candidates.data(), top, out);
    return;
  }
  const float amax = quantize_row(query, t.dim, t.level, s.q8.data());
  const bool every = streams(shortlist, t.n_blocks);
  if (every) {
    // Every centroid, in storage order (see kStreamShare): the same exact integers.
    centroid_dots(kernels, t, s.every.data(), t.n_blocks, s.q8.data(), s.block_dots.data());
  } else {
    scattered_dots(kernels, t, s.candidates.data(), shortlist, s.q8.data(), s.dots.data());
  }
  const float gain = amax / t.level;
  for (std::size_t c = 0; c < shortlist; ++c) {
    const auto b = static_cast<std::size_t>(s.candidates[c]);
    const std::int32_t dot = every ? s.block_dots[b] : s.dots[c];
    float e = t.alpha[b] * static_cast<float>(dot);
    if (t.l2) {
      e = e * gain;
      e = e + t.beta[b];
    }
    s.est[c] = e;
  }
  rank_by_value(s.est.data(), 1, shortlist, top, s.chosen.data(), /*sorted=*/false);
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
            std::vector<std::int64_t>(top), {}, {}};
  if (top < table.n_blocks && widen > 0 && streams(shortlist, table.n_blocks)) {
    s.every.resize(table.n_blocks);
    std::iota(s.every.begin(), s.every.end(), std::int64_t{0});
    s.block_dots.resize(table.n_blocks);
  }
  for (std::size_t j = 0; j < nq; ++j) {
    select_one(kernels, table, routing_queries + j * table.dim, queries + j * table.dim, top,
               widen, s, out + j * top);
  }
}

}  // namespace pomai
