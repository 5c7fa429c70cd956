// Packing of int4 rows (see pomaidb/int4.h).  Built for the baseline ISA.
#include "pomaidb/int4.h"

#include <algorithm>

namespace pomai {

std::size_t i4_row_bytes(std::size_t d) {
  return (d + kI4ChunkColumns - 1) / kI4ChunkColumns * kI4ChunkBytes;
}

bool pack_i4_rows(const std::int8_t* rows, std::size_t n, std::size_t d, std::uint8_t* out) {
  const std::size_t row_bytes = i4_row_bytes(d);
  std::fill(out, out + n * row_bytes, static_cast<std::uint8_t>(kI4Bias | (kI4Bias << 4)));
  for (std::size_t i = 0; i < n; ++i) {
    const std::int8_t* row = rows + i * d;
    std::uint8_t* packed = out + i * row_bytes;
    for (std::size_t col = 0; col < d; ++col) {
      if (row[col] < -kI4Bias || row[col] >= kI4Bias) return false;
      const auto nibble = static_cast<std::uint8_t>(row[col] + kI4Bias);
      const std::size_t lane = col % kI4ChunkColumns;
      std::uint8_t& byte = packed[col / kI4ChunkColumns * kI4ChunkBytes + lane % kI4ChunkBytes];
      byte = lane < kI4ChunkBytes ? static_cast<std::uint8_t>((byte & 0xF0u) | nibble)
                                  : static_cast<std::uint8_t>((byte & 0x0Fu) | (nibble << 4));
    }
  }
  return true;
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
