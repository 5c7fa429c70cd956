// The scan driver behind scores and top-k: splits the vectors into cache-sized blocks, runs the
// active distance kernel on a block for a tile of queries, turns raw dots / squared distances
// into scores, and (top-k) feeds them to one bounded heap per query.  Block-routed top-k groups
// its (query, block) pairs by block, so each block is read once for all the queries that chose
// it.  Built for the baseline ISA.
#include "pomaidb/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>

namespace pomai {
namespace {

// Rows per block: ~128 KiB of vectors, so a block read from memory for the first query tile is
// still in L2 for the following tiles.
std::size_t block_rows(std::size_t d) {
  constexpr std::size_t kBlockBytes = 128 * 1024;
  return std::clamp<std::size_t>(kBlockBytes / (d * sizeof(float)), 16, 1024);
}

// Queries scored per block pass in top-k: bounds the score buffer (kTileQueries * block rows).
constexpr std::size_t kTileQueries = 16;

float inverse_norm(float sq_norm) { return sq_norm > 0.0f ? 1.0f / std::sqrt(sq_norm) : 0.0f; }

std::vector<float> query_inverse_norms(const KernelTable& kernels, Matrix queries, Metric metric) {
  if (metric != Metric::kCosine) return {};
  std::vector<float> inv(queries.rows);
  kernels.dot_tile(queries.data, queries.rows, queries.cols, nullptr, 0, nullptr, 0, inv.data());
  for (float& v : inv) v = inverse_norm(v);
  return inv;
}

std::vector<const float*> query_pointers(Matrix queries) {
  std::vector<const float*> pointers(queries.rows);
  for (std::size_t j = 0; j < queries.rows; ++j) pointers[j] = queries.data + j * queries.cols;
  return pointers;
}

// A tile of queries: row pointers and, for cosine, their inverse norms (else null).
struct QueryTile {
  const float* const* q;
  const float* inv;
  std::size_t size;
};

// Raw kernel output for rows [first, first + rows) against a tile of queries, then turned into
// scores in place.  row_inv holds the rows' inverse norms for cosine; they are computed when
// fill_row_inv is set (the rows' first tile) and reused by later tiles.  Every entry point
// scores through here, so a (row, query) pair gets the same float whichever one it came from.
struct BlockScorer {
  const KernelTable& kernels;
  Matrix vectors;
  Metric metric;

  void score(std::size_t first, std::size_t rows, QueryTile tile, float* out,
             std::size_t out_stride, float* row_inv, bool fill_row_inv) const {
    const std::size_t d = vectors.cols;
    const float* x = vectors.data + first * d;
    const float* const* q = tile.q;
    const std::size_t nq = tile.size;
    if (metric == Metric::kL2) {
      kernels.l2sq_tile(x, rows, d, q, nq, out, out_stride);
      for (std::size_t j = 0; j < nq; ++j) {
        float* s = out + j * out_stride;
        for (std::size_t i = 0; i < rows; ++i) s[i] = -s[i];
      }
      return;
    }
    const bool cosine = metric == Metric::kCosine;
    float* want_norms = cosine && fill_row_inv ? row_inv : nullptr;
    kernels.dot_tile(x, rows, d, q, nq, out, out_stride, want_norms);
    if (!cosine) return;
    if (fill_row_inv) {
      for (std::size_t i = 0; i < rows; ++i) row_inv[i] = inverse_norm(row_inv[i]);
    }
    for (std::size_t j = 0; j < nq; ++j) {
      float* s = out + j * out_stride;
      const float qinv = tile.inv[j];
      for (std::size_t i = 0; i < rows; ++i) s[i] = s[i] * qinv * row_inv[i];
    }
  }
};

struct Candidate {
  float score;
  std::int64_t row;
};

// Heap order: a is "less" when it ranks better, so the heap's front is the worst kept candidate.
bool ranks_better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.row < b.row);
}

// The best `capacity` candidates seen so far, by (score, row): rows may come in any order, and
// a row must not be offered twice.
class BoundedHeap {
 public:
  explicit BoundedHeap(std::size_t capacity) : capacity_(capacity) { heap_.reserve(capacity); }

  void offer(float score, std::int64_t row) {
    if (heap_.size() < capacity_) {
      if (std::isnan(score)) return;
      heap_.push_back({score, row});
      std::push_heap(heap_.begin(), heap_.end(), ranks_better);
      return;
    }
    // Most candidates score below the worst kept one: one comparison rejects them.  Ties
    // and NaN (every comparison false) take the full (score, row) test.
    if (score < heap_.front().score || !ranks_better({score, row}, heap_.front())) return;
    std::pop_heap(heap_.begin(), heap_.end(), ranks_better);
    heap_.back() = {score, row};
    std::push_heap(heap_.begin(), heap_.end(), ranks_better);
  }

  // Writes k slots best first, padding with (-inf, -1).
  void write_sorted(std::size_t k, float* scores, std::int64_t* rows) {
    std::sort_heap(heap_.begin(), heap_.end(), ranks_better);
    for (std::size_t i = 0; i < k; ++i) {
      const bool filled = i < heap_.size();
      scores[i] = filled ? heap_[i].score : -std::numeric_limits<float>::infinity();
      rows[i] = filled ? heap_[i].row : -1;
    }
  }

 private:
  std::size_t capacity_;
  std::vector<Candidate> heap_;
};

bool any_set(const std::uint8_t* mask, std::size_t first, std::size_t rows) {
  return std::any_of(mask + first, mask + first + rows, [](std::uint8_t v) { return v != 0; });
}

void offer_block(BoundedHeap& heap, const float* scores, std::size_t first, std::size_t rows,
                 const std::uint8_t* mask) {
  for (std::size_t i = 0; i < rows; ++i) {
    if (mask != nullptr && mask[first + i] == 0) continue;
    heap.offer(scores[i], static_cast<std::int64_t>(first + i));
  }
}

std::span<const std::int64_t> blocks_of(const BlockTopkRequest& request, std::size_t j) {
  const auto lo = static_cast<std::size_t>(request.query_block_ptr[j]);
  const auto hi = static_cast<std::size_t>(request.query_block_ptr[j + 1]);
  return {request.query_blocks + lo, hi - lo};
}

// Rows query j's blocks hold, counting a repeated block again: a bound for its heap.
std::size_t candidate_rows(const BlockTopkRequest& request, std::size_t j) {
  std::size_t rows = 0;
  for (const std::int64_t b : blocks_of(request, j)) {
    const RowRange& r = request.blocks[static_cast<std::size_t>(b)];
    rows += r.end - r.start;
  }
  return rows;
}

// The queries that chose each block, ascending and each once: the (query, block) pairs of a
// request counting-sorted by block, so each block is scored once for all of its queries.
struct BlockQueries {
  std::vector<std::size_t> first;    // n_blocks + 1 offsets into `queries`
  std::vector<std::size_t> queries;  // query ids, grouped by block

  std::span<const std::size_t> queries_of(std::size_t block) const {
    return {queries.data() + first[block], first[block + 1] - first[block]};
  }
};

BlockQueries group_by_block(const BlockTopkRequest& request) {
  const std::size_t nq = request.queries.rows;
  std::vector<std::size_t> start(request.blocks.size() + 1, 0);
  for (std::size_t j = 0; j < nq; ++j) {
    for (const std::int64_t b : blocks_of(request, j)) ++start[static_cast<std::size_t>(b) + 1];
  }
  std::partial_sum(start.begin(), start.end(), start.begin());
  // Placing queries in ascending order puts a block's repeats next to each other.
  std::vector<std::size_t> placed(start.back());
  std::vector<std::size_t> cursor(start.begin(), start.end() - 1);
  for (std::size_t j = 0; j < nq; ++j) {
    for (const std::int64_t b : blocks_of(request, j)) {
      placed[cursor[static_cast<std::size_t>(b)]++] = j;
    }
  }
  BlockQueries grouped{std::vector<std::size_t>(start.size(), 0), {}};
  grouped.queries.reserve(placed.size());
  for (std::size_t b = 0; b + 1 < start.size(); ++b) {
    for (std::size_t p = start[b]; p < start[b + 1]; ++p) {
      if (p == start[b] || placed[p] != placed[p - 1]) grouped.queries.push_back(placed[p]);
    }
    grouped.first[b + 1] = grouped.queries.size();
  }
  return grouped;
}

}  // namespace

std::vector<RowRange> normalize_ranges(std::vector<RowRange> ranges) {
  std::erase_if(ranges, [](const RowRange& r) { return r.end <= r.start; });
  std::sort(ranges.begin(), ranges.end(),
            [](const RowRange& a, const RowRange& b) { return a.start < b.start; });
  std::vector<RowRange> merged;
  for (const RowRange& r : ranges) {
    if (!merged.empty() && r.start <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

void compute_scores(const KernelTable& kernels, Matrix vectors, Matrix queries, Metric metric,
                    float* out) {
  const std::vector<float> query_inv = query_inverse_norms(kernels, queries, metric);
  const std::vector<const float*> query_ptrs = query_pointers(queries);
  const QueryTile all{query_ptrs.data(), query_inv.empty() ? nullptr : query_inv.data(),
                      queries.rows};
  const BlockScorer scorer{kernels, vectors, metric};
  const std::size_t block = block_rows(vectors.cols);
  std::vector<float> row_inv(block);
  for (std::size_t first = 0; first < vectors.rows; first += block) {
    const std::size_t rows = std::min(block, vectors.rows - first);
    scorer.score(first, rows, all, out + first, vectors.rows, row_inv.data(), true);
  }
}

void compute_topk(const KernelTable& kernels, const TopkRequest& request, float* out_scores,
                  std::int64_t* out_rows) {
  const std::vector<float> query_inv =
      query_inverse_norms(kernels, request.queries, request.metric);
  const std::vector<const float*> query_ptrs = query_pointers(request.queries);
  const BlockScorer scorer{kernels, request.vectors, request.metric};
  std::size_t candidates = 0;
  for (const RowRange& r : request.ranges) candidates += r.end - r.start;
  const std::size_t nq = request.queries.rows;
  std::vector<BoundedHeap> heaps(nq, BoundedHeap(std::min(request.k, candidates)));

  const std::size_t block = block_rows(request.vectors.cols);
  std::vector<float> buffer(kTileQueries * block);
  std::vector<float> row_inv(block);
  for (const RowRange& range : request.ranges) {
    for (std::size_t first = range.start; first < range.end; first += block) {
      const std::size_t rows = std::min(block, range.end - first);
      if (request.mask != nullptr && !any_set(request.mask, first, rows)) continue;
      for (std::size_t q0 = 0; q0 < nq; q0 += kTileQueries) {
        const QueryTile tile{query_ptrs.data() + q0,
                             query_inv.empty() ? nullptr : query_inv.data() + q0,
                             std::min(kTileQueries, nq - q0)};
        scorer.score(first, rows, tile, buffer.data(), rows, row_inv.data(), q0 == 0);
        for (std::size_t j = 0; j < tile.size; ++j) {
          offer_block(heaps[q0 + j], buffer.data() + j * rows, first, rows, request.mask);
        }
      }
    }
  }
  for (std::size_t j = 0; j < nq; ++j) {
    heaps[j].write_sorted(request.k, out_scores + j * request.k, out_rows + j * request.k);
  }
}

void compute_topk_blocks(const KernelTable& kernels, const BlockTopkRequest& request,
                         float* out_scores, std::int64_t* out_rows) {
  const std::vector<float> query_inv =
      query_inverse_norms(kernels, request.queries, request.metric);
  const BlockScorer scorer{kernels, request.vectors, request.metric};
  const std::size_t nq = request.queries.rows;
  const std::size_t d = request.queries.cols;
  std::vector<BoundedHeap> heaps;
  heaps.reserve(nq);
  for (std::size_t j = 0; j < nq; ++j) {
    heaps.emplace_back(std::min(request.k, candidate_rows(request, j)));
  }
  const BlockQueries by_block = group_by_block(request);

  const std::size_t chunk = block_rows(d);
  std::vector<float> buffer(kTileQueries * chunk);
  std::vector<float> row_inv(chunk);
  const float* tile_q[kTileQueries];
  float tile_inv[kTileQueries];
  for (std::size_t b = 0; b < request.blocks.size(); ++b) {
    const std::span<const std::size_t> chosen_by = by_block.queries_of(b);
    if (chosen_by.empty()) continue;
    const RowRange range = request.blocks[b];
    for (std::size_t first = range.start; first < range.end; first += chunk) {
      const std::size_t rows = std::min(chunk, range.end - first);
      if (request.mask != nullptr && !any_set(request.mask, first, rows)) continue;
      for (std::size_t t0 = 0; t0 < chosen_by.size(); t0 += kTileQueries) {
        const std::size_t size = std::min(kTileQueries, chosen_by.size() - t0);
        for (std::size_t t = 0; t < size; ++t) {
          const std::size_t j = chosen_by[t0 + t];
          tile_q[t] = request.queries.data + j * d;
          tile_inv[t] = query_inv.empty() ? 0.0f : query_inv[j];
        }
        const QueryTile tile{tile_q, query_inv.empty() ? nullptr : tile_inv, size};
        scorer.score(first, rows, tile, buffer.data(), rows, row_inv.data(), t0 == 0);
        for (std::size_t t = 0; t < size; ++t) {
          offer_block(heaps[chosen_by[t0 + t]], buffer.data() + t * rows, first, rows,
                      request.mask);
        }
      }
    }
  }
  for (std::size_t j = 0; j < nq; ++j) {
    heaps[j].write_sorted(request.k, out_scores + j * request.k, out_rows + j * request.k);
  }
}

void compute_l2_norms(const KernelTable& kernels, Matrix vectors, float* out) {
  kernels.dot_tile(vectors.data, vectors.rows, vectors.cols, nullptr, 0, nullptr, 0, out);
  for (std::size_t i = 0; i < vectors.rows; ++i) out[i] = std::sqrt(out[i]);
}

}  // namespace pomai
