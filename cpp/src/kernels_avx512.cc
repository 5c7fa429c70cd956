// AVX-512 kernels (F, DQ, BW, VL, with FMA).  CMakeLists.txt compiles this file alone with
// -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma; dispatch.cc calls it only after CPUID
// and XGETBV (opmask and ZMM state) confirm all of them.  Hamming and CRC32C come from the AVX2
// level: one POPCNT or CRC32 per word already outruns memory.  The avx512vnni level's int8 and
// int4 dot products live here too, built for VPDPBUSD by a target attribute; dispatch.cc uses
// them only where CPUID also reports AVX512_VNNI.
//
// Only intrinsics and plain loops here, never a standard-library template or other inline
// function shared with other files: the linker keeps one copy of such a function for the whole
// module, and if it kept this file's copy, baseline callers would run AVX-512 code.
#include <immintrin.h>

#include "pomaidb/gather.h"
#include "pomaidb/int4.h"
#include "pomaidb/kernels.h"

namespace pomai::avx512 {
namespace {

constexpr std::size_t kWidth = 16;

inline __mmask16 tail_mask(std::size_t rem) {
  return static_cast<__mmask16>((1u << rem) - 1u);
}

// Horizontal sum from zero-masking shuffles and extracts: GCC 12's unmasked forms (and the casts
// and _mm512_reduce_add_ps built on them) start from _mm512_undefined_ps() and trip
// -Wuninitialized, which the CI build makes an error.
inline float hsum(__m512 v) {
  constexpr __mmask16 kAll = 0xFFFF;
  __m512 s = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_maskz_shuffle_f32x4(kAll, s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  __m128 t = _mm512_maskz_extractf32x4_ps(0xF, s, 0);
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

// R rows of x against Q queries in one pass over the columns: every loaded x chunk feeds Q
// products and every loaded q chunk feeds R.  The last partial chunk is a masked load (zeros
// beyond the row), so there is no scalar tail.  Q == 0 computes norms only.  A (row, query)
// pair is summed in the same order whatever R and Q are: duplicate rows score bit-identically,
// and a query scores the same alone or in a batch.  (A second accumulator set per pair, as in
// the AVX2 file, measured no faster here and would not leave registers for the 4 x 4 tile.)
template <std::size_t R, std::size_t Q, bool kNorms, bool kL2>
inline void micro_tile(const float* x, std::size_t d, const float* const* q, float* out,
                       std::size_t out_stride, float* row_sq) {
  constexpr std::size_t kQ = Q > 0 ? Q : 1;
  __m512 acc[R][kQ];
  __m512 nrm[R];
  for (std::size_t r = 0; r < R; ++r) {
    nrm[r] = _mm512_setzero_ps();
    for (std::size_t j = 0; j < kQ; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  auto step = [&](std::size_t k, bool masked, __mmask16 m) {
    __m512 xv[R];
    for (std::size_t r = 0; r < R; ++r) {
      const float* p = x + r * d + k;
      xv[r] = masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
      if constexpr (kNorms) nrm[r] = _mm512_fmadd_ps(xv[r], xv[r], nrm[r]);
    }
    for (std::size_t j = 0; j < Q; ++j) {
      const float* p = q[j] + k;
      const __m512 qv = masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
      for (std::size_t r = 0; r < R; ++r) {
        if constexpr (kL2) {
          const __m512 diff = _mm512_sub_ps(xv[r], qv);
          acc[r][j] = _mm512_fmadd_ps(diff, diff, acc[r][j]);
        } else {
          acc[r][j] = _mm512_fmadd_ps(xv[r], qv, acc[r][j]);
        }
      }
    }
  };
  std::size_t k = 0;
  for (; k + kWidth <= d; k += kWidth) step(k, false, 0);
  if (k < d) step(k, true, tail_mask(d - k));
  for (std::size_t r = 0; r < R; ++r) {
    for (std::size_t j = 0; j < Q; ++j) out[j * out_stride + r] = hsum(acc[r][j]);
    if constexpr (kNorms) row_sq[r] = hsum(nrm[r]);
  }
}

// All rows against Q queries.  A single query takes rows one after another: streaming rows in
// order from memory measured twice as fast as interleaving four rows' streams.  With four
// queries the block is already in cache and four rows share each q chunk (16 accumulators,
// 4 norms, 4 x chunks and a q chunk: 25 of the 32 ZMM registers).  The Q query pointers are
// copied to locals so they stay in registers across rows.  `out` is null when Q == 0.
template <std::size_t Q, bool kNorms, bool kL2>
void rows_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
               float* out, std::size_t out_stride, float* row_sq) {
  constexpr std::size_t R = Q <= 1 ? 1 : 4;
  constexpr std::size_t kQ = Q > 0 ? Q : 1;
  const float* qp[kQ] = {};
  for (std::size_t j = 0; j < Q; ++j) qp[j] = q[j];
  std::size_t i = 0;
  for (; i + R <= rows; i += R) {
    micro_tile<R, Q, kNorms, kL2>(x + i * d, d, qp, Q > 0 ? out + i : out, out_stride,
                                  kNorms ? row_sq + i : nullptr);
  }
  for (; i < rows; ++i) {
    micro_tile<1, Q, kNorms, kL2>(x + i * d, d, qp, Q > 0 ? out + i : out, out_stride,
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

// 32 int8 values sign-extended to int16 lanes; lanes at or past `valid` read as zero.
inline __m512i load_i8x32(const std::int8_t* p, __mmask32 valid) {
  return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(valid, p));
}

// Zero-masking extracts, for the reason given at hsum().
inline std::int32_t hsum_epi32(__m512i v) {
  const __m256i half = _mm256_add_epi32(_mm512_maskz_extracti32x8_epi32(0xFF, v, 0),
                                        _mm512_maskz_extracti32x8_epi32(0xFF, v, 1));
  __m128i s = _mm_add_epi32(_mm256_maskz_extracti32x4_epi32(0xF, half, 0),
                            _mm256_maskz_extracti32x4_epi32(0xF, half, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// R gathered int8 rows against one query, 32 columns per step (int16 x int16 pairs summed
// into int32 lanes, exact for int8 inputs); the last partial step is a masked load.
template <std::size_t R>
inline void i8_rows_tile(const std::int8_t* const* rows, std::size_t d, const std::int8_t* q,
                         std::int32_t* out) {
  constexpr __mmask32 kAll = 0xFFFFFFFFu;
  __m512i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  for (std::size_t k = 0; k < d; k += 32) {
    const std::size_t rem = d - k;
    const __mmask32 valid = rem >= 32 ? kAll : static_cast<__mmask32>((1u << rem) - 1u);
    const __m512i qv = load_i8x32(q + k, valid);
    for (std::size_t r = 0; r < R; ++r) {
      acc[r] = _mm512_add_epi32(acc[r], _mm512_madd_epi16(load_i8x32(rows[r] + k, valid), qv));
    }
  }
  for (std::size_t r = 0; r < R; ++r) out[r] = hsum_epi32(acc[r]);
}

// The avx512vnni level's int8 dot products (its other kernels are this level's): VPDPBUSD sums
// four unsigned-by-signed byte products into each int32 lane, 64 columns a step against 32 on
// the int16 path above. A row byte r is read as the unsigned r + 128 (its sign bit flipped)
// and 128 * sum(q) is taken off at the end; int32 lanes wrap, so the difference is the exact
// dot whenever that fits in int32 (kernels.h), whatever the wrapped partial sums. Columns past
// d load as zero on both sides: (0 + 128) * 0 adds nothing.
#define POMAI_VNNI __attribute__((target("avx512vnni")))

template <std::size_t R>
POMAI_VNNI inline void i8_rows_tile_vnni(const std::int8_t* const* rows, std::size_t d,
                                         const std::int8_t* q, std::uint32_t bias,
                                         std::int32_t* out) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  for (std::size_t k = 0; k < d; k += 64) {
    const std::size_t rem = d - k;
    const __mmask64 valid = rem >= 64 ? ~__mmask64{0} : (__mmask64{1} << rem) - 1u;
    const __m512i qv = _mm512_maskz_loadu_epi8(valid, q + k);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i rv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(valid, rows[r] + k), flip);
      acc[r] = _mm512_dpbusd_epi32(acc[r], rv, qv);
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    out[r] = static_cast<std::int32_t>(static_cast<std::uint32_t>(hsum_epi32(acc[r])) - bias);
  }
}

// One 64-column chunk of a packed int4 row (pomaidb/int4.h) as 64 unsigned bytes (0..15): the
// low nibbles, then the high ones, lined up with the chunk's 64 query bytes.
// (The 32 bytes in both halves, the upper half shifted right by 4, then the nibble mask; the
// zero-masking forms for the reason given at hsum().)
inline __m512i load_i4_chunk(const std::uint8_t* p) {
  const __m512i shifts = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i both = _mm512_maskz_broadcast_i64x4(0xFF, x);
  return _mm512_and_si512(_mm512_maskz_srlv_epi64(0xFF, both, shifts), _mm512_set1_epi8(0x0F));
}

// R gathered int4 rows against one query: nibbles times query bytes, pairs summed into int16
// (at most 2 * 15 * 128, no saturation), then into int32 lanes.
template <std::size_t R>
inline void i4_rows_tile(const std::uint8_t* const* rows, const std::int8_t* query,
                         const I4Query& q, std::int32_t* out) {
  const __m512i ones = _mm512_set1_epi16(1);
  __m512i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < q.chunks; ++c) {
    const __m512i qv = _mm512_loadu_si512(c < q.full ? query + c * kI4ChunkColumns : q.tail);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i pairs = _mm512_maddubs_epi16(load_i4_chunk(rows[r] + c * kI4ChunkBytes), qv);
      acc[r] = _mm512_add_epi32(acc[r], _mm512_madd_epi16(pairs, ones));
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    out[r] = static_cast<std::int32_t>(static_cast<std::uint32_t>(hsum_epi32(acc[r])) - q.bias);
  }
}

// i4_rows_tile with VPDPBUSD, which sums the four byte products into each int32 lane at once.
template <std::size_t R>
POMAI_VNNI inline void i4_rows_tile_vnni(const std::uint8_t* const* rows,
                                         const std::int8_t* query, const I4Query& q,
                                         std::int32_t* out) {
  __m512i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < q.chunks; ++c) {
    const __m512i qv = _mm512_loadu_si512(c < q.full ? query + c * kI4ChunkColumns : q.tail);
    for (std::size_t r = 0; r < R; ++r) {
      acc[r] = _mm512_dpbusd_epi32(acc[r], load_i4_chunk(rows[r] + c * kI4ChunkBytes), qv);
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

struct I8TilesVnni {
  std::size_t d;
  const std::int8_t* q;
  std::uint32_t bias;
  template <std::size_t R>
  POMAI_VNNI void score(const std::int8_t* const* rows, std::int32_t* out) const {
    i8_rows_tile_vnni<R>(rows, d, q, bias, out);
  }
};

struct I4TilesVnni {
  const std::int8_t* q;
  const I4Query& query;
  template <std::size_t R>
  POMAI_VNNI void score(const std::uint8_t* const* rows, std::int32_t* out) const {
    i4_rows_tile_vnni<R>(rows, q, query, out);
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

POMAI_VNNI void dot_i8_rows_vnni(const std::int8_t* matrix, std::size_t d,
                                 const std::int64_t* ids, std::size_t n, const std::int8_t* q,
                                 std::int32_t* out) {
  std::uint32_t q_sum = 0;
  for (std::size_t k = 0; k < d; ++k) q_sum += static_cast<std::uint32_t>(q[k]);
  score_gathered(matrix, d, ids, n, out, I8TilesVnni{d, q, q_sum << 7});
}

POMAI_VNNI void dot_i4_rows_vnni(const std::uint8_t* packed, std::size_t d,
                                 const std::int64_t* ids, std::size_t n, const std::int8_t* q,
                                 std::int32_t* out) {
  const I4Query query = make_i4_query(q, d);
  score_gathered(packed, query.chunks * kI4ChunkBytes, ids, n, out, I4TilesVnni{q, query});
}

#undef POMAI_VNNI

void dot_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
              std::size_t nq, float* out, std::size_t out_stride, float* row_sq_norms) {
  any_tile<false>(x, rows, d, q, nq, out, out_stride, row_sq_norms);
}

void l2sq_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
               std::size_t nq, float* out, std::size_t out_stride) {
  any_tile<true>(x, rows, d, q, nq, out, out_stride, nullptr);
}

}  // namespace pomai::avx512
