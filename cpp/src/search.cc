// The scan driver behind scores and top-k: splits the vectors into cache-sized blocks, runs the
// active distance kernel on a block for a tile of queries, turns raw dots / squared distances
// into scores, and (top-k) feeds them to one bounded heap per query.  Built for the baseline ISA.
#include "pomaidb/search.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

std::vector<float> query_inverse_norms(const KernelTable& kernels, Matrix queries) {
  std::vector<float> inv(queries.rows);
  kernels.dot_tile(queries.data, queries.rows, queries.cols, nullptr, 0, nullptr, 0, inv.data());
  for (float& v : inv) v = inverse_norm(v);
  return inv;
}

// Raw kernel output for rows [first, first + rows) against queries [q0, q0 + nq), then turned
// into scores in place.  row_inv holds the rows' inverse norms for cosine; they are computed
// when fill_row_inv is set (the block's first tile) and reused by later tiles.
struct BlockScorer {
  const KernelTable& kernels;
  Matrix vectors;
  Matrix queries;
  Metric metric;
  const std::vector<float>& query_inv;  // cosine only

  void score(std::size_t first, std::size_t rows, std::size_t q0, std::size_t nq, float* out,
             std::size_t out_stride, float* row_inv, bool fill_row_inv) const {
    const std::size_t d = vectors.cols;
    const float* x = vectors.data + first * d;
    const float* q = queries.data + q0 * d;
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
      const float qinv = query_inv[q0 + j];
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

// The best `capacity` candidates seen so far.  Rows must be offered in ascending order: a
// candidate tying the current worst then loses, which keeps ties ordered by row.
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
    if (!(score > heap_.front().score)) return;  // also rejects NaN
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
  const std::vector<float> query_inv =
      metric == Metric::kCosine ? query_inverse_norms(kernels, queries) : std::vector<float>{};
  const BlockScorer scorer{kernels, vectors, queries, metric, query_inv};
  const std::size_t block = block_rows(vectors.cols);
  std::vector<float> row_inv(block);
  for (std::size_t first = 0; first < vectors.rows; first += block) {
    const std::size_t rows = std::min(block, vectors.rows - first);
    scorer.score(first, rows, 0, queries.rows, out + first, vectors.rows, row_inv.data(), true);
  }
}

void compute_topk(const KernelTable& kernels, const TopkRequest& request, float* out_scores,
                  std::int64_t* out_rows) {
  const Metric metric = request.metric;
  const std::vector<float> query_inv = metric == Metric::kCosine
                                           ? query_inverse_norms(kernels, request.queries)
                                           : std::vector<float>{};
  const BlockScorer scorer{kernels, request.vectors, request.queries, metric, query_inv};
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
        const std::size_t tile = std::min(kTileQueries, nq - q0);
        scorer.score(first, rows, q0, tile, buffer.data(), rows, row_inv.data(), q0 == 0);
        for (std::size_t j = 0; j < tile; ++j) {
          offer_block(heaps[q0 + j], buffer.data() + j * rows, first, rows, request.mask);
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
