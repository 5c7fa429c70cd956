// BM25 top-k by MaxScore, document at a time (the design of Lucene's MaxScoreBulkScorer and
// tantivy's block-max scorers, without blocks).  Built for the baseline ISA with the default
// ISO floating-point rules (no contraction into FMA), so every score is the same double that
// numpy computes for the same formula.
#include "pomaidb/bm25.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>

namespace pomai {
namespace {

// Pruning compares upper bounds summed in bound order with scores summed in query order; the
// two roundings may differ by a few ulps, so a row is skipped only when its bound is below the
// threshold by more than that.  Skipping fewer rows costs time, never a wrong answer.
constexpr double kRoundingSlack = 1e-9;

double contribution(const TermPostings& term, std::uint32_t tf, double length,
                    const Bm25Params& p) {
  const double f = static_cast<double>(tf);
  return term.idf * (f * (p.k1 + 1.0) / (f + p.k1 * (1.0 - p.b + p.b * length / p.avg_length)));
}

// The first position >= at whose row is >= target (count if none): a galloping search, since
// the rows probed for one term ascend and are usually near each other.
std::size_t advance_to(const std::uint32_t* rows, std::size_t at, std::size_t count,
                       std::uint32_t target) {
  std::size_t low = at;
  std::size_t step = 1;
  while (low + step < count && rows[low + step] < target) {
    low += step;
    step *= 2;
  }
  const std::size_t high = std::min(low + step + 1, count);
  return static_cast<std::size_t>(std::lower_bound(rows + low, rows + high, target) - rows);
}

// The k best scores seen so far; threshold() is the k-th (-inf until there are k).
class ScoreHeap {
 public:
  explicit ScoreHeap(std::size_t k) : k_(k) { heap_.reserve(k); }

  double threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<double>::infinity() : heap_.front();
  }

  void offer(double score) {
    if (heap_.size() < k_) {
      heap_.push_back(score);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    } else if (score > heap_.front()) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      heap_.back() = score;
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    }
  }

 private:
  std::size_t k_;
  std::vector<double> heap_;  // a min-heap
};

// Rows are taken in windows of this many: the essential terms' postings in a window are added
// term by term into a dense accumulator (a tight loop per posting), then only the rows that
// received something are visited, in row order.
constexpr std::uint64_t kWindow = 4096;

// The query state: terms by upper bound ascending; the first `first_essential` of them are
// non-essential (their bounds add up to less than the threshold, so a row holding only those
// cannot make the top k: they are probed for candidates, never scanned).
class MaxScore {
 public:
  MaxScore(const std::vector<TermPostings>& terms, const double* lengths,
           const Bm25Params& params)
      : terms_(terms), lengths_(lengths), params_(params), order_(terms.size()),
        prefix_(terms.size()), scan_(terms.size(), 0), probe_(terms.size(), 0),
        exact_(terms.size(), 0), partial_(kWindow, 0.0), seen_(kWindow / 64, 0) {
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    std::stable_sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t z) {
      return terms[a].bound < terms[z].bound;
    });
    double sum = 0.0;
    for (std::size_t e = 0; e < order_.size(); ++e) prefix_[e] = sum += terms[order_[e]].bound;
  }

  // The smallest row not yet scanned by an essential term; false when there is none.
  bool next_row(std::uint32_t& row) const {
    bool found = false;
    for (std::size_t e = first_essential_; e < order_.size(); ++e) {
      const TermPostings& term = terms_[order_[e]];
      const std::size_t at = scan_[order_[e]];
      if (at < term.count && (!found || term.rows[at] < row)) {
        row = term.rows[at];
        found = true;
      }
    }
    return found;
  }

  // Adds the essential terms' contributions to the allowed rows of [start, start + kWindow)
  // (in any order: only pruning reads them).  False if a posting names a row >= n.
  bool accumulate(std::uint32_t start, std::size_t n, const std::uint8_t* allowed) {
    const std::uint64_t end = std::min<std::uint64_t>(start + kWindow, n);
    for (std::size_t e = first_essential_; e < order_.size(); ++e) {
      const std::size_t q = order_[e];
      const TermPostings& term = terms_[q];
      std::size_t at = scan_[q];
      for (; at < term.count && term.rows[at] < end; ++at) {
        const std::uint32_t row = term.rows[at];
        if (allowed != nullptr && allowed[row] == 0) continue;
        const std::size_t slot = row - start;
        partial_[slot] += contribution(term, term.tf[at], lengths_[row], params_);
        seen_[slot / 64] |= std::uint64_t{1} << (slot % 64);
      }
      scan_[q] = at;
      if (at < term.count && term.rows[at] < start + kWindow) return false;  // row >= n
    }
    return true;
  }

  // Calls visit(row, partial) for each row accumulated, ascending, and clears the window.
  template <typename Visit>
  void drain(std::uint32_t start, Visit&& visit) {
    for (std::size_t word = 0; word < seen_.size(); ++word) {
      for (std::uint64_t bits = seen_[word]; bits != 0; bits &= bits - 1) {
        const std::size_t slot = word * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
        const double partial = partial_[slot];
        partial_[slot] = 0.0;
        visit(static_cast<std::uint32_t>(start + slot), partial);
      }
      seen_[word] = 0;
    }
  }

  // Adds the non-essential terms, largest bound first, while the row can still reach
  // `threshold`; returns false (the row is out) as soon as it cannot.
  bool may_reach(std::uint32_t row, double partial, double threshold) {
    for (std::size_t e = first_essential_; e-- > 0;) {
      if ((partial + prefix_[e]) * (1.0 + kRoundingSlack) < threshold) return false;
      const std::size_t q = order_[e];
      partial += term_share(q, probe_[q], row);
    }
    return partial * (1.0 + kRoundingSlack) >= threshold;
  }

  // The row's score: its terms' contributions added in query-term order, as bm25.py does.
  double exact_score(std::uint32_t row) {
    double score = 0.0;
    for (std::size_t q = 0; q < terms_.size(); ++q) score += term_share(q, exact_[q], row);
    return score;
  }

  // Called between windows only, so a window's rows all see the same essential terms.
  void raise_threshold(double threshold) {
    while (first_essential_ < order_.size() &&
           prefix_[first_essential_] * (1.0 + kRoundingSlack) < threshold) {
      ++first_essential_;
    }
  }

 private:
  // Term q's contribution to `row` (0 if it lacks the term), moving `cursor` forward to it:
  // the rows asked of one cursor ascend.
  double term_share(std::size_t q, std::size_t& cursor, std::uint32_t row) {
    const TermPostings& term = terms_[q];
    cursor = advance_to(term.rows, cursor, term.count, row);
    if (cursor == term.count || term.rows[cursor] != row) return 0.0;
    return contribution(term, term.tf[cursor], lengths_[row], params_);
  }

  const std::vector<TermPostings>& terms_;
  const double* lengths_;
  Bm25Params params_;
  std::vector<std::size_t> order_;   // term indexes, bound ascending
  std::vector<double> prefix_;       // prefix_[e]: bounds of order_[0..e] summed
  std::vector<std::size_t> scan_;    // per term: next posting an essential scan reads
  std::vector<std::size_t> probe_;   // per term: cursor of the pruning probes
  std::vector<std::size_t> exact_;   // per term: cursor of the exact scores
  std::vector<double> partial_;      // per window slot: essential contributions so far
  std::vector<std::uint64_t> seen_;  // per window slot: a bit, set when partial_ was added to
  std::size_t first_essential_ = 0;
};

}  // namespace

bool bm25_top_rows(const std::vector<TermPostings>& terms, const double* lengths, std::size_t n,
                   const std::uint8_t* allowed, const Bm25Params& params, std::size_t k,
                   std::vector<ScoredRow>& out) {
  out.clear();
  if (k == 0) return true;
  MaxScore query(terms, lengths, params);
  ScoreHeap best(k);
  std::uint32_t start = 0;
  while (query.next_row(start)) {
    if (!query.accumulate(start, n, allowed)) return false;
    query.drain(start, [&](std::uint32_t row, double partial) {
      if (!query.may_reach(row, partial, best.threshold())) return;
      const double score = query.exact_score(row);
      if (score >= best.threshold()) {  // ties with the k-th stay: the caller orders them by id
        out.push_back({row, score});
        best.offer(score);
      }
    });
    query.raise_threshold(best.threshold());
  }
  const double threshold = best.threshold();
  std::erase_if(out, [threshold](const ScoredRow& r) { return r.score < threshold; });
  return true;
}

}  // namespace pomai
