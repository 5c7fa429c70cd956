// Rows of small integers packed two to a byte: the WSBR centroid table (values in [-8, 7], see
// pomaidb_core/wsbr.py), which a search reads whole for every query and segment, at half the
// bytes of int8 rows.
//
// A packed row of d values is ceil(d / 64) chunks of 32 bytes.  Byte j of chunk c holds column
// 64c + j in its low nibble and column 64c + 32 + j in its high nibble, each as value + 8
// (0..15); columns past d hold 8 (value 0).  One chunk's low nibbles thus line up with 32
// consecutive query bytes and its high nibbles with the next 32, as the SIMD levels load them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pomai {

constexpr std::size_t kI4ChunkColumns = 64;
constexpr std::size_t kI4ChunkBytes = 32;
constexpr int kI4Bias = 8;  // a nibble holds value + kI4Bias

// Bytes of one packed row of d values.
std::size_t i4_row_bytes(std::size_t d);

// Packs n rows of d int8 values into out (n * i4_row_bytes(d) bytes).  Returns false, out
// unspecified, when some value lies outside [-8, 7].
bool pack_i4_rows(const std::int8_t* rows, std::size_t n, std::size_t d, std::uint8_t* out);

// A query of d int8 values as the SIMD kernels read it against packed rows: whole chunks read
// the query itself, the last partial one `tail` (its columns, then zeros: a zero query byte
// adds nothing whatever the nibble), and every sum takes off `bias` = kI4Bias * sum(q) in
// wrapping uint32 (a nibble holds value + kI4Bias).  Plain data, filled by make_i4_query in
// baseline code: the level files share no inline code (see kernels_avx2.cc).
struct I4Query {
  std::size_t full;    // whole chunks
  std::size_t chunks;  // all chunks
  std::uint32_t bias;
  alignas(64) std::int8_t tail[kI4ChunkColumns];
};

I4Query make_i4_query(const std::int8_t* q, std::size_t d);

}  // namespace pomai
