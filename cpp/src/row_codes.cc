// A WSBR build's per-row pass (see pomaidb/row_codes.h).  Built for the baseline ISA without
// FMA: the codes and bounds take the float64 steps of the numpy reference (tests/kernels), and
// the sketches the float32 steps of a query's (pomaidb/sketch.h).
#include "pomaidb/row_codes.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "pomaidb/int4.h"
#include "pomaidb/round.h"
#include "pomaidb/sketch.h"

namespace pomai {
namespace {

constexpr double kCodeLevel = 127.0;
constexpr double kNibbleLevel = 7.0;

// Rounds a non-negative double to float32 and then one step up: an upper bound of the value,
// whatever the rounding of the conversion was.
float bound_above(double value) {
  return std::nextafter(static_cast<float>(value), std::numeric_limits<float>::infinity());
}

// Four interleaved partial sums: the additions of one row do not wait on each other.  The
// order differs from numpy's, which the bounds allow: a float64 sum of 4096 squares is off by
// far less than the float32 step bound_above adds.
struct Sums4 {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  double total() const { return (part[0] + part[1]) + (part[2] + part[3]); }
};

// Row i's int8 codes and bounds, and its level-7 codes (into `level7`, dim values) packed into
// its nibbles.
void int8_row(const float* row, std::size_t dim, std::size_t i, const RowCodesOut& out,
              std::int8_t* level7) {
  const auto amax = static_cast<double>(max_abs(row, dim));
  const double scale = amax > 0.0 ? amax / kCodeLevel : 0.0;
  const double inverse = scale > 0.0 ? 1.0 / scale : 1.0;
  const double inverse7 = amax > 0.0 ? kNibbleLevel / amax : 0.0;
  const auto stored = static_cast<float>(scale);  // what the kernels multiply codes by
  std::int8_t* code = out.codes + i * dim;
  Sums4 error_sq;
  Sums4 norm_sq;
  for (std::size_t c = 0; c < dim; ++c) {
    const auto value = static_cast<double>(row[c]);
    const double q = round_half_even(value * inverse);
    code[c] = static_cast<std::int8_t>(q);
    level7[c] = static_cast<std::int8_t>(
        std::clamp(round_half_even(value * inverse7), -kNibbleLevel, kNibbleLevel));
    const double error = value - q * static_cast<double>(stored);
    error_sq.part[c % 4] += error * error;
    norm_sq.part[c % 4] += value * value;
  }
  out.scale[i] = stored;
  out.residual[i] = bound_above(std::sqrt(error_sq.total()));
  out.norm[i] = bound_above(std::sqrt(norm_sq.total()));
  pack_i4_rows(level7, 1, dim, out.nibbles + i * i4_row_bytes(dim));
}

void sign_row(const float* row, std::size_t dim, const float* mu, std::uint64_t* words) {
  for (std::size_t start = 0; start < dim; start += 64) {
    std::uint64_t word = 0;  // built in a register: no store-to-load chain through `words`
    for (std::size_t c = start; c < std::min(dim, start + 64); ++c) {
      word |= static_cast<std::uint64_t>(row[c] - mu[c] > 0.0f) << (c - start);
    }
    words[start / 64] = word;
  }
}

}  // namespace

void row_codes(const KernelTable& kernels, const float* rows, std::size_t m, std::size_t dim,
               const SketchBasis& basis, const std::int64_t* row_blocks, const RowCodesOut& out) {
  std::vector<float> centred(dim);
  std::vector<std::int8_t> q8(dim);
  std::vector<std::int32_t> dots(kSketchBits);
  std::vector<std::int8_t> level7(dim);
  const SketchScratch scratch{centred.data(), q8.data(), dots.data()};
  const std::size_t words = (dim + 63) / 64;
  for (std::size_t i = 0; i < m; ++i) {
    const float* row = rows + i * dim;
    int8_row(row, dim, i, out, level7.data());
    sign_row(row, dim, basis.mu, out.signs + i * words);
    out.sketches[i] = sketch_row(kernels, row, dim, basis.mu, basis.projection, basis.level, scratch);
    float* sum = out.block_sums + static_cast<std::size_t>(row_blocks[i] - row_blocks[0]) * dim;
    for (std::size_t c = 0; c < dim; ++c) sum[c] += row[c];
  }
}

}  // namespace pomai
