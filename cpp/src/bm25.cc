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

// The query state: terms by upper bound ascending; the first `first_essential` of them are
// non-essential (their bounds add up to less than the threshold, so a row holding only those
// cannot make the top k: they are probed for candidates, never scanned).
class MaxScore {
 public:
  MaxScore(const std::vector<TermPostings>& terms, const double* lengths,
           const Bm25Params& params)
      : terms_(terms), lengths_(lengths), params_(params), order_(terms.size()),
        prefix_(terms.size()), cursor_(terms.size(), 0), contrib_(terms.size(), 0.0) {
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    std::stable_sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t z) {
      return terms[a].bound < terms[z].bound;
    });
    double sum = 0.0;
    for (std::size_t e = 0; e < order_.size(); ++e) prefix_[e] = sum += terms[order_[e]].bound;
  }

  bool exhausted() const { return first_essential_ == order_.size(); }

  // The smallest row at an essential cursor; false when every essential list is done.
  bool next_candidate(std::uint32_t& row) const {
    bool found = false;
    for (std::size_t e = first_essential_; e < order_.size(); ++e) {
      const TermPostings& term = terms_[order_[e]];
      const std::size_t at = cursor_[order_[e]];
      if (at < term.count && (!found || term.rows[at] < row)) {
        row = term.rows[at];
        found = true;
      }
    }
    return found;
  }

  // Moves the essential cursors past `row`; scores their terms when `wanted`.  Returns the
  // partial score.
  double take_essential(std::uint32_t row, bool wanted) {
    double partial = 0.0;
    for (std::size_t e = first_essential_; e < order_.size(); ++e) {
      const std::size_t q = order_[e];
      const TermPostings& term = terms_[q];
      if (cursor_[q] < term.count && term.rows[cursor_[q]] == row) {
        if (wanted) partial += contrib_[q] = contribution(term, term.tf[cursor_[q]], lengths_[row],
                                                          params_);
        ++cursor_[q];
      }
    }
    return partial;
  }

  // Adds the non-essential terms, largest bound first, while the row can still reach
  // `threshold`; returns false (the row is out) as soon as it cannot.
  bool probe_rest(std::uint32_t row, double partial, double threshold) {
    for (std::size_t e = first_essential_; e-- > 0;) {
      if ((partial + prefix_[e]) * (1.0 + kRoundingSlack) < threshold) return false;
      const std::size_t q = order_[e];
      const TermPostings& term = terms_[q];
      cursor_[q] = advance_to(term.rows, cursor_[q], term.count, row);
      if (cursor_[q] < term.count && term.rows[cursor_[q]] == row) {
        partial += contrib_[q] = contribution(term, term.tf[cursor_[q]], lengths_[row], params_);
      }
    }
    return true;
  }

  // The row's score in query-term order (bm25.py's order), clearing the contributions.
  double collect() {
    double score = 0.0;
    for (double& c : contrib_) {
      score += c;
      c = 0.0;
    }
    return score;
  }

  void clear() { std::fill(contrib_.begin(), contrib_.end(), 0.0); }

  void raise_threshold(double threshold) {
    while (first_essential_ < order_.size() &&
           prefix_[first_essential_] * (1.0 + kRoundingSlack) < threshold) {
      ++first_essential_;
    }
  }

 private:
  const std::vector<TermPostings>& terms_;
  const double* lengths_;
  Bm25Params params_;
  std::vector<std::size_t> order_;   // term indexes, bound ascending
  std::vector<double> prefix_;       // prefix_[e]: bounds of order_[0..e] summed
  std::vector<std::size_t> cursor_;  // per term (query order): next posting to look at
  std::vector<double> contrib_;      // per term (query order): its share of the current row
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
  std::uint32_t row = 0;
  while (!query.exhausted() && query.next_candidate(row)) {
    if (row >= n) return false;
    const bool wanted = allowed == nullptr || allowed[row] != 0;
    const double partial = query.take_essential(row, wanted);
    if (!wanted) continue;
    if (!query.probe_rest(row, partial, best.threshold())) {
      query.clear();
      continue;
    }
    const double score = query.collect();
    if (score >= best.threshold()) {  // ties with the k-th stay: the caller orders them by id
      out.push_back({row, score});
      best.offer(score);
      query.raise_threshold(best.threshold());
    }
  }
  const double threshold = best.threshold();
  std::erase_if(out, [threshold](const ScoredRow& r) { return r.score < threshold; });
  return true;
}

}  // namespace pomai
