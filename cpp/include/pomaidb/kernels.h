// The hot loops of PomaiDB, one implementation per instruction-set level.
//
// Every level exports the same functions in its own namespace (pomai::scalar, pomai::avx2,
// pomai::avx512); dispatch.cc gathers one level's functions into a KernelTable and makes it the
// active one.  Each level lives in its own source file compiled with its own -m flags, so only
// the file of a level the CPU supports ever runs.
//
// Shared contract: pointers are valid for the sizes given, float matrices are row-major with
// row length `d` (rows `d` floats apart), outputs do not alias inputs.  Kernels allocate nothing,
// throw nothing and never touch Python: the bindings call them with the GIL released.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pomai {

// Queries come as `nq` row pointers q[0..nq), each to `d` floats, so a block can be scored
// against any subset of a query batch (block-routed search) without copying the queries.
//
// out[j * out_stride + i] = <x_i, q_j> for i < rows, j < nq.  When row_sq_norms is not null it
// also receives |x_i|^2, computed in the same pass over x (cosine needs both and x is the
// memory-bound operand).  nq may be 0 (q null) to compute norms only.
//
// Determinism: a (row, query) pair is summed in the same order whatever rows, nq, the pair's
// position in the tile or the other pointers are, so a query scores a row bit-identically
// alone, in any batch, and through any search entry point.
using DotTileFn = void (*)(const float* x, std::size_t rows, std::size_t d,
                           const float* const* q, std::size_t nq, float* out,
                           std::size_t out_stride, float* row_sq_norms);

// out[j * out_stride + i] = |x_i - q_j|^2, summed from the differences (not from norms and dots,
// which cancel catastrophically for near neighbours, the rows that matter).  Same query
// pointers and determinism as DotTileFn.
using L2sqTileFn = void (*)(const float* x, std::size_t rows, std::size_t d,
                            const float* const* q, std::size_t nq, float* out,
                            std::size_t out_stride);

// out[i] = <matrix row ids[i], q> over d int8 columns, summed exactly in int32 (callers keep
// d * 128 * 128 below 2^31).  Integer sums do not depend on their order, so every level
// returns the same values.
using DotI8RowsFn = void (*)(const std::int8_t* matrix, std::size_t d, const std::int64_t* ids,
                             std::size_t n, const std::int8_t* q, std::int32_t* out);

// DotI8RowsFn over rows packed by pack_i4_rows (pomaidb/int4.h): out[i] = <unpacked row ids[i],
// q>, the same exact integers.
using DotI4RowsFn = void (*)(const std::uint8_t* packed, std::size_t d, const std::int64_t* ids,
                             std::size_t n, const std::int8_t* q, std::int32_t* out);

// out[i] = popcount(codes[i] ^ query).
using Hamming64Fn = void (*)(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
                             std::uint32_t* out);

// out[i] = sum over w < words of popcount(codes[(start + i) * words + w] ^ q[w]), for the rows
// start <= row < end of a (rows, words) matrix of multi-word bit codes.
using HammingRowsFn = void (*)(const std::uint64_t* codes, std::size_t words, std::size_t start,
                               std::size_t end, const std::uint64_t* q, std::uint32_t* out);

// Continues a CRC32C (Castagnoli, reflected polynomial 0x82F63B78) over `len` more bytes.
// `crc` is a finished checksum (0 for none), so crc32c(b, crc32c(a)) == crc32c(a + b).
using Crc32cFn = std::uint32_t (*)(std::uint32_t crc, const unsigned char* data, std::size_t len);

struct KernelTable {
  const char* name;  // "scalar" | "avx2" | "avx512" | "avx512vnni", as reported to Python
  DotTileFn dot_tile;
  L2sqTileFn l2sq_tile;
  DotI8RowsFn dot_i8_rows;
  DotI4RowsFn dot_i4_rows;
  Hamming64Fn hamming64;
  HammingRowsFn hamming_rows;
  Crc32cFn crc32c;
};

// The similarity kernels exist at every level.
#define POMAI_DECLARE_SIMILARITY_KERNELS(ns)                                                     \
  namespace ns {                                                                                 \
  void dot_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,          \
                std::size_t nq, float* out, std::size_t out_stride, float* row_sq_norms);        \
  void l2sq_tile(const float* x, std::size_t rows, std::size_t d, const float* const* q,         \
                 std::size_t nq, float* out, std::size_t out_stride);                            \
  void dot_i8_rows(const std::int8_t* matrix, std::size_t d, const std::int64_t* ids,            \
                   std::size_t n, const std::int8_t* q, std::int32_t* out);                      \
  void dot_i4_rows(const std::uint8_t* packed, std::size_t d, const std::int64_t* ids,           \
                   std::size_t n, const std::int8_t* q, std::int32_t* out);                      \
  }

POMAI_DECLARE_SIMILARITY_KERNELS(scalar)
POMAI_DECLARE_SIMILARITY_KERNELS(avx2)
POMAI_DECLARE_SIMILARITY_KERNELS(avx512)

#undef POMAI_DECLARE_SIMILARITY_KERNELS

// The avx512vnni level: the AVX-512 level with VPDPBUSD int8 and int4 dot products.
namespace avx512 {
void dot_i8_rows_vnni(const std::int8_t* matrix, std::size_t d, const std::int64_t* ids,
                      std::size_t n, const std::int8_t* q, std::int32_t* out);
void dot_i4_rows_vnni(const std::uint8_t* packed, std::size_t d, const std::int64_t* ids,
                      std::size_t n, const std::int8_t* q, std::int32_t* out);
}  // namespace avx512

// Hamming and CRC32C need only POPCNT and SSE4.2, which the AVX2 level includes; the AVX-512
// level reuses them (popcount of one word per cycle already outruns memory).
namespace scalar {
void hamming64(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
               std::uint32_t* out);
void hamming_rows(const std::uint64_t* codes, std::size_t words, std::size_t start,
                  std::size_t end, const std::uint64_t* q, std::uint32_t* out);
std::uint32_t crc32c(std::uint32_t crc, const unsigned char* data, std::size_t len);
}  // namespace scalar

namespace avx2 {
void hamming64(const std::uint64_t* codes, std::size_t n, std::uint64_t query,
               std::uint32_t* out);
void hamming_rows(const std::uint64_t* codes, std::size_t words, std::size_t start,
                  std::size_t end, const std::uint64_t* q, std::uint32_t* out);
std::uint32_t crc32c(std::uint32_t crc, const unsigned char* data, std::size_t len);
}  // namespace avx2

}  // namespace pomai
