// pomaidb_core._kernels: the private compiled module behind pomaidb_core/kernels.py.
//
// The boundary is batch-shaped: numpy arrays are used in place (never copied or converted), the
// GIL is released around every loop, and a wrong dtype, layout or shape raises
// pomaidb_core.errors.InvalidArgumentError saying how to fix it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pomaidb/bm25.h"
#include "pomaidb/dispatch.h"
#include "pomaidb/int4.h"
#include "pomaidb/prefilter.h"
#include "pomaidb/rank.h"
#include "pomaidb/route.h"
#include "pomaidb/row_codes.h"
#include "pomaidb/search.h"
#include "pomaidb/task_pool.h"
#include "pomaidb/unit_rows.h"

namespace py = pybind11;

namespace pomai {
namespace {

// pomaidb_core.errors.InvalidArgumentError, resolved when the module is imported.
py::handle g_invalid_argument;

[[noreturn]] void invalid(const std::string& message) {
  PyErr_SetString(g_invalid_argument.ptr(), message.c_str());
  throw py::error_already_set();
}

std::string describe(const py::handle& obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

// Checks that `obj` is an ndarray of dtype T (native byte order) with `ndim` dimensions, C
// contiguous and aligned, and returns it unchanged: the kernels index it as a flat buffer.
template <typename T>
py::array require_array(const py::object& obj, const char* name, py::ssize_t ndim,
                        const char* np_dtype) {
  const std::string fix =
      std::string("; use np.ascontiguousarray(") + name + ", dtype=np." + np_dtype + ")";
  if (!py::isinstance<py::array>(obj)) {
    invalid(std::string(name) + " must be a numpy array, got " + describe(obj) + fix);
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().equal(py::dtype::of<T>())) {
    invalid(std::string(name) + " must have dtype " + np_dtype + ", got " +
            py::str(arr.dtype()).cast<std::string>() + fix);
  }
  if (arr.ndim() != ndim) {
    invalid(std::string(name) + " must be " + std::to_string(ndim) + "-dimensional, got shape " +
            py::str(obj.attr("shape")).cast<std::string>());
  }
  if ((arr.flags() & py::array::c_style) == 0) {
    invalid(std::string(name) + " must be C-contiguous (it is a strided view)" + fix);
  }
  if ((arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) == 0) {
    invalid(std::string(name) + " must be aligned to its dtype; use np.require(" + name +
            ", np." + np_dtype + ", ['C', 'A'])");
  }
  return arr;
}

Matrix as_matrix(const py::array& arr) {
  return {static_cast<const float*>(arr.data()), static_cast<std::size_t>(arr.shape(0)),
          static_cast<std::size_t>(arr.shape(1))};
}

Matrix require_vectors(const py::object& obj) {
  py::array arr = require_array<float>(obj, "vectors", 2, "float32");
  if (arr.shape(1) == 0) invalid("vectors must have at least one column, got shape (n, 0)");
  return as_matrix(arr);
}

Matrix require_queries(const py::object& obj, const Matrix& vectors) {
  Matrix queries = as_matrix(require_array<float>(obj, "queries", 2, "float32"));
  if (queries.cols != vectors.cols) {
    invalid("queries have " + std::to_string(queries.cols) + " columns but vectors have " +
            std::to_string(vectors.cols));
  }
  return queries;
}

Metric parse_metric(const std::string& name) {
  if (name == "ip") return Metric::kIp;
  if (name == "cosine") return Metric::kCosine;
  if (name == "l2") return Metric::kL2;
  invalid("metric must be one of 'ip', 'cosine', 'l2', got '" + name + "'");
}

const std::uint8_t* require_mask(const py::object& obj, std::size_t n) {
  if (obj.is_none()) return nullptr;
  const bool is_bool = py::isinstance<py::array>(obj) &&
                       py::reinterpret_borrow<py::array>(obj).dtype().kind() == 'b';
  py::array arr = is_bool ? require_array<bool>(obj, "mask", 1, "bool_")
                          : require_array<std::uint8_t>(obj, "mask", 1, "uint8");
  if (static_cast<std::size_t>(arr.shape(0)) != n) {
    invalid("mask has " + std::to_string(arr.shape(0)) + " entries but vectors have " +
            std::to_string(n) + " rows");
  }
  return static_cast<const std::uint8_t*>(arr.data());
}

std::string shape_of(const py::object& obj) {
  return py::str(obj.attr("shape")).cast<std::string>();
}

// An int64 array of [start, end) pairs, each checked to satisfy 0 <= start <= end <= n.
std::vector<RowRange> require_pairs(const py::object& obj, const std::string& name,
                                    const std::string& shape, std::size_t n) {
  py::array arr = require_array<std::int64_t>(obj, name.c_str(), 2, "int64");
  if (arr.shape(1) != 2) {
    invalid(name + " must have shape " + shape + " of [start, end) pairs, got shape " +
            shape_of(obj));
  }
  const auto* pairs = static_cast<const std::int64_t*>(arr.data());
  std::vector<RowRange> ranges;
  ranges.reserve(static_cast<std::size_t>(arr.shape(0)));
  for (py::ssize_t i = 0; i < arr.shape(0); ++i) {
    const std::int64_t start = pairs[2 * i];
    const std::int64_t end = pairs[2 * i + 1];
    if (start < 0 || end < start || static_cast<std::uint64_t>(end) > n) {
      invalid(name + "[" + std::to_string(i) + "] = [" + std::to_string(start) + ", " +
              std::to_string(end) + ") must satisfy 0 <= start <= end <= " + std::to_string(n));
    }
    ranges.push_back({static_cast<std::size_t>(start), static_cast<std::size_t>(end)});
  }
  return ranges;
}

std::vector<RowRange> require_ranges(const py::object& obj, std::size_t n) {
  if (obj.is_none()) return {{0, n}};
  return normalize_ranges(require_pairs(obj, "row_ranges", "(m, 2)", n));
}

py::array_t<float> scores(const py::object& vectors_obj, const py::object& queries_obj,
                          const std::string& metric_name) {
  const Matrix vectors = require_vectors(vectors_obj);
  const Matrix queries = require_queries(queries_obj, vectors);
  const Metric metric = parse_metric(metric_name);
  py::array_t<float> out({queries.rows, vectors.rows});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_scores(active_kernels(), vectors, queries, metric, dst);
  }
  return out;
}

py::tuple topk(const py::object& vectors_obj, const py::object& queries_obj, std::int64_t k,
               const std::string& metric_name, const py::object& mask_obj,
               const py::object& ranges_obj) {
  TopkRequest request{};
  request.vectors = require_vectors(vectors_obj);
  request.queries = require_queries(queries_obj, request.vectors);
  request.metric = parse_metric(metric_name);
  if (k < 1) invalid("k must be >= 1, got " + std::to_string(k));
  request.k = static_cast<std::size_t>(k);
  request.mask = require_mask(mask_obj, request.vectors.rows);
  request.ranges = require_ranges(ranges_obj, request.vectors.rows);
  py::array_t<float> out_scores({request.queries.rows, request.k});
  py::array_t<std::int64_t> out_rows({request.queries.rows, request.k});
  float* scores_dst = out_scores.mutable_data();
  std::int64_t* rows_dst = out_rows.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_topk(active_kernels(), request, scores_dst, rows_dst);
  }
  return py::make_tuple(out_scores, out_rows);
}

// One pass when the non-empty ranges come in row order (a segment's blocks do); otherwise the
// rows they cover, once merged, must number as many as their sizes add up to.
bool ranges_disjoint(const std::vector<RowRange>& ranges) {
  std::size_t end = 0;
  bool in_order = true;
  for (const RowRange& r : ranges) {
    if (r.start == r.end) continue;
    in_order = in_order && r.start >= end;
    end = r.end;
  }
  if (in_order) return true;
  std::size_t total = 0;
  for (const RowRange& r : ranges) total += r.end - r.start;
  std::size_t covered = 0;
  for (const RowRange& r : normalize_ranges(ranges)) covered += r.end - r.start;
  return covered == total;
}

// The rows of a block are [start, end); blocks may come in any order and be empty, but never
// share a row, so a query's rows are exactly the union of its blocks.
std::vector<RowRange> require_block_ranges(const py::object& obj, std::size_t n) {
  std::vector<RowRange> blocks = require_pairs(obj, "block_ranges", "(n_blocks, 2)", n);
  if (!ranges_disjoint(blocks)) {
    invalid("block_ranges must not overlap: a row belongs to one block");
  }
  return blocks;
}

// A segment's block ranges, checked once (kernels.BlockRanges): checking an (n_blocks, 2) array
// on every call was a pass over all the blocks per query and segment, 7 us at 2.5k blocks.
struct BlockRanges {
  std::vector<RowRange> ranges;
  std::size_t n_rows;
};

BlockRanges make_block_ranges(const py::object& obj, std::int64_t n_rows) {
  if (n_rows < 0) invalid("n_rows must be >= 0, got " + std::to_string(n_rows));
  const auto n = static_cast<std::size_t>(n_rows);
  return {require_block_ranges(obj, n), n};
}

// The block ranges of a call: a BlockRanges made for these vectors' n rows, or an array checked
// now into `scratch`.
std::span<const RowRange> call_block_ranges(const py::object& obj, std::size_t n,
                                            std::vector<RowRange>& scratch) {
  if (py::isinstance<BlockRanges>(obj)) {
    const auto& table = obj.cast<const BlockRanges&>();
    if (table.n_rows != n) {
      invalid("block_ranges were made for " + std::to_string(table.n_rows) +
              " rows but vectors have " + std::to_string(n));
    }
    return table.ranges;
  }
  scratch = require_block_ranges(obj, n);
  return scratch;
}

// ptr (nq + 1,) and blocks (m,) int64: query j's block ids are blocks[ptr[j]:ptr[j + 1]].
std::pair<const std::int64_t*, const std::int64_t*> require_query_blocks(
    const py::object& ptr_obj, const py::object& blocks_obj, std::size_t nq,
    std::size_t n_blocks) {
  py::array ptr_arr = require_array<std::int64_t>(ptr_obj, "ptr", 1, "int64");
  py::array blocks_arr = require_array<std::int64_t>(blocks_obj, "blocks", 1, "int64");
  if (static_cast<std::size_t>(ptr_arr.shape(0)) != nq + 1) {
    invalid("ptr must have one entry per query plus one (" + std::to_string(nq + 1) +
            "), got shape " + shape_of(ptr_obj));
  }
  const auto* ptr = static_cast<const std::int64_t*>(ptr_arr.data());
  const auto m = static_cast<std::int64_t>(blocks_arr.shape(0));
  if (ptr[0] != 0 || ptr[nq] != m) {
    invalid("ptr must start at 0 and end at len(blocks) = " + std::to_string(m) + ", got " +
            std::to_string(ptr[0]) + " and " + std::to_string(ptr[nq]));
  }
  for (std::size_t j = 0; j < nq; ++j) {
    if (ptr[j + 1] < ptr[j]) invalid("ptr must be non-decreasing, but ptr[" +
                                     std::to_string(j + 1) + "] < ptr[" + std::to_string(j) + "]");
  }
  const auto* blocks = static_cast<const std::int64_t*>(blocks_arr.data());
  const auto limit = static_cast<std::int64_t>(n_blocks);
  const auto bad = std::find_if(blocks, blocks + m,
                                [limit](std::int64_t b) { return b < 0 || b >= limit; });
  if (bad != blocks + m) {
    invalid("blocks[" + std::to_string(bad - blocks) + "] = " + std::to_string(*bad) +
            " is not a block id in [0, " + std::to_string(n_blocks) + ")");
  }
  return {ptr, blocks};
}

py::tuple topk_blocks(const py::object& vectors_obj, const py::object& queries_obj,
                      std::int64_t k, const std::string& metric_name, const py::object& mask_obj,
                      const py::object& ranges_obj, const py::object& ptr_obj,
                      const py::object& blocks_obj) {
  BlockTopkRequest request{};
  request.vectors = require_vectors(vectors_obj);
  request.queries = require_queries(queries_obj, request.vectors);
  request.metric = parse_metric(metric_name);
  if (k < 1) invalid("k must be >= 1, got " + std::to_string(k));
  request.k = static_cast<std::size_t>(k);
  request.mask = require_mask(mask_obj, request.vectors.rows);
  std::vector<RowRange> scratch;
  request.blocks = call_block_ranges(ranges_obj, request.vectors.rows, scratch);
  std::tie(request.query_block_ptr, request.query_blocks) =
      require_query_blocks(ptr_obj, blocks_obj, request.queries.rows, request.blocks.size());
  py::array_t<float> out_scores({request.queries.rows, request.k});
  py::array_t<std::int64_t> out_rows({request.queries.rows, request.k});
  float* scores_dst = out_scores.mutable_data();
  std::int64_t* rows_dst = out_rows.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_topk_blocks(active_kernels(), request, scores_dst, rows_dst);
  }
  return py::make_tuple(out_scores, out_rows);
}

// Checks that `arr` has `rows` rows (and `cols` columns when 2-d); `what` names the source.
void require_rows(const py::array& arr, const char* name, std::size_t rows, std::size_t cols,
                  const char* what) {
  const bool ok = static_cast<std::size_t>(arr.shape(0)) == rows &&
                  (arr.ndim() == 1 || static_cast<std::size_t>(arr.shape(1)) == cols);
  if (!ok) {
    invalid(std::string(name) + " must have " + std::to_string(rows) + " rows" +
            (arr.ndim() == 2 ? " of " + std::to_string(cols) : std::string()) + " (" + what +
            "), got shape " + py::str(arr.attr("shape")).cast<std::string>());
  }
}

// int8 dot products of this many columns or fewer cannot overflow their int32 sums.
constexpr std::size_t kMaxExactDim = (std::size_t{1} << 31) / (128 * 128) - 1;

// The int8 copy of `vectors` that topk_blocks_int8 prefilters with: (n, d) codes and three
// (n,) float32 arrays, all matching the vectors' rows.
Int8Rows require_int8_rows(const py::object& codes_obj, const py::object& scale_obj,
                           const py::object& residual_obj, const py::object& norm_obj,
                           Matrix vectors) {
  py::array codes = require_array<std::int8_t>(codes_obj, "codes", 2, "int8");
  if (static_cast<std::size_t>(codes.shape(0)) != vectors.rows ||
      static_cast<std::size_t>(codes.shape(1)) != vectors.cols) {
    invalid("codes must have the vectors' shape (" + std::to_string(vectors.rows) + ", " +
            std::to_string(vectors.cols) + ")");
  }
  const float* stats[3];
  const char* names[3] = {"scale", "residual", "norm"};
  const py::object* objs[3] = {&scale_obj, &residual_obj, &norm_obj};
  for (int i = 0; i < 3; ++i) {
    py::array arr = require_array<float>(*objs[i], names[i], 1, "float32");
    if (static_cast<std::size_t>(arr.shape(0)) != vectors.rows) {
      invalid(std::string(names[i]) + " must have one entry per row (" +
              std::to_string(vectors.rows) + ")");
    }
    stats[i] = static_cast<const float*>(arr.data());
  }
  return {static_cast<const std::int8_t*>(codes.data()), stats[0], stats[1], stats[2]};
}

std::size_t sign_words(std::size_t dim) { return (dim + 63) / 64; }

// The rows' packed level-7 codes (pomaidb/int4.h) for the int4 pass: (rows, i4_row_bytes(d))
// uint8, or None (null: no int4 pass).
const std::uint8_t* require_nibbles(const py::object& nibbles_obj, Matrix vectors) {
  if (nibbles_obj.is_none()) return nullptr;
  py::array nibbles = require_array<std::uint8_t>(nibbles_obj, "nibbles", 2, "uint8");
  require_rows(nibbles, "nibbles", vectors.rows, i4_row_bytes(vectors.cols),
               "one per row, ceil(d / 64) * 32 bytes");
  return static_cast<const std::uint8_t*>(nibbles.data());
}

void require_sign_knobs(double sigmas, std::int64_t keep_min) {
  if (!(sigmas >= 0.0 && sigmas < 1e9) || keep_min < 1) {
    invalid("sign_sigmas must be a finite number >= 0 and keep_min >= 1");
  }
}

// The sign stage's codes (None: no sign stage): (rows, words) and (queries, words) uint64 with
// words = ceil(d / 64), and how many rows of a query's blocks it keeps.
std::optional<SignCodes> require_signs(const py::object& signs_obj,
                                       const py::object& query_signs_obj, double sigmas,
                                       std::int64_t keep_min, const BlockTopkRequest& request) {
  if (signs_obj.is_none() && query_signs_obj.is_none()) return std::nullopt;
  const std::size_t words = sign_words(request.vectors.cols);
  py::array rows = require_array<std::uint64_t>(signs_obj, "signs", 2, "uint64");
  py::array queries = require_array<std::uint64_t>(query_signs_obj, "query_signs", 2, "uint64");
  const auto shape_of = [](const py::array& a) {
    return std::make_pair(static_cast<std::size_t>(a.shape(0)),
                          static_cast<std::size_t>(a.shape(1)));
  };
  if (shape_of(rows) != std::make_pair(request.vectors.rows, words) ||
      shape_of(queries) != std::make_pair(request.queries.rows, words)) {
    invalid("signs and query_signs must be (rows, " + std::to_string(words) + ") and (queries, " +
            std::to_string(words) + ") uint64 codes");
  }
  require_sign_knobs(sigmas, keep_min);
  return SignCodes{static_cast<const std::uint64_t*>(rows.data()),
                   static_cast<const std::uint64_t*>(queries.data()), words, sigmas,
                   static_cast<std::size_t>(keep_min)};
}

py::tuple topk_blocks_int8(const py::object& vectors_obj, const py::object& queries_obj,
                           std::int64_t k, const std::string& metric_name,
                           const py::object& mask_obj, const py::object& ranges_obj,
                           const py::object& ptr_obj, const py::object& blocks_obj,
                           const py::object& codes_obj, const py::object& scale_obj,
                           const py::object& residual_obj, const py::object& norm_obj,
                           const py::object& signs_obj, const py::object& query_signs_obj,
                           double sigmas, std::int64_t keep_min, const py::object& nibbles_obj) {
  BlockTopkRequest request{};
  request.vectors = require_vectors(vectors_obj);
  request.queries = require_queries(queries_obj, request.vectors);
  request.metric = parse_metric(metric_name);
  if (k < 1) invalid("k must be >= 1, got " + std::to_string(k));
  if (request.vectors.cols > kMaxExactDim) {
    invalid("int8 dot products are exact in int32 up to " + std::to_string(kMaxExactDim) +
            " columns");
  }
  request.k = static_cast<std::size_t>(k);
  request.mask = require_mask(mask_obj, request.vectors.rows);
  std::vector<RowRange> scratch;
  request.blocks = call_block_ranges(ranges_obj, request.vectors.rows, scratch);
  std::tie(request.query_block_ptr, request.query_blocks) =
      require_query_blocks(ptr_obj, blocks_obj, request.queries.rows, request.blocks.size());
  Int8Rows rows = require_int8_rows(codes_obj, scale_obj, residual_obj, norm_obj, request.vectors);
  rows.nibbles = require_nibbles(nibbles_obj, request.vectors);
  const std::optional<SignCodes> signs =
      require_signs(signs_obj, query_signs_obj, sigmas, keep_min, request);
  py::array_t<float> out_scores({request.queries.rows, request.k});
  py::array_t<std::int64_t> out_rows({request.queries.rows, request.k});
  float* scores_dst = out_scores.mutable_data();
  std::int64_t* rows_dst = out_rows.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_topk_blocks_int8(active_kernels(), request, rows, signs ? &*signs : nullptr,
                             scores_dst, rows_dst);
  }
  return py::make_tuple(out_scores, out_rows);
}

py::array_t<float> l2_norms(const py::object& vectors_obj) {
  const Matrix vectors = require_vectors(vectors_obj);
  py::array_t<float> out(static_cast<py::ssize_t>(vectors.rows));
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_l2_norms(active_kernels(), vectors, dst);
  }
  return out;
}

py::array_t<float> inverse_norms(const py::object& rows_obj) {
  const Matrix rows = require_vectors(rows_obj);
  py::array_t<float> out(static_cast<py::ssize_t>(rows.rows));
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_inverse_norms(rows, dst);
  }
  return out;
}

py::array_t<float> unit_rows(const py::object& rows_obj) {
  const Matrix rows = require_vectors(rows_obj);
  py::array_t<float> out({static_cast<py::ssize_t>(rows.rows), static_cast<py::ssize_t>(rows.cols)});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    compute_unit_rows(rows, dst);
  }
  return out;
}

py::array_t<std::uint32_t> hamming64(const py::object& codes_obj, const py::object& queries_obj) {
  py::array codes = require_array<std::uint64_t>(codes_obj, "codes", 1, "uint64");
  py::array queries = require_array<std::uint64_t>(queries_obj, "query_codes", 1, "uint64");
  const auto n = static_cast<std::size_t>(codes.shape(0));
  const auto nq = static_cast<std::size_t>(queries.shape(0));
  py::array_t<std::uint32_t> out({nq, n});
  const auto* src = static_cast<const std::uint64_t*>(codes.data());
  const auto* query = static_cast<const std::uint64_t*>(queries.data());
  std::uint32_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    const KernelTable& kernels = active_kernels();
    for (std::size_t j = 0; j < nq; ++j) kernels.hamming64(src, n, query[j], dst + j * n);
  }
  return out;
}

py::array_t<std::int64_t> hamming64_rank(const py::object& codes_obj,
                                         const py::object& queries_obj, std::int64_t count) {
  py::array codes = require_array<std::uint64_t>(codes_obj, "codes", 1, "uint64");
  py::array queries = require_array<std::uint64_t>(queries_obj, "query_codes", 1, "uint64");
  if (count < 0) invalid("count must be >= 0, got " + std::to_string(count));
  const auto n = static_cast<std::size_t>(codes.shape(0));
  const auto nq = static_cast<std::size_t>(queries.shape(0));
  const std::size_t kept = std::min(static_cast<std::size_t>(count), n);
  py::array_t<std::int64_t> out({nq, kept});
  const auto* src = static_cast<const std::uint64_t*>(codes.data());
  const auto* query = static_cast<const std::uint64_t*>(queries.data());
  std::int64_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    rank_by_hamming64(active_kernels(), src, n, query, nq, kept, dst);
  }
  return out;
}

// With `packed`, the rows are scored from their int4 packing (pomaidb/int4.h), as the
// centroid re-rank scores a segment's centroid table: the same integers.
py::array_t<std::int32_t> dot_int8_rows(const py::object& matrix_obj,
                                        const py::object& queries_obj, const py::object& ids_obj,
                                        bool packed) {
  py::array matrix = require_array<std::int8_t>(matrix_obj, "matrix", 2, "int8");
  py::array queries = require_array<std::int8_t>(queries_obj, "queries", 2, "int8");
  py::array ids = require_array<std::int64_t>(ids_obj, "rows", 2, "int64");
  const auto n = static_cast<std::size_t>(matrix.shape(0));
  const auto d = static_cast<std::size_t>(matrix.shape(1));
  const auto nq = static_cast<std::size_t>(queries.shape(0));
  const auto per_query = static_cast<std::size_t>(ids.shape(1));
  if (static_cast<std::size_t>(queries.shape(1)) != d) {
    invalid("queries have " + std::to_string(queries.shape(1)) + " columns but matrix has " +
            std::to_string(d));
  }
  if (static_cast<std::size_t>(ids.shape(0)) != nq) {
    invalid("rows must have one row of ids per query, got shape " + shape_of(ids_obj));
  }
  if (d > kMaxExactDim) {
    invalid("int8 dot products are exact in int32 up to " + std::to_string(kMaxExactDim) +
            " columns, got " + std::to_string(d));
  }
  const auto* id = static_cast<const std::int64_t*>(ids.data());
  const auto [low, high] = std::minmax_element(id, id + nq * per_query);
  if (nq * per_query > 0 && (*low < 0 || static_cast<std::uint64_t>(*high) >= n)) {
    invalid("rows must index the matrix's " + std::to_string(n) + " rows, got " +
            std::to_string(*low < 0 ? *low : *high));
  }
  py::array_t<std::int32_t> out({nq, per_query});
  const auto* rows = static_cast<const std::int8_t*>(matrix.data());
  const auto* q = static_cast<const std::int8_t*>(queries.data());
  std::int32_t* dst = out.mutable_data();
  std::vector<std::uint8_t> nibbles;
  if (packed) {
    nibbles.resize(n * i4_row_bytes(d));
    if (!pack_i4_rows(rows, n, d, nibbles.data())) {
      invalid("a packed matrix must hold values in [-8, 7]");
    }
  }
  {
    py::gil_scoped_release nogil;
    const KernelTable& kernels = active_kernels();
    for (std::size_t j = 0; j < nq; ++j) {
      const std::int64_t* query_ids = id + j * per_query;
      if (packed) {
        kernels.dot_i4_rows(nibbles.data(), d, query_ids, per_query, q + j * d,
                            dst + j * per_query);
      } else {
        kernels.dot_i8_rows(rows, d, query_ids, per_query, q + j * d, dst + j * per_query);
      }
    }
  }
  return out;
}

py::array_t<std::int64_t> argtopk(const py::object& values_obj, std::int64_t count) {
  py::array values = require_array<float>(values_obj, "values", 2, "float32");
  if (count < 0) invalid("count must be >= 0, got " + std::to_string(count));
  const auto nq = static_cast<std::size_t>(values.shape(0));
  const auto cols = static_cast<std::size_t>(values.shape(1));
  if (cols >= (std::size_t{1} << 32)) invalid("values must have fewer than 2**32 columns");
  const std::size_t kept = std::min(static_cast<std::size_t>(count), cols);
  py::array_t<std::int64_t> out({nq, kept});
  const auto* src = static_cast<const float*>(values.data());
  std::int64_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    rank_by_value(src, nq, cols, kept, dst);
  }
  return out;
}

// The k best hits of several ranked lists per query (merge_ranked): (scores, ids, parts, rows),
// each (nq, k), padded with part -1 and row -1.
py::tuple merge_ranked_numpy(const py::list& parts_list, std::int64_t k) {
  if (k < 1) invalid("k must be >= 1, got " + std::to_string(k));
  std::vector<RankedPart> parts;
  std::size_t nq = 0;
  for (std::size_t p = 0; p < parts_list.size(); ++p) {
    const py::handle item = parts_list[p];
    if (!py::isinstance<py::tuple>(item) || py::len(item) != 3) {
      invalid("each part must be a tuple (scores, rows, ids), got " + describe(item));
    }
    const auto part = py::reinterpret_borrow<py::tuple>(item);
    py::array scores = require_array<float>(part[0], "scores", 2, "float32");
    py::array rows = require_array<std::int64_t>(part[1], "rows", 2, "int64");
    py::array ids = require_array<std::uint64_t>(part[2], "ids", 1, "uint64");
    if (p == 0) nq = static_cast<std::size_t>(scores.shape(0));
    const auto cols = static_cast<std::size_t>(scores.shape(1));
    require_rows(scores, "scores", nq, cols, "one row per query in every part");
    require_rows(rows, "rows", nq, cols, "the shape of its scores");
    const auto* row_data = static_cast<const std::int64_t*>(rows.data());
    const auto n_ids = ids.shape(0);
    for (std::size_t i = 0; i < nq * cols; ++i) {
      if (row_data[i] >= n_ids || row_data[i] < -1) {
        invalid("rows must be -1 (padding) or below len(ids) = " + std::to_string(n_ids) +
                ", got " + std::to_string(row_data[i]));
      }
    }
    parts.push_back({static_cast<const float*>(scores.data()), row_data, cols,
                     static_cast<const std::uint64_t*>(ids.data())});
  }
  const auto kept = static_cast<std::size_t>(k);
  std::vector<MergedHit> merged(nq * kept);
  {
    py::gil_scoped_release nogil;
    merge_ranked(parts, nq, kept, merged.data());
  }
  py::array_t<float> scores({nq, kept});
  py::array_t<std::uint64_t> ids({nq, kept});
  py::array_t<std::int64_t> sources({nq, kept});
  py::array_t<std::int64_t> rows({nq, kept});
  float* s = scores.mutable_data();
  std::uint64_t* i = ids.mutable_data();
  std::int64_t* p = sources.mutable_data();
  std::int64_t* r = rows.mutable_data();
  for (std::size_t h = 0; h < merged.size(); ++h) {
    s[h] = merged[h].score;
    i[h] = merged[h].id;
    p[h] = merged[h].part;
    r[h] = merged[h].row;
  }
  return py::make_tuple(scores, ids, sources, rows);
}

// The postings of query term t are rows_list[t] and tf_list[t] (u32, equal lengths); see
// kernels.bm25_top_rows for the contract.
py::tuple bm25_top_rows_numpy(const py::list& rows_list, const py::list& tf_list,
                        const py::object& idf_obj, const py::object& bounds_obj,
                        const py::object& lengths_obj, const py::object& allowed_obj, double k1,
                        double b, double avg_length, std::int64_t k) {
  py::array lengths = require_array<double>(lengths_obj, "lengths", 1, "float64");
  py::array idf = require_array<double>(idf_obj, "idf", 1, "float64");
  py::array bounds = require_array<double>(bounds_obj, "bounds", 1, "float64");
  const auto n = static_cast<std::size_t>(lengths.shape(0));
  const auto m = static_cast<std::size_t>(idf.shape(0));
  if (n >= (std::size_t{1} << 32)) invalid("a layer must have fewer than 2**32 rows");
  if (rows_list.size() != m || tf_list.size() != m ||
      static_cast<std::size_t>(bounds.shape(0)) != m) {
    invalid("rows, tf, idf and bounds must have one entry per query term");
  }
  if (k < 0) invalid("k must be >= 0, got " + std::to_string(k));
  if (!(avg_length > 0.0)) invalid("avg_length must be > 0");
  const std::uint8_t* allowed = require_mask(allowed_obj, n);
  std::vector<TermPostings> terms(m);
  for (std::size_t t = 0; t < m; ++t) {
    py::array rows = require_array<std::uint32_t>(rows_list[t], "rows[t]", 1, "uint32");
    py::array tf = require_array<std::uint32_t>(tf_list[t], "tf[t]", 1, "uint32");
    if (rows.shape(0) != tf.shape(0)) invalid("rows[t] and tf[t] must have equal lengths");
    terms[t] = {static_cast<const std::uint32_t*>(rows.data()),
                static_cast<const std::uint32_t*>(tf.data()),
                static_cast<std::size_t>(rows.shape(0)), static_cast<const double*>(idf.data())[t],
                static_cast<const double*>(bounds.data())[t]};
  }
  std::vector<ScoredRow> found;
  bool in_range = false;
  {
    py::gil_scoped_release nogil;
    in_range = bm25_top_rows(terms, static_cast<const double*>(lengths.data()), n, allowed,
                                    {k1, b, avg_length}, static_cast<std::size_t>(k), found);
  }
  if (!in_range) invalid("a posting names a row >= len(lengths)");
  py::array_t<std::int64_t> rows_out(static_cast<py::ssize_t>(found.size()));
  py::array_t<double> scores_out(static_cast<py::ssize_t>(found.size()));
  std::int64_t* rows_ptr = rows_out.mutable_data();
  double* scores_ptr = scores_out.mutable_data();
  for (std::size_t i = 0; i < found.size(); ++i) {
    rows_ptr[i] = found[i].row;
    scores_ptr[i] = found[i].score;
  }
  return py::make_tuple(rows_out, scores_out);
}

// Exact int32 sums, as wsbr.quant_level guarantees: dim * level^2 <= 2^24.
void require_quant_level(std::int64_t level, std::size_t dim) {
  if (level < 1 || level > 127 || dim * static_cast<std::size_t>(level * level) > (1u << 24)) {
    invalid("level must be in [1, 127] with dim * level**2 <= 2**24, got " +
            std::to_string(level) + " for dim " + std::to_string(dim));
  }
}

// One segment's routing table (wsbr_select's arguments), checked.
RoutingTable require_routing_table(const py::object& mu_obj, const py::object& projection_obj,
                                   const py::object& signatures_obj,
                                   const py::object& centroids_obj, const py::object& alpha_obj,
                                   const py::object& beta_obj, std::int64_t level, bool l2) {
  py::array mu = require_array<float>(mu_obj, "mu", 1, "float32");
  py::array projection = require_array<std::int8_t>(projection_obj, "projection", 2, "int8");
  py::array signatures = require_array<std::uint64_t>(signatures_obj, "signatures", 1, "uint64");
  py::array centroids = require_array<std::int8_t>(centroids_obj, "centroids", 2, "int8");
  py::array alpha = require_array<float>(alpha_obj, "alpha", 1, "float32");
  py::array beta = require_array<float>(beta_obj, "beta", 1, "float32");
  const auto dim = static_cast<std::size_t>(mu.shape(0));
  const auto n_blocks = static_cast<std::size_t>(signatures.shape(0));
  require_rows(projection, "projection", kSketchBits, dim, "one per sketch bit");
  require_rows(centroids, "centroids", n_blocks, dim, "one per signature");
  require_rows(alpha, "alpha", n_blocks, 0, "one per signature");
  require_rows(beta, "beta", n_blocks, 0, "one per signature");
  require_quant_level(level, dim);
  return {dim,
          n_blocks,
          static_cast<float>(level),
          l2,
          static_cast<const float*>(mu.data()),
          static_cast<const std::int8_t*>(projection.data()),
          static_cast<const std::uint64_t*>(signatures.data()),
          static_cast<const std::int8_t*>(centroids.data()),
          static_cast<const float*>(alpha.data()),
          static_cast<const float*>(beta.data())};
}

struct RoutedQueries {
  const float* routing;
  const float* queries;
  std::size_t count;
};

// (q, dim) float32 queries and their rows in routing space.
RoutedQueries require_routed_queries(const py::object& routing_obj, const py::object& queries_obj,
                                     std::size_t dim) {
  py::array routing = require_array<float>(routing_obj, "routing_queries", 2, "float32");
  py::array queries = require_array<float>(queries_obj, "queries", 2, "float32");
  const auto nq = static_cast<std::size_t>(queries.shape(0));
  require_rows(routing, "routing_queries", nq, dim, "one per query, dim = len(mu)");
  require_rows(queries, "queries", nq, dim, "dim = len(mu)");
  return {static_cast<const float*>(routing.data()), static_cast<const float*>(queries.data()), nq};
}

void require_budget(std::int64_t top, std::int64_t widen) {
  if (top < 1 || widen < 0) {
    invalid("need top >= 1 and widen >= 0, got " + std::to_string(top) + ", " +
            std::to_string(widen));
  }
}

py::array_t<std::int64_t> wsbr_select(const py::object& routing_obj, const py::object& queries_obj,
                                      const py::object& mu_obj, const py::object& projection_obj,
                                      const py::object& signatures_obj,
                                      const py::object& centroids_obj, const py::object& alpha_obj,
                                      const py::object& beta_obj, std::int64_t level, bool l2,
                                      std::int64_t top, std::int64_t widen) {
  const RoutingTable table = require_routing_table(mu_obj, projection_obj, signatures_obj,
                                                   centroids_obj, alpha_obj, beta_obj, level, l2);
  const auto [routing_rows, query_rows, nq] =
      require_routed_queries(routing_obj, queries_obj, table.dim);
  require_budget(top, widen);
  const std::size_t kept = std::min(static_cast<std::size_t>(top), table.n_blocks);
  py::array_t<std::int64_t> out({nq, kept});
  std::int64_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    select_blocks(active_kernels(), table, routing_rows, query_rows, nq,
                  static_cast<std::size_t>(top), static_cast<std::size_t>(widen), dst);
  }
  return out;
}

// A segment's search tables, checked once (kernels.SegmentTables): its float rows, block
// ranges, routing table, int8 row copy, sign codes and nibbles. A search of a few queries then costs
// one call (wsbr_search), where selecting and scoring took two, each checking some twenty
// arrays again. A centroid table whose values fit in 4 bits (wsbr.py writes them so) is
// packed here once, and every selection reads half the bytes.
struct SegmentTables {
  py::tuple arrays;  // keeps every array below alive
  Metric metric;
  Matrix vectors;
  std::span<const RowRange> blocks;  // a BlockRanges' ranges, kept alive by `arrays`
  RoutingTable routing;              // routing.packed_centroids points into `packed`
  Int8Rows rows;
  const std::uint64_t* signs;  // null: no sign stage
  std::unique_ptr<std::uint8_t[]> packed = nullptr;  // owned, so the tables move but never copy
  std::size_t packed_bytes = 0;
};

// Packs t's centroid table when its values fit (see SegmentTables).
void pack_centroids(SegmentTables& t) {
  const std::size_t bytes = t.routing.n_blocks * i4_row_bytes(t.routing.dim);
  auto packed = std::make_unique<std::uint8_t[]>(bytes);
  if (pack_i4_rows(t.routing.centroids, t.routing.n_blocks, t.routing.dim, packed.get())) {
    t.packed = std::move(packed);
    t.packed_bytes = bytes;
    t.routing.packed_centroids = t.packed.get();
  }
}

SegmentTables make_segment_tables(const py::object& vectors_obj, const std::string& metric_name,
                                  const py::object& ranges_obj, const py::object& mu_obj,
                                  const py::object& projection_obj,
                                  const py::object& signatures_obj,
                                  const py::object& centroids_obj, const py::object& alpha_obj,
                                  const py::object& beta_obj, std::int64_t level,
                                  const py::object& codes_obj, const py::object& scale_obj,
                                  const py::object& residual_obj, const py::object& norm_obj,
                                  const py::object& signs_obj, const py::object& nibbles_obj) {
  SegmentTables t{py::make_tuple(vectors_obj, ranges_obj, mu_obj, projection_obj, signatures_obj,
                                 centroids_obj, alpha_obj, beta_obj, codes_obj, scale_obj,
                                 residual_obj, norm_obj, signs_obj, nibbles_obj),
                  parse_metric(metric_name),
                  require_vectors(vectors_obj),
                  {},
                  require_routing_table(mu_obj, projection_obj, signatures_obj, centroids_obj,
                                        alpha_obj, beta_obj, level, metric_name == "l2"),
                  {},
                  nullptr};
  if (t.vectors.cols != t.routing.dim) {
    invalid("vectors have " + std::to_string(t.vectors.cols) + " columns but mu has " +
            std::to_string(t.routing.dim));
  }
  if (t.vectors.cols > kMaxExactDim) {
    invalid("int8 dot products are exact in int32 up to " + std::to_string(kMaxExactDim) +
            " columns");
  }
  if (!py::isinstance<BlockRanges>(ranges_obj)) {
    invalid("block_ranges must be a kernels.BlockRanges, got " + describe(ranges_obj));
  }
  std::vector<RowRange> unused;  // a BlockRanges needs no copy
  t.blocks = call_block_ranges(ranges_obj, t.vectors.rows, unused);
  if (t.blocks.size() != t.routing.n_blocks) {
    invalid("block_ranges has " + std::to_string(t.blocks.size()) + " blocks but signatures " +
            std::to_string(t.routing.n_blocks));
  }
  t.rows = require_int8_rows(codes_obj, scale_obj, residual_obj, norm_obj, t.vectors);
  t.rows.nibbles = require_nibbles(nibbles_obj, t.vectors);
  if (!signs_obj.is_none()) {
    py::array signs = require_array<std::uint64_t>(signs_obj, "signs", 2, "uint64");
    require_rows(signs, "signs", t.vectors.rows, sign_words(t.vectors.cols), "ceil(d / 64) words");
    t.signs = static_cast<const std::uint64_t*>(signs.data());
  }
  pack_centroids(t);
  return t;
}

// Whether every query's selected blocks (nq rows of `kept` ids) hold at least
// min(k, all allowed rows) allowed rows, `allowed` counting each block's.
bool selection_holds_k(const std::vector<std::int64_t>& selected, std::size_t kept,
                       const std::int64_t* allowed, std::size_t n_blocks, std::size_t k) {
  std::int64_t total = 0;
  for (std::size_t b = 0; b < n_blocks; ++b) total += allowed[b];
  const auto need = std::min(total, static_cast<std::int64_t>(k));
  for (std::size_t start = 0; start < selected.size(); start += kept) {
    std::int64_t found = 0;
    for (std::size_t i = start; i < start + kept; ++i) {
      found += allowed[static_cast<std::size_t>(selected[i])];
    }
    if (found < need) return false;
  }
  return true;
}

// One wsbr_search call (wsbr_select, then topk_blocks_int8 over the selected blocks, with
// query_signs its sign stage): checked and its outputs allocated under the GIL, so that run()
// needs no Python and several calls can run at once (wsbr_search_many).  With a mask,
// `allowed` counts each block's allowed rows, and the answer is None when some query's blocks
// hold fewer than min(k, all allowed rows): the caller then widens that selection.
class WsbrCall {
 public:
  WsbrCall(const SegmentTables& t, const py::object& routing_obj, const py::object& queries_obj,
           const py::object& query_signs_obj, std::int64_t k, std::int64_t top,
           std::int64_t widen, double sigmas, std::int64_t keep_min, const py::object& mask_obj,
           const py::object& allowed_obj)
      : tables_(t), args_(py::make_tuple(routing_obj, queries_obj, query_signs_obj, mask_obj,
                                         allowed_obj)) {
    const auto [routing_rows, query_rows, nq] =
        require_routed_queries(routing_obj, queries_obj, t.routing.dim);
    require_budget(top, widen);
    if (k < 1) invalid("k must be >= 1, got " + std::to_string(k));
    const std::uint8_t* mask = require_mask(mask_obj, t.vectors.rows);
    if (mask != nullptr) {
      py::array counts = require_array<std::int64_t>(allowed_obj, "allowed", 1, "int64");
      require_rows(counts, "allowed", t.routing.n_blocks, 0, "one count per block");
      allowed_ = static_cast<const std::int64_t*>(counts.data());
    }
    if (!query_signs_obj.is_none()) {
      if (t.signs == nullptr) invalid("query_signs given, but these tables have no sign codes");
      require_sign_knobs(sigmas, keep_min);
      py::array query_signs =
          require_array<std::uint64_t>(query_signs_obj, "query_signs", 2, "uint64");
      const std::size_t words = sign_words(t.vectors.cols);
      require_rows(query_signs, "query_signs", nq, words, "one per query, ceil(d / 64) words");
      signs_ = SignCodes{t.signs, static_cast<const std::uint64_t*>(query_signs.data()), words,
                         sigmas, static_cast<std::size_t>(keep_min)};
    }
    routing_rows_ = routing_rows;
    top_ = static_cast<std::size_t>(top);
    widen_ = static_cast<std::size_t>(widen);
    kept_ = std::min(top_, t.routing.n_blocks);
    request_.vectors = t.vectors;
    request_.queries = Matrix{query_rows, nq, t.vectors.cols};
    request_.metric = t.metric;
    request_.k = static_cast<std::size_t>(k);
    request_.mask = mask;
    request_.blocks = t.blocks;
    scores_ = py::array_t<float>({nq, request_.k});
    rows_ = py::array_t<std::int64_t>({nq, request_.k});
    scores_dst_ = scores_.mutable_data();
    rows_dst_ = rows_.mutable_data();
  }

  // The search itself, without the GIL.
  void run(const KernelTable& kernels) {
    const std::size_t nq = request_.queries.rows;
    std::vector<std::int64_t> selected(nq * kept_);
    select_blocks(kernels, tables_.routing, routing_rows_, request_.queries.data, nq, top_,
                  widen_, selected.data());
    if (allowed_ != nullptr) {
      holds_ = selection_holds_k(selected, kept_, allowed_, tables_.routing.n_blocks, request_.k);
    }
    std::vector<std::int64_t> ptr(nq + 1);
    for (std::size_t j = 0; j <= nq; ++j) ptr[j] = static_cast<std::int64_t>(j * kept_);
    request_.query_block_ptr = ptr.data();
    request_.query_blocks = selected.data();
    if (holds_) {
      compute_topk_blocks_int8(kernels, request_, tables_.rows, signs_ ? &*signs_ : nullptr,
                               scores_dst_, rows_dst_);
    }
    request_.query_block_ptr = nullptr;  // pointed into this call's vectors
    request_.query_blocks = nullptr;
  }

  // (scores, rows), or None (see the class comment).  Under the GIL.
  py::object result() const {
    if (!holds_) return py::none();
    return py::make_tuple(scores_, rows_);
  }

 private:
  const SegmentTables& tables_;  // kept alive by the caller's arguments
  py::tuple args_;               // keeps the arrays the pointers below point into
  const float* routing_rows_ = nullptr;
  std::size_t top_ = 0;
  std::size_t widen_ = 0;
  std::size_t kept_ = 0;
  const std::int64_t* allowed_ = nullptr;
  std::optional<SignCodes> signs_;
  BlockTopkRequest request_{};
  py::array_t<float> scores_;
  py::array_t<std::int64_t> rows_;
  float* scores_dst_ = nullptr;
  std::int64_t* rows_dst_ = nullptr;
  bool holds_ = true;
};

py::object wsbr_search(const SegmentTables& t, const py::object& routing_obj,
                       const py::object& queries_obj, const py::object& query_signs_obj,
                       std::int64_t k, std::int64_t top, std::int64_t widen, double sigmas,
                       std::int64_t keep_min, const py::object& mask_obj,
                       const py::object& allowed_obj) {
  WsbrCall call(t, routing_obj, queries_obj, query_signs_obj, k, top, widen, sigmas, keep_min,
                mask_obj, allowed_obj);
  {
    py::gil_scoped_release nogil;
    call.run(active_kernels());
  }
  return call.result();
}

// An int argument (a Python or numpy integer, not a bool), or InvalidArgumentError.
std::int64_t int_arg(const py::handle& obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr())) {
    invalid(std::string(name) + " must be an int, got " + describe(obj));
  }
  return obj.cast<std::int64_t>();
}

// Several wsbr_search calls (each a tuple of its arguments) under one release of the GIL, on
// this thread and up to `helpers` of the task pool's threads (pomaidb/task_pool.h): a read
// plan's segments searched at once.  Each answer is that call's alone, whatever ran it.
py::list wsbr_search_many(const py::sequence& calls_obj, std::int64_t helpers) {
  if (helpers < 0) invalid("helpers must be >= 0, got " + std::to_string(helpers));
  std::vector<py::object> held;  // the SegmentTables each call refers to
  std::vector<std::unique_ptr<WsbrCall>> calls;
  for (const py::handle item : calls_obj) {
    if (!py::isinstance<py::tuple>(item) || py::len(item) != 11) {
      invalid("each call must be a tuple of wsbr_search's 11 arguments, got " + describe(item));
    }
    const auto args = py::reinterpret_borrow<py::tuple>(item);
    if (!py::isinstance<SegmentTables>(args[0])) {
      invalid("a call's tables must be a kernels.SegmentTables, got " + describe(args[0]));
    }
    held.push_back(args[0].cast<py::object>());
    const auto& tables = args[0].cast<const SegmentTables&>();
    calls.push_back(std::make_unique<WsbrCall>(
        tables, args[1].cast<py::object>(), args[2].cast<py::object>(),
        args[3].cast<py::object>(), int_arg(args[4], "k"), int_arg(args[5], "top"),
        int_arg(args[6], "widen"), args[7].cast<double>(), int_arg(args[8], "keep_min"),
        args[9].cast<py::object>(), args[10].cast<py::object>()));
  }
  {
    py::gil_scoped_release nogil;
    const KernelTable& kernels = active_kernels();
    run_tasks(calls.size(), static_cast<std::size_t>(helpers),
              [&](std::size_t i) { calls[i]->run(kernels); });
  }
  py::list out;
  for (const auto& call : calls) out.append(call->result());
  return out;
}

py::tuple row_codes_numpy(const py::object& rows_obj, const py::object& mu_obj,
                          const py::object& projection_obj, std::int64_t level,
                          const py::object& row_blocks_obj) {
  py::array rows = require_array<float>(rows_obj, "rows", 2, "float32");
  py::array row_blocks = require_array<std::int64_t>(row_blocks_obj, "row_blocks", 1, "int64");
  py::array mu = require_array<float>(mu_obj, "mu", 1, "float32");
  py::array projection = require_array<std::int8_t>(projection_obj, "projection", 2, "int8");
  const auto dim = static_cast<std::size_t>(mu.shape(0));
  const auto m = static_cast<std::size_t>(rows.shape(0));
  require_rows(rows, "rows", m, dim, "dim = len(mu)");
  require_rows(projection, "projection", kSketchBits, dim, "one per sketch bit");
  require_quant_level(level, dim);
  require_rows(row_blocks, "row_blocks", m, 0, "one per row");
  const auto* blocks = static_cast<const std::int64_t*>(row_blocks.data());
  if (!std::is_sorted(blocks, blocks + m)) invalid("row_blocks must be non-decreasing");
  // Unsigned: the ids are sorted, so last - first is the true gap even where int64 overflows.
  const std::size_t gap = m == 0 ? 0
                                 : static_cast<std::size_t>(blocks[m - 1]) -
                                       static_cast<std::size_t>(blocks[0]);
  if (m > 0 && gap >= m) invalid("row_blocks must span at most one block per row (blocks hold rows)");
  const std::size_t spanned = m == 0 ? 0 : gap + 1;
  const std::size_t words = (dim + 63) / 64;
  py::array_t<std::int8_t> codes({m, dim});
  py::array_t<float> scale(static_cast<py::ssize_t>(m));
  py::array_t<float> residual(static_cast<py::ssize_t>(m));
  py::array_t<float> norm(static_cast<py::ssize_t>(m));
  py::array_t<std::uint64_t> signs({m, words});
  py::array_t<std::uint8_t> nibbles({m, i4_row_bytes(dim)});
  py::array_t<std::uint64_t> sketches(static_cast<py::ssize_t>(m));
  py::array_t<float> block_sums({spanned, dim});
  std::fill_n(block_sums.mutable_data(), spanned * dim, 0.0f);
  const RowCodesOut out{codes.mutable_data(),   scale.mutable_data(),   residual.mutable_data(),
                        norm.mutable_data(),    signs.mutable_data(),   nibbles.mutable_data(),
                        sketches.mutable_data(), block_sums.mutable_data()};
  const SketchBasis basis{static_cast<const float*>(mu.data()),
                          static_cast<const std::int8_t*>(projection.data()),
                          static_cast<float>(level)};
  const auto* src = static_cast<const float*>(rows.data());
  {
    py::gil_scoped_release nogil;
    pomai::row_codes(active_kernels(), src, m, dim, basis, blocks, out);
  }
  return py::make_tuple(codes, scale, residual, norm, signs, nibbles, sketches, block_sums);
}

// A C-contiguous buffer view, released when it goes out of scope (with the GIL held).
class ContiguousBuffer {
 public:
  explicit ContiguousBuffer(const py::object& obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      invalid("data must be a C-contiguous buffer (bytes, bytearray, memoryview, numpy array, "
              "mmap), got " + describe(obj) + "; use np.ascontiguousarray(data) or bytes(data)");
    }
  }
  ~ContiguousBuffer() { PyBuffer_Release(&view_); }
  ContiguousBuffer(const ContiguousBuffer&) = delete;
  ContiguousBuffer& operator=(const ContiguousBuffer&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(view_.buf); }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

std::uint32_t crc32c(const py::object& data, std::int64_t value) {
  if (value < 0 || value > 0xFFFFFFFFLL) {
    invalid("value must be a CRC32C in [0, 2**32), got " + std::to_string(value));
  }
  ContiguousBuffer buffer(data);
  py::gil_scoped_release nogil;
  return active_kernels().crc32c(static_cast<std::uint32_t>(value), buffer.data(), buffer.size());
}

void set_isa(const std::string& name) {
  if (!set_active_isa(name)) {
    std::string supported;
    for (const std::string& isa : supported_isas()) {
      supported += (supported.empty() ? "" : ", ") + isa;
    }
    invalid("ISA '" + name + "' is not supported on this machine (supported: " + supported + ")");
  }
}

}  // namespace
}  // namespace pomai

PYBIND11_MODULE(_kernels, m) {
  using namespace pomai;
  py::object error_type = py::module_::import("pomaidb_core.errors").attr("InvalidArgumentError");
  g_invalid_argument = error_type.release();  // kept for the life of the process
  m.doc() = "Private compiled kernels of PomaiDB; use pomaidb_core.kernels.";
  m.def("supported_isas", &supported_isas);
  m.def("active_isa", [] { return std::string(active_kernels().name); });
  m.def("set_isa", &set_isa, py::arg("name"));
  m.def("scores", &scores, py::arg("vectors"), py::arg("queries"), py::arg("metric"));
  m.def("topk", &topk, py::arg("vectors"), py::arg("queries"), py::arg("k"), py::arg("metric"),
        py::arg("mask"), py::arg("row_ranges"));
  py::class_<BlockRanges>(m, "BlockRanges")
      .def(py::init(&make_block_ranges), py::arg("block_ranges"), py::arg("n_rows"))
      .def_property_readonly("n_blocks", [](const BlockRanges& t) { return t.ranges.size(); })
      .def_readonly("n_rows", &BlockRanges::n_rows);
  m.def("topk_blocks", &topk_blocks, py::arg("vectors"), py::arg("queries"), py::arg("k"),
        py::arg("metric"), py::arg("mask"), py::arg("block_ranges"), py::arg("ptr"),
        py::arg("blocks"));
  m.def("topk_blocks_int8", &topk_blocks_int8, py::arg("vectors"), py::arg("queries"),
        py::arg("k"), py::arg("metric"), py::arg("mask"), py::arg("block_ranges"),
        py::arg("ptr"), py::arg("blocks"), py::arg("codes"), py::arg("scale"),
        py::arg("residual"), py::arg("norm"), py::arg("signs") = py::none(),
        py::arg("query_signs") = py::none(), py::arg("sign_sigmas") = 3.0,
        py::arg("keep_min") = 1, py::arg("nibbles") = py::none());
  m.def("l2_norms", &l2_norms, py::arg("vectors"));
  m.def("inverse_norms", &inverse_norms, py::arg("rows"));
  m.def("unit_rows", &unit_rows, py::arg("rows"));
  m.def("dot_int8_rows", &dot_int8_rows, py::arg("matrix"), py::arg("queries"), py::arg("rows"),
        py::arg("packed") = false);
  m.def("argtopk", &argtopk, py::arg("values"), py::arg("count"));
  m.def("merge_ranked", &merge_ranked_numpy, py::arg("parts"), py::arg("k"));
  m.def("hamming64", &hamming64, py::arg("codes"), py::arg("query_codes"));
  m.def("hamming64_rank", &hamming64_rank, py::arg("codes"), py::arg("query_codes"),
        py::arg("count"));
  m.def("wsbr_select", &wsbr_select, py::arg("routing_queries"), py::arg("queries"),
        py::arg("mu"), py::arg("projection"), py::arg("signatures"), py::arg("centroids"),
        py::arg("alpha"), py::arg("beta"), py::arg("level"), py::arg("l2"), py::arg("top"),
        py::arg("widen"));
  py::class_<SegmentTables>(m, "SegmentTables")
      .def(py::init(&make_segment_tables), py::arg("vectors"), py::arg("metric"),
           py::arg("block_ranges"), py::arg("mu"), py::arg("projection"), py::arg("signatures"),
           py::arg("centroids"), py::arg("alpha"), py::arg("beta"), py::arg("level"),
           py::arg("codes"), py::arg("scale"), py::arg("residual"), py::arg("norm"),
           py::arg("signs") = py::none(), py::arg("nibbles") = py::none())
      .def_property_readonly("has_signs", [](const SegmentTables& t) { return t.signs != nullptr; })
      .def_property_readonly("packed_bytes", [](const SegmentTables& t) { return t.packed_bytes; });
  m.def("wsbr_search", &wsbr_search, py::arg("tables"), py::arg("routing_queries"),
        py::arg("queries"), py::arg("query_signs"), py::arg("k"), py::arg("top"),
        py::arg("widen"), py::arg("sign_sigmas"), py::arg("keep_min"), py::arg("mask"),
        py::arg("allowed"));
  m.def("wsbr_search_many", &wsbr_search_many, py::arg("calls"), py::arg("helpers"));
  m.def("pool_helpers", &pool_helpers);
  m.def("row_codes", &row_codes_numpy, py::arg("rows"), py::arg("mu"), py::arg("projection"),
        py::arg("level"), py::arg("row_blocks"));
  m.def("bm25_top_rows", &bm25_top_rows_numpy, py::arg("rows"), py::arg("tf"), py::arg("idf"),
        py::arg("bounds"), py::arg("lengths"), py::arg("allowed"), py::arg("k1"), py::arg("b"),
        py::arg("avg_length"), py::arg("k"));
  m.def("crc32c", &crc32c, py::arg("data"), py::arg("value"));
}
