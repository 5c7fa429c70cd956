// WSBR row and query sketches (see pomaidb/sketch.h).  Built for the baseline ISA without FMA,
// so every float operation rounds once, as numpy's do; the integer dot products come from the
// active level's dot_i8_rows.
#include "pomaidb/sketch.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "pomaidb/round.h"

namespace pomai {

float max_abs(const float* row, std::size_t dim) {
  float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  std::size_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    for (std::size_t j = 0; j < 4; ++j) part[j] = std::max(part[j], std::fabs(row[i + j]));
  }
  for (; i < dim; ++i) part[0] = std::max(part[0], std::fabs(row[i]));
  return std::max(std::max(part[0], part[1]), std::max(part[2], part[3]));
}

float quantize_row(const float* row, std::size_t dim, float level, std::int8_t* out) {
  const float amax = max_abs(row, dim);
  float scale = amax > 0.0f ? level / amax : 0.0f;
  if (std::isinf(scale)) scale = 0.0f;  // max |row| below level / FLT_MAX: a zero row
  for (std::size_t i = 0; i < dim; ++i) {
    out[i] = static_cast<std::int8_t>(round_half_even(row[i] * scale));
  }
  return amax;
}

std::uint64_t sketch_row(const KernelTable& kernels, const float* routing_row, std::size_t dim,
                         const float* mu, const std::int8_t* projection, float level,
                         const SketchScratch& scratch) {
  for (std::size_t i = 0; i < dim; ++i) scratch.centred[i] = routing_row[i] - mu[i];
  quantize_row(scratch.centred, dim, level, scratch.q8);
  static constexpr auto kBits = [] {
    std::array<std::int64_t, kSketchBits> ids{};
    std::iota(ids.begin(), ids.end(), 0);
    return ids;
  }();
  kernels.dot_i8_rows(projection, dim, kBits.data(), kSketchBits, scratch.q8, scratch.dots);
  std::uint64_t code = 0;
  for (std::size_t j = 0; j < kSketchBits; ++j) {
    code |= static_cast<std::uint64_t>(scratch.dots[j] > 0) << j;
  }
  return code;
}

}  // namespace pomai
