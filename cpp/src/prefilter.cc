// compute_topk_blocks_int8 (see pomaidb/prefilter.h).  Built for the baseline ISA; the int8 dot
// products come from the active level's dot_i8_rows and are exact, so which rows survive the
// prefilter is the same on every level, and the survivors are scored by compute_topk.
#include "pomaidb/prefilter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

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
    const double code = q.scale > 0.0 ? std::nearbyint(v / q.scale) : 0.0;
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

// The allowed rows of query j's blocks, each once, block by block.
std::vector<std::int64_t> rows_of_query(const BlockTopkRequest& request, std::size_t j) {
  const auto lo = static_cast<std::size_t>(request.query_block_ptr[j]);
  const auto hi = static_cast<std::size_t>(request.query_block_ptr[j + 1]);
  std::vector<std::int64_t> blocks(request.query_blocks + lo, request.query_blocks + hi);
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  std::vector<std::int64_t> out;
  for (const std::int64_t b : blocks) {
    const RowRange& r = request.blocks[static_cast<std::size_t>(b)];
    for (std::size_t row = r.start; row < r.end; ++row) {
      if (request.mask == nullptr || request.mask[row] != 0) {
        out.push_back(static_cast<std::int64_t>(row));
      }
    }
  }
  return out;  // blocks are disjoint, so no row repeats
}

// The rows whose interval reaches the k-th best lower end, as sorted disjoint ranges.
std::vector<RowRange> survivors(std::span<const std::int64_t> rows,
                                std::span<const Interval> intervals, std::size_t k) {
  float floor = -std::numeric_limits<float>::infinity();
  if (rows.size() > k) {
    std::vector<float> lows(intervals.size());
    std::transform(intervals.begin(), intervals.end(), lows.begin(),
                   [](const Interval& v) { return v.low; });
    std::nth_element(lows.begin(), lows.begin() + static_cast<std::ptrdiff_t>(k - 1), lows.end(),
                     std::greater<float>());
    floor = lows[k - 1];
  }
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (intervals[i].high >= floor) kept.push_back(static_cast<std::size_t>(rows[i]));
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

// out[i] = <codes row rows[i], q>, computed a chunk of rows at a time while the chunks ahead
// are prefetched: a query's rows come in short runs (a block of int8 rows is a few KiB, often
// split by a page boundary, where hardware prefetchers stop), so without this the pass waits
// on memory latency instead of streaming (measured: 3 GB/s, under the float scan's 9).
void dot_rows_prefetched(const KernelTable& kernels, const std::int8_t* codes, std::size_t d,
                         std::span<const std::int64_t> rows, const std::int8_t* q,
                         std::int32_t* out) {
  constexpr std::size_t kChunk = 16;
  constexpr std::size_t kAhead = 4;  // chunks
  constexpr std::size_t kLine = 64;
  const auto prefetch = [&](std::size_t first) {
    const std::size_t last = std::min(first + kChunk, rows.size());
    for (std::size_t i = first; i < last; ++i) {
      const std::int8_t* row = codes + static_cast<std::size_t>(rows[i]) * d;
      for (std::size_t b = 0; b < d; b += kLine) __builtin_prefetch(row + b, 0, 1);
    }
  };
  for (std::size_t a = 0; a < kAhead; ++a) prefetch(a * kChunk);
  for (std::size_t first = 0; first < rows.size(); first += kChunk) {
    prefetch(first + kAhead * kChunk);
    kernels.dot_i8_rows(codes, d, rows.data() + first, std::min(kChunk, rows.size() - first), q,
                        out + first);
  }
}

}  // namespace

void compute_topk_blocks_int8(const KernelTable& kernels, const BlockTopkRequest& request,
                              const Int8Rows& rows, float* out_scores, std::int64_t* out_rows) {
  const std::size_t d = request.queries.cols;
  const double rel_margin = static_cast<double>(d + 16) / (1 << 20);
  std::vector<std::int32_t> dots;
  std::vector<Interval> intervals;
  for (std::size_t j = 0; j < request.queries.rows; ++j) {
    const float* query = request.queries.data + j * d;
    const QuantQuery q = quantize_query(query, d, request.metric);
    const std::vector<std::int64_t> candidates = rows_of_query(request, j);
    dots.resize(candidates.size());
    dot_rows_prefetched(kernels, rows.codes, d, candidates, q.codes.data(), dots.data());
    intervals.resize(candidates.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      intervals[i] = score_interval(q, dots[i], static_cast<std::size_t>(candidates[i]), rows,
                                    request.metric, rel_margin);
    }
    // The survivors go through compute_topk, so each (row, query) scores exactly as in
    // compute_topk_blocks (a row's score does not depend on the rows scored beside it).
    TopkRequest exact{request.vectors, Matrix{query, 1, d}, request.metric, request.k, nullptr,
                      survivors(candidates, intervals, request.k)};
    compute_topk(kernels, exact, out_scores + j * request.k, out_rows + j * request.k);
  }
}

}  // namespace pomai
