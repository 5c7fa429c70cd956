// Scoring rows gathered by id, shared by the instruction-set level files.  Deliberately in an
// unnamed namespace: each level file compiles its own copy with its own -m flags, so no
// instance is shared between levels (see the note on inline code in kernels_avx2.cc), and it
// is always inlined, so a caller built for more (the VNNI functions' target attribute) inlines
// its tiles into code built for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pomai {
namespace {

// Scores the rows `ids` of a table whose rows lie `stride` elements apart through `tiles` (a
// class with score<R>(rows, out)): four rows a tile, then one by one.
template <typename T, typename Tiles>
__attribute__((always_inline)) inline void score_gathered(const T* table, std::size_t stride,
                                                          const std::int64_t* ids, std::size_t n,
                                                          std::int32_t* out, const Tiles& tiles) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const T* rows[4];
    for (std::size_t r = 0; r < 4; ++r) {
      rows[r] = table + static_cast<std::size_t>(ids[i + r]) * stride;
    }
    tiles.template score<4>(rows, out + i);
  }
  for (; i < n; ++i) {
    const T* row = table + static_cast<std::size_t>(ids[i]) * stride;
    tiles.template score<1>(&row, out + i);
  }
}

}  // namespace
}  // namespace pomai
