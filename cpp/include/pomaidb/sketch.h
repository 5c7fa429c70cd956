// The 64-bit WSBR sketch of one routing-space row (wsbr.py's docstring, "Determinism"): the
// row minus mu, quantised to integers in [-L, L], against the sidecar's int8 projection.
// Shared by block selection (query sketches) and the build's row pass (row sketches), so a
// row and a query are sketched by the same float steps.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pomaidb/kernels.h"

namespace pomai {

inline constexpr std::size_t kSketchBits = 64;

// max |row[i]| (0 for an empty row), in four independent chains: a maximum is exact in any
// order, and one chain waits on each comparison in turn.
float max_abs(const float* row, std::size_t dim);

// wsbr.quantize of one row: scaled so its largest |component| is `level`, rounded half to
// even (np.rint); a zero row stays zero, and so does one whose level / max |row| overflows.
// Returns max |row|.
float quantize_row(const float* row, std::size_t dim, float level, std::int8_t* out);

// Scratch one sketch needs; size it once with `dim` and reuse it row after row.
struct SketchScratch {
  float* centred;      // dim floats
  std::int8_t* q8;     // dim bytes
  std::int32_t* dots;  // kSketchBits ints
};

// Bit j set iff projection[j] . Q(routing_row - mu) > 0 (projection is kSketchBits x dim).
std::uint64_t sketch_row(const KernelTable& kernels, const float* routing_row, std::size_t dim,
                         const float* mu, const std::int8_t* projection, float level,
                         const SketchScratch& scratch);

}  // namespace pomai
