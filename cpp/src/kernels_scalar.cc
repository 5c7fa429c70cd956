// Baseline kernels (plain x86-64, SSE2): the fallback on CPUs without AVX2 and the level every
// SIMD file must agree with.  Compiled with the project's default flags only.
#include <bit>
#include <cstring>

#include "pomaidb/int4.h"
#include "pomaidb/kernels.h"

namespace pomai::scalar {
namespace {

// Independent partial sums: without -ffast-math the compiler may not reorder a float reduction,
// so one accumulator would serialise every add behind the previous one.
constexpr std::size_t kLanes = 8;

float sum_lanes(const float (&acc)[kLanes]) {
  float total = 0.0f;
  for (float v : acc) total += v;
  return total;
}

float dot(const float* a, const float* b, std::size_t d) {
  float acc[kLanes] = {};
  std::size_t k = 0;
  for (; k + kLanes <= d; k += kLanes) {
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[k + l] * b[k + l];
  }
  float tail = 0.0f;
  for (; k < d; ++k) tail += a[k] * b[k];
  return sum_lanes(acc) + tail;
}

float l2sq(const float* a, const float* b, std::size_t d) {
  float acc[kLanes] = {};
  std::size_t k = 0;
  for (; k + kLanes <= d; k += kLanes) {
    for (std::size_t l = 0; l < kLanes; ++l) {
      const float diff = a[k + l] - b[k + l];
      acc[l] += diff * diff;
    }
  }
  float tail = 0.0f;
  for (; k < d; ++k) tail += (a[k] - b[k]) * (a[k] - b[k]);
  return sum_lanes(acc) + tail;
}

// CRC32C tables for slicing-by-8: table[0] is the classic byte table, table[s][b] advances the
// CRC of byte b by s further zero bytes, so eight bytes are folded with eight lookups.
using CrcTables = std::uint32_t[8][256];

struct Crc32cTables {
  CrcTables t{};
  constexpr Crc32cTables() {
    constexpr std::uint32_t kPolyReflected = 0x82F63B78u;
    for (std::uint32_t b = 0; b < 256; ++b) {
      std::uint32_t crc = b;
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kPolyReflected : 0u);
      t[0][b] = crc;
    }
    for (std::size_t s = 1; s < 8; ++s) {
      for (std::size_t b = 0; b < 256; ++b) {
        t[s][b] = (t[s - 1][b] >> 8) ^ t[0][t[s - 1][b] & 0xFFu];
      }
    }
  }
};

constexpr Crc32cTables kCrc;

}  // namespace

void dot_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
              std::size_t nq, float* out, std::size_t out_stride, float* row_sq_norms) {
  for (std::size_t i = 0; i < rows; ++i) {
    const float* row = x + i * d;
    if (row_sq_norms != nullptr) row_sq_norms[i] = dot(row, row, d);
    for (std::size_t j = 0; j < nq; ++j) out[j * out_stride + i] = dot(row, q[j], d);
  }
}

void l2sq_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,
               std::size_t nq, float* out, std::size_t out_stride) {
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < nq; ++j) out[j * out_stride + i] = l2sq(x + i * d, q[j], d);
  }
}

void dot_i8_rows(const std::int8_t* matrix, std::size_t d, const std::int64_t* ids,
                 std::size_t n, const std::int8_t* q, std::int32_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::int8_t* row = matrix + static_cast<std::size_t>(ids[i]) * d;
    std::int32_t acc = 0;
    for (std::size_t k = 0; k < d; ++k) acc += row[k] * q[k];
    out[i] = acc;
  }
}

void dot_i4_rows(const std::uint8_t* packed, std::size_t d, const std::int64_t* ids,
                 std::size_t n, const std::int8_t* q, std::int32_t* out) {
  const std::size_t row_bytes = (d + kI4ChunkColumns - 1) / kI4ChunkColumns * kI4ChunkBytes;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* row = packed + static_cast<std::size_t>(ids[i]) * row_bytes;
    std::int32_t acc = 0;
    for (std::size_t col = 0; col < d; ++col) {
      const std::size_t lane = col % kI4ChunkColumns;
      const unsigned byte = row[col / kI4ChunkColumns * kI4ChunkBytes + lane % kI4ChunkBytes];
      const unsigned nibble = lane < kI4ChunkBytes ? byte & 0x0Fu : byte >> 4;
      acc += (static_cast<std::int32_t>(nibble) - kI4Bias) * q[col];
    }
    out[i] = acc;
  }
}

void hamming64(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
               std::uint32_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint32_t>(std::popcount(codes[i] ^ query));
  }
}

void hamming_rows(const std::uint64_t* codes, std::size_t words, std::size_t start,
                  std::size_t end, const std::uint64_t* q, std::uint32_t* out) {
  for (std::size_t row = start; row < end; ++row) {
    const std::uint64_t* code = codes + row * words;
    std::uint32_t acc = 0;
    for (std::size_t w = 0; w < words; ++w) {
      acc += static_cast<std::uint32_t>(std::popcount(code[w] ^ q[w]));
    }
    out[row - start] = acc;
  }
}

std::uint32_t crc32c(std::uint32_t crc, const unsigned char* data, std::size_t len) {
  const auto& t = kCrc.t;
  crc = ~crc;
  for (; len >= 8; len -= 8, data += 8) {
    std::uint64_t word;
    std::memcpy(&word, data, sizeof word);  // little-endian load, any alignment
    word ^= crc;
    crc = t[7][word & 0xFF] ^ t[6][(word >> 8) & 0xFF] ^ t[5][(word >> 16) & 0xFF] ^
          t[4][(word >> 24) & 0xFF] ^ t[3][(word >> 32) & 0xFF] ^ t[2][(word >> 40) & 0xFF] ^
          t[1][(word >> 48) & 0xFF] ^ t[0][word >> 56];
  }
  for (; len > 0; --len, ++data) crc = (crc >> 8) ^ t[0][(crc ^ *data) & 0xFFu];
  return ~crc;
}

}  // namespace pomai::scalar
