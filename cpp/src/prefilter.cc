// compute_topk_blocks_int8 (see pomaidb/prefilter.h).  Built for the baseline ISA; the int8 and
// int4 dot products come from the active level's dot_i8_rows and dot_i4_rows and are exact, so
// which rows survive the prefilter is the same on every level, and the survivors are scored by
// compute_topk.
#include "pomaidb/prefilter.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "pomaidb/int4.h"
#include "pomaidb/prefetch.h"
#include "pomaidb/round.h"

namespace pomai {
namespace {

constexpr float kCodeLevel = 127.0f;  // row codes span [-127, 127]; so does the query's

// A query in routing space, quantised like the rows: q ~ codes * scale, off by `residual`.
struct QuantQuery {
  std::vector<std::int8_t> codes;
  double scale = 0.0;
  double residual = 0.0;
  double norm = 0.0;
};

QuantQuery quantize_query(const float* query, std::size_t d, Metric metric) {
  double sq = 0.0;
  for (std::size_t i = 0; i < d; ++i) sq += static_cast<double>(query[i]) * query[i];
  // Routing space for cosine is the unit query (a zero query scores 0 against every row).
  const double unit = metric == Metric::kCosine ? (sq > 0.0 ? 1.0 / std::sqrt(sq) : 0.0) : 1.0;
  QuantQuery q;
  q.codes.resize(d);
  double amax = 0.0;
  for (std::size_t i = 0; i < d; ++i) amax = std::max(amax, std::fabs(query[i] * unit));
  q.scale = amax > 0.0 ? amax / kCodeLevel : 0.0;
  double residual_sq = 0.0;
  double norm_sq = 0.0;
  for (std::size_t i = 0; i < d; ++i) {
    const double v = query[i] * unit;
    const double code = q.scale > 0.0 ? round_half_even(v / q.scale) : 0.0;
    q.codes[i] = static_cast<std::int8_t>(std::clamp(code, -127.0, 127.0));
    const double error = v - q.codes[i] * q.scale;
    residual_sq += error * error;
    norm_sq += v * v;
  }
  q.residual = std::sqrt(residual_sq);
  q.norm = std::sqrt(norm_sq);
  return q;
}

// [low, high] around one row's float score.  <q, x> = <qc, xc> + <q, ex> + <eq, xc> with
// qc, xc the quantised vectors and eq, ex their errors, so |<q, x> - <qc, xc>| <=
// |q| |ex| + |eq| |xc| and |xc| <= |x| + |ex|.  The margin covers the float rounding of the
// exact kernel and of this estimate ((d + 16) * 2^-20 relative: several times the worst case
// of a d-term float sum).
struct Interval {
  float low;
  float high;
};

Interval score_interval(const QuantQuery& q, std::int32_t dot, std::size_t row,
                        const Int8Rows& rows, Metric metric, double rel_margin) {
  const double xn = rows.norm[row];
  const double ex = rows.residual[row];
  const double ip = static_cast<double>(dot) * rows.scale[row] * q.scale;
  const double bound = q.norm * ex + q.residual * (xn + ex);
  double estimate = ip;
  double spread = bound + rel_margin * q.norm * xn;
  if (metric == Metric::kL2) {  // -|q - x|^2 = 2 <q, x> - |q|^2 - |x|^2
    estimate = 2.0 * ip - q.norm * q.norm - xn * xn;
    spread = 2.0 * bound + rel_margin * (q.norm + xn) * (q.norm + xn);
  }
  // Widened by far more than the 2^-24 relative error of rounding the ends to float.
  spread += (std::fabs(estimate) + spread) * 0x1p-20 + 0x1p-100;
  const double low = estimate - spread;
  const double high = estimate + spread;
  if (!std::isfinite(low) || !std::isfinite(high)) {  // non-finite data: always score it
    return {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
  }
  return {static_cast<float>(low), static_cast<float>(high)};
}

// Query j's blocks, each once, ascending (blocks are numbered cluster by cluster, so nearby
// ids are nearby rows).
std::vector<std::int64_t> blocks_of_query(const BlockTopkRequest& request, std::size_t j) {
  const auto lo = static_cast<std::size_t>(request.query_block_ptr[j]);
  const auto hi = static_cast<std::size_t>(request.query_block_ptr[j + 1]);
  std::vector<std::int64_t> blocks(request.query_blocks + lo, request.query_blocks + hi);
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  return blocks;
}

// Asks for a block's rows (`d` bytes each: int8 codes, or sign codes) a few blocks before
// they are read.  A query's blocks are scattered runs of a few KiB, often split by a page
// boundary, where hardware prefetchers stop: without this the pass waits on memory latency
// instead of streaming (measured: 8,000 384-d rows in 380 scattered blocks, 0.39 ms without,
// 0.25 ms with).  Only the first kMaxBytes of a large block: its rest streams anyway.
void prefetch_block(const std::int8_t* codes, std::size_t d, const RowRange& r) {
  constexpr std::size_t kMaxBytes = 16384;
  prefetch_bytes(codes + r.start * d, std::min((r.end - r.start) * d, kMaxBytes));
}

// Asks for the float rows the exact pass will score: the survivors are a few dozen scattered
// rows (21 a query in a 25k-row pypi-100k segment, in 18 runs), each a run of cache lines
// that would otherwise wait on memory one row after another.  Measured interleaved through
// the engine on pypi-100k: p50 2-4% lower.
void prefetch_rows(const Matrix& vectors, const std::vector<RowRange>& rows) {
  for (const RowRange& r : rows) {
    prefetch_bytes(vectors.data + r.start * vectors.cols,
                   (r.end - r.start) * vectors.cols * sizeof(float));
  }
}

// The k best lower ends seen so far: the k-th best is a floor no survivor can be below.
class LowerEnds {
 public:
  explicit LowerEnds(std::size_t k) : k_(k) { heap_.reserve(k); }
  void add(float low) {
    if (heap_.size() < k_) {
      heap_.push_back(low);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
    } else if (low > heap_.front()) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<float>());
      heap_.back() = low;
      std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
    }
  }
  // -inf until k rows were seen (with at most k rows, every row survives).
  float floor() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front();
  }

 private:
  std::size_t k_;
  std::vector<float> heap_;  // min-heap
};

struct Candidate {
  std::size_t row;
  float high;
};

bool allowed(const BlockTopkRequest& request, std::size_t row) {
  return request.mask == nullptr || request.mask[row] != 0;
}

// The allowed rows of `blocks` that the sign stage keeps for query j (see SignCodes), in block
// order, or nothing when it keeps more than kMaxScatteredShare of them: scattered rows cost
// about 2.5 times streamed ones, so the blocks are then scanned whole.  Codes are read block
// by block (contiguous runs), distances kept beside their rows.
std::optional<std::vector<std::int64_t>> nearest_signs(const KernelTable& kernels,
                                                       const BlockTopkRequest& request,
                                                       const SignCodes& signs,
                                                       const std::vector<std::int64_t>& blocks,
                                                       std::size_t j) {
  constexpr double kMaxScatteredShare = 0.4;
  constexpr std::size_t kAheadBlocks = 4;
  const std::uint64_t* query = signs.queries + j * signs.words;
  const auto block = [&](std::size_t i) {
    return request.blocks[static_cast<std::size_t>(blocks[i])];
  };
  const auto* code_bytes = reinterpret_cast<const std::int8_t*>(signs.rows);
  const auto prefetch = [&](std::size_t i) {
    if (i < blocks.size()) {
      prefetch_block(code_bytes, signs.words * sizeof(std::uint64_t), block(i));
    }
  };
  for (std::size_t i = 0; i < kAheadBlocks; ++i) prefetch(i);
  std::vector<std::int64_t> ids;
  std::vector<std::uint32_t> distance;
  std::vector<std::uint32_t> in_block;
  std::vector<std::size_t> histogram(signs.words * 64 + 1, 0);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    prefetch(i + kAheadBlocks);
    const RowRange r = block(i);
    in_block.resize(r.end - r.start);
    kernels.hamming_rows(signs.rows, signs.words, r.start, r.end, query, in_block.data());
    for (std::size_t row = r.start; row < r.end; ++row) {
      if (!allowed(request, row)) continue;
      ids.push_back(static_cast<std::int64_t>(row));
      distance.push_back(in_block[row - r.start]);
      ++histogram[in_block[row - r.start]];
    }
  }
  if (ids.empty()) return ids;
  // The m-th smallest distance (1 <= m <= ids.size()), from the histogram.
  const auto nth = [&](std::size_t m) {
    std::uint32_t distance_m = 0;
    for (std::size_t seen = histogram[0]; seen < m; seen += histogram[++distance_m]) {
    }
    return distance_m;
  };
  const double dk = nth(std::min(request.k, ids.size()));
  const double bits = static_cast<double>(request.queries.cols);
  const double band = dk + signs.sigmas * std::sqrt(dk * std::max(0.0, 1.0 - dk / bits));
  const std::uint32_t limit = std::max(static_cast<std::uint32_t>(std::min(band, bits)),
                                        nth(std::min(signs.keep_min, ids.size())));
  std::size_t within = 0;
  for (std::uint32_t d = 0; d <= limit; ++d) within += histogram[d];
  if (static_cast<double>(within) > kMaxScatteredShare * static_cast<double>(ids.size())) {
    return std::nullopt;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (distance[i] <= limit) ids[kept++] = ids[i];
  }
  ids.resize(kept);
  return ids;
}

// Scores rows in int8 and keeps those whose interval can still reach the k best: a row whose
// upper end is already below the running floor is dropped at once (the final floor is at
// least as high), so only a short candidate list outlives the pass.
class Int8Pass {
 public:
  Int8Pass(const KernelTable& kernels, const BlockTopkRequest& request, const Int8Rows& rows,
           const QuantQuery& q, double rel_margin)
      : kernels_(kernels), request_(request), rows_(rows), q_(q), rel_margin_(rel_margin),
        lows_(request.k) {}

  void score(std::span<const std::int64_t> ids) {
    dots_.resize(ids.size());
    kernels_.dot_i8_rows(rows_.codes, request_.queries.cols, ids.data(), ids.size(),
                         q_.codes.data(), dots_.data());
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const auto row = static_cast<std::size_t>(ids[t]);
      const Interval v = score_interval(q_, dots_[t], row, rows_, request_.metric, rel_margin_);
      lows_.add(v.low);
      if (v.high >= lows_.floor()) candidates_.push_back({row, v.high});
    }
  }

  // The rows that can still make the k best, as sorted disjoint ranges.
  std::vector<RowRange> survivors() const {
    const float floor = lows_.floor();
    std::vector<std::size_t> kept;
    for (const Candidate& c : candidates_) {
      if (c.high >= floor) kept.push_back(c.row);
    }
    std::sort(kept.begin(), kept.end());
    std::vector<RowRange> out;
    for (const std::size_t row : kept) {
      if (!out.empty() && out.back().end == row) {
        out.back().end = row + 1;
      } else {
        out.push_back({row, row + 1});
      }
    }
    return out;
  }

 private:
  const KernelTable& kernels_;
  const BlockTopkRequest& request_;
  const Int8Rows& rows_;
  const QuantQuery& q_;
  double rel_margin_;
  LowerEnds lows_;
  std::vector<Candidate> candidates_;
  std::vector<std::int32_t> dots_;
};

// Every allowed row of query j's blocks, block by block, each block's codes prefetched a few
// blocks ahead.
void scan_blocks(const BlockTopkRequest& request, const Int8Rows& rows,
                 const std::vector<std::int64_t>& blocks, Int8Pass& pass) {
  constexpr std::size_t kAheadBlocks = 2;
  const std::size_t d = request.queries.cols;
  const auto block = [&](std::size_t i) {
    return request.blocks[static_cast<std::size_t>(blocks[i])];
  };
  for (std::size_t i = 0; i < std::min(kAheadBlocks, blocks.size()); ++i) {
    prefetch_block(rows.codes, d, block(i));
  }
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (i + kAheadBlocks < blocks.size()) prefetch_block(rows.codes, d, block(i + kAheadBlocks));
    const RowRange r = block(i);
    ids.clear();
    for (std::size_t row = r.start; row < r.end; ++row) {
      if (allowed(request, row)) ids.push_back(static_cast<std::int64_t>(row));
    }
    pass.score(ids);
  }
}

// The rows the sign stage kept, a chunk at a time, the next chunk's codes prefetched (they
// are scattered rows now, not whole blocks).
void scan_rows(const BlockTopkRequest& request, const Int8Rows& rows,
               const std::vector<std::int64_t>& kept, Int8Pass& pass) {
  constexpr std::size_t kChunk = 8;
  constexpr std::size_t kAhead = 1;  // chunks
  const std::size_t d = request.queries.cols;
  const auto prefetch = [&](std::size_t from) {
    for (std::size_t i = from; i < std::min(from + kChunk, kept.size()); ++i) {
      prefetch_block(rows.codes, d, {static_cast<std::size_t>(kept[i]),
                                     static_cast<std::size_t>(kept[i]) + 1});
    }
  };
  for (std::size_t c = 0; c < kAhead; ++c) prefetch(c * kChunk);
  const std::span<const std::int64_t> all(kept);
  for (std::size_t start = 0; start < kept.size(); start += kChunk) {
    prefetch(start + kAhead * kChunk);
    pass.score(all.subspan(start, std::min(kChunk, kept.size() - start)));
  }
}

// Rows the int4 pass keeps for the int8 pass: kI4KeepPerK * k, at least kI4KeepMin (on real
// embeddings the true top 10 of ~1,700 rows all lie in the int4 top 32: wsbr.py).
constexpr std::size_t kI4KeepPerK = 4;
constexpr std::size_t kI4KeepMin = 32;
constexpr double kI4Level = 7.0;

// The best `keep` (estimate, row) offered, by estimate descending then row ascending.
class BestRows {
 public:
  explicit BestRows(std::size_t keep) : keep_(keep) { heap_.reserve(keep); }
  void offer(float estimate, std::int64_t row) {
    if (heap_.size() < keep_) {
      heap_.push_back({estimate, row});
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    } else if (estimate > heap_.front().estimate) {
      std::pop_heap(heap_.begin(), heap_.end(), worse_first);
      heap_.back() = {estimate, row};
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    }
  }
  std::vector<std::int64_t> rows() const {
    std::vector<std::int64_t> out;
    out.reserve(heap_.size());
    for (const Entry& e : heap_) out.push_back(e.row);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  struct Entry {
    float estimate;
    std::int64_t row;
  };
  // Heap order: the front is the worst kept (lowest estimate, then highest row).
  static bool worse_first(const Entry& a, const Entry& b) {
    return a.estimate > b.estimate || (a.estimate == b.estimate && a.row < b.row);
  }
  std::size_t keep_;
  std::vector<Entry> heap_;
};

// The allowed rows of `blocks`, block by block.
std::vector<std::int64_t> allowed_rows(const BlockTopkRequest& request,
                                       const std::vector<std::int64_t>& blocks) {
  std::vector<std::int64_t> ids;
  for (const std::int64_t b : blocks) {
    const RowRange r = request.blocks[static_cast<std::size_t>(b)];
    for (std::size_t row = r.start; row < r.end; ++row) {
      if (allowed(request, row)) ids.push_back(static_cast<std::int64_t>(row));
    }
  }
  return ids;
}

// The int4 pass: the best `keep` of `ids` by their nibble estimate, ascending.
std::vector<std::int64_t> int4_shortlist(const KernelTable& kernels,
                                         const BlockTopkRequest& request, const Int8Rows& rows,
                                         const QuantQuery& q, const std::vector<std::int64_t>& ids,
                                         std::size_t keep) {
  std::vector<std::int32_t> dots(ids.size());
  kernels.dot_i4_rows(rows.nibbles, request.queries.cols, ids.data(), ids.size(),
                      q.codes.data(), dots.data());
  const bool l2 = request.metric == Metric::kL2;
  const auto gain = static_cast<float>(q.scale * 127.0 / kI4Level);  // nibble dot -> <q, x>
  BestRows best(keep);
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const auto row = static_cast<std::size_t>(ids[t]);
    float estimate = static_cast<float>(dots[t]) * rows.scale[row] * gain;
    if (l2) estimate = 2.0f * estimate - rows.norm[row] * rows.norm[row];
    // Rows of huge values can make inf - inf: kept, as the int8 pass keeps what it cannot
    // bound (and NaN would break the heap's order).
    if (std::isnan(estimate)) estimate = std::numeric_limits<float>::infinity();
    best.offer(estimate, ids[t]);
  }
  return best.rows();
}

// The allowed rows of query j's blocks (those the sign stage keeps, with `signs`; of those,
// the int4 pass's best, with nibbles and more than twice as many rows as it keeps) whose
// interval reaches the k-th best lower end, as sorted disjoint ranges.
std::vector<RowRange> survivors(const KernelTable& kernels, const BlockTopkRequest& request,
                                const Int8Rows& rows, const SignCodes* signs,
                                const QuantQuery& q, std::size_t j, double rel_margin) {
  const std::vector<std::int64_t> blocks = blocks_of_query(request, j);
  Int8Pass pass(kernels, request, rows, q, rel_margin);
  std::optional<std::vector<std::int64_t>> kept;
  if (signs != nullptr) kept = nearest_signs(kernels, request, *signs, blocks, j);
  const std::size_t keep = std::max(kI4KeepPerK * request.k, kI4KeepMin);
  if (rows.nibbles != nullptr) {
    if (!kept) kept = allowed_rows(request, blocks);
    if (kept->size() > 2 * keep) kept = int4_shortlist(kernels, request, rows, q, *kept, keep);
  }
  if (kept) {
    scan_rows(request, rows, *kept, pass);
  } else {
    scan_blocks(request, rows, blocks, pass);
  }
  return pass.survivors();
}

}  // namespace

void compute_topk_blocks_int8(const KernelTable& kernels, const BlockTopkRequest& request,
                              const Int8Rows& rows, const SignCodes* signs, float* out_scores,
                              std::int64_t* out_rows) {
  const std::size_t d = request.queries.cols;
  const double rel_margin = static_cast<double>(d + 16) / (1 << 20);
  for (std::size_t j = 0; j < request.queries.rows; ++j) {
    const float* query = request.queries.data + j * d;
    const QuantQuery q = quantize_query(query, d, request.metric);
    // The survivors go through compute_topk, so each (row, query) scores exactly as in
    // compute_topk_blocks (a row's score does not depend on the rows scored beside it).
    TopkRequest exact{request.vectors, Matrix{query, 1, d}, request.metric, request.k, nullptr,
                      survivors(kernels, request, rows, signs, q, j, rel_margin)};
    prefetch_rows(request.vectors, exact.ranges);
    compute_topk(kernels, exact, out_scores + j * request.k, out_rows + j * request.k);
  }
}

}  // namespace pomai
