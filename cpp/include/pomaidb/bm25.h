// BM25 top-k over one layer's postings by MaxScore (Turtle & Flood 1995), document at a time:
// the hot loop of keyword search (pomaidb_core/bm25.py).  Pure C++: callers validate inputs and
// release the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pomai {

// One query term's postings in a layer: rows strictly ascending, tf[i] >= 1 occurrences in
// rows[i].  `bound` is at least the contribution of the term to any of its rows (bm25.py
// computes it from the largest tf and the shortest document of the postings).
struct TermPostings {
  const std::uint32_t* rows;
  const std::uint32_t* tf;
  std::size_t count;
  double idf;
  double bound;
};

struct Bm25Params {
  double k1;
  double b;
  double avg_length;  // > 0
};

// A row and its score, as returned by bm25_top_rows.
struct ScoredRow {
  std::uint32_t row;
  double score;
};

// Every row of [0, n) that holds a term and where `allowed` is set (nullptr: every row) whose
// score is at least the k-th best score: the top k and everything tied with the k-th (the caller
// breaks ties by id), ordered by row.  A row's score is the sum of its terms' contributions
//     idf * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg_length)))
// added in `terms` order in double: bit for bit what bm25.py's numpy formula gives.  Returns
// false, with `out` unspecified, when a posting names a row >= n (damaged input).
bool bm25_top_rows(const std::vector<TermPostings>& terms, const double* lengths, std::size_t n,
                   const std::uint8_t* allowed, const Bm25Params& params, std::size_t k,
                   std::vector<ScoredRow>& out);

}  // namespace pomai
