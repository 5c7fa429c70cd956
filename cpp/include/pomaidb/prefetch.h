// Software prefetch of a run of bytes, for rows the hardware prefetchers cannot foresee: a
// query's scattered blocks, shortlisted centroids and surviving rows.
#pragma once

#include <cstddef>

namespace pomai {

// Asks for every cache line of [first, first + bytes), for reading, kept in the outer caches.
inline void prefetch_bytes(const void* first, std::size_t bytes) {
  constexpr std::size_t kLine = 64;
  const auto* base = static_cast<const char*>(first);
  for (std::size_t b = 0; b < bytes; b += kLine) __builtin_prefetch(base + b, 0, 1);
}

}  // namespace pomai
