// AVX2 + FMA kernels (with POPCNT and SSE4.2 for Hamming and CRC32C).  CMakeLists.txt compiles
// this file alone with -mavx2 -mfma -mpopcnt -msse4.2; dispatch.cc calls it only after CPUID and
// XGETBV confirm all of them.
//
// Only intrinsics and plain loops here, never a standard-library template or other inline
// function shared with other files: the linker keeps one copy of such a function for the whole
// module, and if it kept this file's copy, baseline callers would run AVX2 code.
#include <immintrin.h>

#include <cstring>

#include "pomaidb/kernels.h"

namespace pomai::avx2 {
namespace {

constexpr std::size_t kWidth = 8;

// Lane masks for the last partial chunk of a row: kTailMask + 8 - rem has `rem` leading -1s.
alignas(32) constexpr int kTailMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i tail_mask(std::size_t rem) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask + kWidth - rem));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R rows of x against Q queries in one pass over the columns: every loaded x chunk feeds Q
// products, every loaded q chunk feeds R, and the R * Q accumulators are independent chains that
// hide the FMA latency.  Q == 0 computes norms only.
template <std::size_t R, std::size_t Q, bool kNorms, bool kL2>
inline void micro_tile(const float* x, std::size_t d, const float* q, float* out,
                       std::size_t out_stride, float* row_sq) {
  constexpr std::size_t kQ = Q > 0 ? Q : 1;
  __m256 acc[R][kQ];
  __m256 nrm[R];
  for (std::size_t r = 0; r < R; ++r) {
    nrm[r] = _mm256_setzero_ps();
    for (std::size_t j = 0; j < kQ; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  auto step = [&](std::size_t k, bool masked, __m256i m) {
    __m256 xv[R];
    for (std::size_t r = 0; r < R; ++r) {
      const float* p = x + r * d + k;
      xv[r] = masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
      if constexpr (kNorms) nrm[r] = _mm256_fmadd_ps(xv[r], xv[r], nrm[r]);
    }
    for (std::size_t j = 0; j < Q; ++j) {
      const float* p = q + j * d + k;
      const __m256 qv = masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
      for (std::size_t r = 0; r < R; ++r) {
        if constexpr (kL2) {
          const __m256 diff = _mm256_sub_ps(xv[r], qv);
          acc[r][j] = _mm256_fmadd_ps(diff, diff, acc[r][j]);
        } else {
          acc[r][j] = _mm256_fmadd_ps(xv[r], qv, acc[r][j]);
        }
      }
    }
  };
  std::size_t k = 0;
  for (; k + kWidth <= d; k += kWidth) step(k, false, _mm256_setzero_si256());
  if (k < d) step(k, true, tail_mask(d - k));
  for (std::size_t r = 0; r < R; ++r) {
    for (std::size_t j = 0; j < Q; ++j) out[j * out_stride + r] = hsum(acc[r][j]);
    if constexpr (kNorms) row_sq[r] = hsum(nrm[r]);
  }
}

// All rows against Q queries; R = rows per micro tile, chosen so accumulators, x chunks and a
// q chunk fit the 16 YMM registers.
template <std::size_t Q, bool kNorms, bool kL2>
void rows_tile(const float* x, std::size_t rows, std::size_t d, const float* q, float* out,
               std::size_t out_stride, float* row_sq) {
  constexpr std::size_t R = Q <= 1 ? 4 : 2;
  std::size_t i = 0;
  for (; i + R <= rows; i += R) {
    micro_tile<R, Q, kNorms, kL2>(x + i * d, d, q, Q > 0 ? out + i : out, out_stride, kNorms ? row_sq + i : nullptr);
  }
  for (; i < rows; ++i) {
    micro_tile<1, Q, kNorms, kL2>(x + i * d, d, q, Q > 0 ? out + i : out, out_stride, kNorms ? row_sq + i : nullptr);
  }
}

// Queries in groups of four, then one by one; norms (if wanted) ride along the first group.
template <bool kL2>
void any_tile(const float* x, std::size_t rows, std::size_t d, const float* q, std::size_t nq,
              float* out, std::size_t out_stride, float* row_sq) {
  std::size_t j = 0;
  for (; j + 4 <= nq; j += 4) {
    const float* qj = q + j * d;
    float* oj = out + j * out_stride;
    if (j == 0 && row_sq != nullptr) {
      rows_tile<4, true, kL2>(x, rows, d, qj, oj, out_stride, row_sq);
    } else {
      rows_tile<4, false, kL2>(x, rows, d, qj, oj, out_stride, nullptr);
    }
  }
  for (; j < nq; ++j) {
    const float* qj = q + j * d;
    float* oj = out + j * out_stride;
    if (j == 0 && row_sq != nullptr) {
      rows_tile<1, true, kL2>(x, rows, d, qj, oj, out_stride, row_sq);
    } else {
      rows_tile<1, false, kL2>(x, rows, d, qj, oj, out_stride, nullptr);
    }
  }
  if (nq == 0 && row_sq != nullptr) rows_tile<0, true, kL2>(x, rows, d, q, out, out_stride, row_sq);
}

}  // namespace

void dot_tile(const float* x, std::size_t rows, std::size_t d, const float* q, std::size_t nq,
              float* out, std::size_t out_stride, float* row_sq_norms) {
  any_tile<false>(x, rows, d, q, nq, out, out_stride, row_sq_norms);
}

void l2sq_tile(const float* x, std::size_t rows, std::size_t d, const float* q, std::size_t nq,
               float* out, std::size_t out_stride) {
  any_tile<true>(x, rows, d, q, nq, out, out_stride, nullptr);
}

void hamming64(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
               std::uint32_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint32_t>(_mm_popcnt_u64(codes[i] ^ query));
  }
}

std::uint32_t crc32c(std::uint32_t crc, const unsigned char* data, std::size_t len) {
  std::uint64_t state = ~crc;
  for (; len >= 8; len -= 8, data += 8) {
    std::uint64_t word;
    std::memcpy(&word, data, sizeof word);
    state = _mm_crc32_u64(state, word);
  }
  auto state32 = static_cast<std::uint32_t>(state);
  for (; len > 0; --len, ++data) state32 = _mm_crc32_u8(state32, *data);
  return ~state32;
}

}  // namespace pomai::avx2
