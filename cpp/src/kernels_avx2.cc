// AVX2 + FMA kernels (with POPCNT and SSE4.2 for Hamming and CRC32C).  CMakeLists.txt compiles
// this file alone with -mavx2 -mfma -mpopcnt -msse4.2; dispatch.cc calls it only after CPUID and
// XGETBV confirm all of them.
//
// Only intrinsics and plain loops here, never a standard-library template or other inline
// function shared with other files: the linker keeps one copy of such a function for the whole
// module, and if it kept this file's copy, baseline callers would run AVX2 code.
#include <immintrin.h>

#include <cstring>

#include "pomaidb/gather.h"
#include "pomaidb/int4.h"
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

// One row of x against Q queries in one pass over the columns: every loaded x chunk feeds Q
// products.  Two accumulator sets take alternate chunks, so even a single query has two
// independent FMA chains (one chain was 20% slower on cached rows).  Q == 0 computes the norm
// only.  A (row, query) pair is summed in the same order whatever Q is: duplicate rows score
// bit-identically, and a query scores the same alone or in a batch.
template <std::size_t Q, bool kNorms, bool kL2>
inline void row_tile(const float* x, std::size_t d, const float* const* q, float* out,
                     std::size_t out_stride, float* row_sq) {
  constexpr std::size_t kQ = Q > 0 ? Q : 1;
  __m256 acc[2][kQ];
  __m256 nrm[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t j = 0; j < kQ; ++j) acc[0][j] = acc[1][j] = _mm256_setzero_ps();
  auto step = [&](std::size_t k, std::size_t u, bool masked, __m256i m) {
    const __m256 xv = masked ? _mm256_maskload_ps(x + k, m) : _mm256_loadu_ps(x + k);
    if constexpr (kNorms) nrm[u] = _mm256_fmadd_ps(xv, xv, nrm[u]);
    for (std::size_t j = 0; j < Q; ++j) {
      const float* p = q[j] + k;
      const __m256 qv = masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
      if constexpr (kL2) {
        const __m256 diff = _mm256_sub_ps(xv, qv);
        acc[u][j] = _mm256_fmadd_ps(diff, diff, acc[u][j]);
      } else {
        acc[u][j] = _mm256_fmadd_ps(xv, qv, acc[u][j]);
      }
    }
  };
  const __m256i unused = _mm256_setzero_si256();
  std::size_t k = 0;
  for (; k + 2 * kWidth <= d; k += 2 * kWidth) {
    step(k, 0, false, unused);
    step(k + kWidth, 1, false, unused);
  }
  std::size_t u = 0;
  if (k + kWidth <= d) {
    step(k, 0, false, unused);
    k += kWidth;
    u = 1;
  }
  if (k < d) step(k, u, true, tail_mask(d - k));
  for (std::size_t j = 0; j < Q; ++j) {
    out[j * out_stride] = hsum(_mm256_add_ps(acc[0][j], acc[1][j]));
  }
  if constexpr (kNorms) *row_sq = hsum(_mm256_add_ps(nrm[0], nrm[1]));
}

// All rows against Q queries, one row after another: streaming rows in order from memory
// measured twice as fast as interleaving several rows' streams, and register-blocking two rows
// gained nothing (GCC folds the q loads into each FMA either way).  The Q query pointers are
// copied to locals so they stay in registers across rows.  `out` is null when Q == 0.
template <std::size_t Q, bool kNorms, bool kL2>
void rows_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
               float* out, std::size_t out_stride, float* row_sq) {
  constexpr std::size_t kQ = Q > 0 ? Q : 1;
  const float* qp[kQ] = {};
  for (std::size_t j = 0; j < Q; ++j) qp[j] = q[j];
  for (std::size_t i = 0; i < rows; ++i) {
    row_tile<Q, kNorms, kL2>(x + i * d, d, qp, Q > 0 ? out + i : out, out_stride,
                             kNorms ? row_sq + i : nullptr);
  }
}

// Queries in groups of four, then one by one; norms (if wanted) ride along the first group.
template <bool kL2>
void any_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
              std::size_t nq, float* out, std::size_t out_stride, float* row_sq) {
  std::size_t j = 0;
  for (; j + 4 <= nq; j += 4) {
    const float* const* qj = q + j;
    float* oj = out + j * out_stride;
    if (j == 0 && row_sq != nullptr) {
      rows_tile<4, true, kL2>(x, rows, d, qj, oj, out_stride, row_sq);
    } else {
      rows_tile<4, false, kL2>(x, rows, d, qj, oj, out_stride, nullptr);
    }
  }
  for (; j < nq; ++j) {
    const float* const* qj = q + j;
    float* oj = out + j * out_stride;
    if (j == 0 && row_sq != nullptr) {
      rows_tile<1, true, kL2>(x, rows, d, qj, oj, out_stride, row_sq);
    } else {
      rows_tile<1, false, kL2>(x, rows, d, qj, oj, out_stride, nullptr);
    }
  }
  if (nq == 0 && row_sq != nullptr) rows_tile<0, true, kL2>(x, rows, d, q, out, out_stride, row_sq);
}

// 16 int8 values sign-extended to int16 lanes.
inline __m256i load_i8x16(const std::int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline std::int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// R gathered int8 rows against one query: each widened q chunk feeds R multiply-adds
// (int16 x int16 pairs summed into int32 lanes, exact for int8 inputs).
template <std::size_t R>
inline void i8_rows_tile(const std::int8_t* const* rows, std::size_t d, const std::int8_t* q,
                         std::int32_t* out) {
  __m256i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
  std::size_t k = 0;
  for (; k + 16 <= d; k += 16) {
    const __m256i qv = load_i8x16(q + k);
    for (std::size_t r = 0; r < R; ++r) {
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(load_i8x16(rows[r] + k), qv));
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    std::int32_t sum = hsum_epi32(acc[r]);
    for (std::size_t t = k; t < d; ++t) sum += rows[r][t] * q[t];
    out[r] = sum;
  }
}

// R gathered int4 rows against one query: each chunk's nibbles (0..15, unsigned) times the
// query's int8 bytes, pairs summed into int16 (at most 2 * 2 * 15 * 128, no saturation) and
// then into int32 lanes.
template <std::size_t R>
inline void i4_rows_tile(const std::uint8_t* const* rows, const std::int8_t* query,
                         const I4Query& q, std::int32_t* out) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
  for (std::size_t c = 0; c < q.chunks; ++c) {
    const std::int8_t* qc = c < q.full ? query + c * kI4ChunkColumns : q.tail;
    const __m256i q_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qc));
    const __m256i q_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qc + kI4ChunkBytes));
    for (std::size_t r = 0; r < R; ++r) {
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + c * kI4ChunkBytes));
      const __m256i low = _mm256_and_si256(x, nibble);
      const __m256i high = _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble);
      const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low, q_low),
                                             _mm256_maddubs_epi16(high, q_high));
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    out[r] = static_cast<std::int32_t>(static_cast<std::uint32_t>(hsum_epi32(acc[r])) - q.bias);
  }
}

struct I8Tiles {
  std::size_t d;
  const std::int8_t* q;
  template <std::size_t R>
  void score(const std::int8_t* const* rows, std::int32_t* out) const {
    i8_rows_tile<R>(rows, d, q, out);
  }
};

struct I4Tiles {
  const std::int8_t* q;
  const I4Query& query;
  template <std::size_t R>
  void score(const std::uint8_t* const* rows, std::int32_t* out) const {
    i4_rows_tile<R>(rows, q, query, out);
  }
};

}  // namespace

void dot_i8_rows(const std::int8_t* matrix, std::size_t d, const std::int64_t* ids,
                 std::size_t n, const std::int8_t* q, std::int32_t* out) {
  score_gathered(matrix, d, ids, n, out, I8Tiles{d, q});
}

void dot_i4_rows(const std::uint8_t* packed, std::size_t d, const std::int64_t* ids,
                 std::size_t n, const std::int8_t* q, std::int32_t* out) {
  const I4Query query = make_i4_query(q, d);
  score_gathered(packed, query.chunks * kI4ChunkBytes, ids, n, out, I4Tiles{q, query});
}

void dot_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
              std::size_t nq, float* out, std::size_t out_stride, float* row_sq_norms) {
  any_tile<false>(x, rows, d, q, nq, out, out_stride, row_sq_norms);
}

void l2sq_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
               std::size_t nq, float* out, std::size_t out_stride) {
  any_tile<true>(x, rows, d, q, nq, out, out_stride, nullptr);
}

void hamming64(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
               std::uint32_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint32_t>(_mm_popcnt_u64(codes[i] ^ query));
  }
}

void hamming_rows(const std::uint64_t* codes, std::size_t words, std::size_t start,
                  std::size_t end, const std::uint64_t* q, std::uint32_t* out) {
  for (std::size_t row = start; row < end; ++row) {
    const std::uint64_t* code = codes + row * words;
    std::uint64_t acc = 0;
    for (std::size_t w = 0; w < words; ++w) {
      acc += static_cast<std::uint64_t>(_mm_popcnt_u64(code[w] ^ q[w]));
    }
    out[row - start] = static_cast<std::uint32_t>(acc);
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
