// Cosine's routing space: every row over its length.  A length is summed in double in one
// fixed order, the same on every ISA level and machine, so a segment's rows (read through
// wsbr_build.UnitRowView with these inverse lengths) and a search's queries are scaled by the
// same float steps wherever they are computed.  A search scales its query here in one call
// (numpy took five calls, about 25 us a query in a running engine).
// Pure C++: callers validate inputs and release the GIL.
#pragma once

#include <cstddef>

#include "pomaidb/search.h"

namespace pomai {

// float(1 / sqrt(sum of row[i]^2)), the sum and root in double, or 0 for a zero row.
float inverse_norm(const float* row, std::size_t dim);

// out[i] = inverse_norm(rows row i).
void compute_inverse_norms(Matrix rows, float* out);

// out row i = rows row i * inverse_norm(rows row i), one float product a value.
void compute_unit_rows(Matrix rows, float* out);

}  // namespace pomai
