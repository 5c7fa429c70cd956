// Packing of int4 rows (see pomaidb/int4.h).  Built for the baseline ISA.
#include "pomaidb/int4.h"

#include <algorithm>

namespace pomai {

std::size_t i4_row_bytes(std::size_t d) {
  return (d + kI4ChunkColumns - 1) / kI4ChunkColumns * kI4ChunkBytes;
}

bool pack_i4_rows(const std::int8_t* rows, std::size_t n, std::size_t d, std::uint8_t* out) {
  const std::size_t row_bytes = i4_row_bytes(d);
  const std::size_t whole = d / kI4ChunkColumns;
  // value + kI4Bias wraps into a byte, which fits a nibble iff the value lies in [-8, 7]: the
  // OR of every such byte has no high bit set. Whole chunks go without a branch (the compiler
  // vectorises them), then the partial one.
  const auto biased = [](std::int8_t value) { return static_cast<std::uint8_t>(value + kI4Bias); };
  unsigned seen = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int8_t* row = rows + i * d;
    std::uint8_t* packed = out + i * row_bytes;
    for (std::size_t c = 0; c < whole; ++c) {
      const std::int8_t* columns = row + c * kI4ChunkColumns;
      for (std::size_t j = 0; j < kI4ChunkBytes; ++j) {
        const std::uint8_t low = biased(columns[j]);
        const std::uint8_t high = biased(columns[j + kI4ChunkBytes]);
        seen |= low | high;
        packed[c * kI4ChunkBytes + j] = static_cast<std::uint8_t>(low | high << 4);
      }
    }
    for (std::size_t j = 0; j < row_bytes - whole * kI4ChunkBytes; ++j) {
      const std::size_t col = whole * kI4ChunkColumns + j;
      const std::uint8_t low = col < d ? biased(row[col]) : kI4Bias;
      const std::uint8_t high = col + kI4ChunkBytes < d ? biased(row[col + kI4ChunkBytes]) : kI4Bias;
      seen |= low | high;
      packed[whole * kI4ChunkBytes + j] = static_cast<std::uint8_t>(low | high << 4);
    }
  }
  return (seen & 0xF0u) == 0;
}

I4Query make_i4_query(const std::int8_t* q, std::size_t d) {
  I4Query query{d / kI4ChunkColumns, (d + kI4ChunkColumns - 1) / kI4ChunkColumns, 0, {}};
  const std::size_t whole = query.full * kI4ChunkColumns;
  std::copy(q + whole, q + d, query.tail);
  std::uint32_t sum = 0;
  for (std::size_t k = 0; k < d; ++k) sum += static_cast<std::uint32_t>(q[k]);
  query.bias = sum * static_cast<std::uint32_t>(kI4Bias);
  return query;
}

}  // namespace pomai
