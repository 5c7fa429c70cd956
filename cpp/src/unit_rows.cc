// Unit rows (see pomaidb/unit_rows.h).  Built for the baseline ISA without FMA, so every float
// operation rounds once, as numpy's do: UnitRowView's numpy product of a row and its inverse
// norm equals unit_rows' bit for bit.
#include "pomaidb/unit_rows.h"

#include <cmath>

namespace pomai {

float inverse_norm(const float* row, std::size_t dim) {
  // Four chains, combined in a fixed order; a product of two floats is exact in double.
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  std::size_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    for (std::size_t j = 0; j < 4; ++j) {
      part[j] += static_cast<double>(row[i + j]) * static_cast<double>(row[i + j]);
    }
  }
  for (; i < dim; ++i) part[0] += static_cast<double>(row[i]) * static_cast<double>(row[i]);
  // One rounding to float, at the end: the inverse of a length past FLT_MAX (huge finite
  // values) is still a float, and rows of tiny values do not underflow to a zero row.
  const double sum = (part[0] + part[1]) + (part[2] + part[3]);
  return sum > 0.0 ? static_cast<float>(1.0 / std::sqrt(sum)) : 0.0f;
}

void compute_inverse_norms(Matrix rows, float* out) {
  for (std::size_t r = 0; r < rows.rows; ++r) {
    out[r] = inverse_norm(rows.data + r * rows.cols, rows.cols);
  }
}

void compute_unit_rows(Matrix rows, float* out) {
  for (std::size_t r = 0; r < rows.rows; ++r) {
    const float* row = rows.data + r * rows.cols;
    const float inverse = inverse_norm(row, rows.cols);
    float* dst = out + r * rows.cols;
    for (std::size_t i = 0; i < rows.cols; ++i) dst[i] = row[i] * inverse;
  }
}

}  // namespace pomai
