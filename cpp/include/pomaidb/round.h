// Rounding to the nearest integer, ties to even (np.rint), as inline arithmetic: on the
// baseline ISA (no SSE4.1 roundss/roundsd) std::nearbyint is a libm call, and the kernels
// round once per component of every row a build codes and of every query they quantise.
#pragma once

namespace pomai {

// x rounded for |x| < 2^22: adding and subtracting 1.5 * 2^23 leaves x rounded by the FPU's
// default mode (to nearest, ties to even).
inline float round_half_even(float x) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
}

// The same for doubles, |x| < 2^51.
inline double round_half_even(double x) {
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  return (x + kShift) - kShift;
}

}  // namespace pomai
