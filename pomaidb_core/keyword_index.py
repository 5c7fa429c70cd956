"""Keyword (inverted) indexes of one layer: postings with term frequencies, and document lengths.

Two kinds, one read interface (`has_text()`, `doc_lengths()`, `totals()`: how many rows have
a text and their summed length, `postings(term)` with rows
ascending, `bounds(term)`: the largest tf and the shortest document among a term's postings,
for BM25's per-term score upper bounds), so BM25 (bm25.py) scores every layer alike:

* `MemtableKeywords`: a memtable's index, brought up to date from the memtable's
  texts on demand (writes never pay for tokenization; a read sees every write
  applied before it: read-your-writes holds for keyword search too).
* `SegmentKeywords`: the index persisted in a segment's keyword section (kind 12,
  segment.py), built at freeze and by compaction from the rows' texts.

Keyword section layout (little-endian; written by `encode`, checked by `decode`). Its
bytes are covered by the segment's section CRC32C; the structure is validated when the
section is first used, so a damaged index raises CorruptionError, never a wrong answer:

    offset  width      field
    0       8          u64 T: distinct terms
    8       8          u64 P: postings (one per (term, row) pair)
    16      8          u64 B: bytes of the term strings
    24      4 n        u32 doc_len[n]: terms in row r's text; 0xFFFFFFFF = the row has no text
    ...     8 (T + 1)  u64 term_offsets: term t is term_bytes[term_offsets[t]:term_offsets[t+1]]
    ...     8 (T + 1)  u64 post_offsets: term t's postings are [post_offsets[t], post_offsets[t+1])
    ...     4 P        u32 post_rows: rows holding the term, strictly ascending per term
    ...     4 P        u32 post_tf: how often the term occurs in that row (>= 1)
    ...     B          u8 term_bytes: UTF-8 terms, unique, ascending by bytes
    every array starts at the next multiple of 8 bytes; the gaps are zero

Invariants checked by `decode`: offsets start at 0, never decrease and end at B / P;
rows < n; tf >= 1; per row, the tfs add up to doc_len (0 for a row without text).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from .analyzer import Analyze
from .errors import CorruptionError

NO_TEXT = 0xFFFFFFFF
_HEAD = np.dtype("<u8")
_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
# postings(term) -> (rows, tf): rows ascending, any integer dtype; tf any numeric dtype.


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


# ---------------------------------------------------------------------------- segment


def encode(texts: Sequence[str | None], analyze: Analyze) -> bytes:
    """The keyword section of rows with these texts (None: the row has no text)."""
    n = len(texts)
    doc_len = np.full(n, NO_TEXT, dtype="<u4")
    postings: dict[str, list[tuple[int, int]]] = {}
    for row, text in enumerate(texts):
        if text is None:
            continue
        counts = Counter(analyze(text))
        doc_len[row] = sum(counts.values())
        for term, tf in counts.items():
            postings.setdefault(term, []).append((row, tf))
    encoded = sorted((term.encode("utf-8"), term) for term in postings)
    term_offsets = np.zeros(len(encoded) + 1, dtype="<u8")
    term_offsets[1:] = np.cumsum([len(b) for b, _ in encoded], dtype=np.uint64)
    lists = [postings[term] for _, term in encoded]
    post_offsets = np.zeros(len(lists) + 1, dtype="<u8")
    post_offsets[1:] = np.cumsum([len(p) for p in lists], dtype=np.uint64)
    flat = np.array([pair for p in lists for pair in p], dtype="<u4").reshape(-1, 2)
    head = np.array([len(encoded), len(flat), int(term_offsets[-1])], dtype=_HEAD)
    parts = [head, doc_len, term_offsets, post_offsets, np.ascontiguousarray(flat[:, 0]),
             np.ascontiguousarray(flat[:, 1]), b"".join(b for b, _ in encoded)]
    out = bytearray()
    for part in parts:
        out += bytes(_pad8(len(out)) - len(out))
        out += memoryview(part).cast("B")
    return bytes(out)


class SegmentKeywords:
    """A segment's keyword section, validated, with zero-copy views of its arrays."""

    def __init__(self, data: memoryview, n: int, corrupt: Callable[[str], CorruptionError]):
        try:
            self._parse(data, n)
        except (ValueError, IndexError, OverflowError):  # a forged count past any index
            raise corrupt("keyword index arrays exceed the section") from None
        problem = self._problem(n)
        if problem is not None:
            raise corrupt(f"keyword index: {problem}")
        self._term_index: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._has_text = self.doc_len_raw != NO_TEXT
        self._lengths = np.where(self._has_text, self.doc_len_raw, 0).astype(np.float64)
        # Every query asks for them (BM25's N and average length): a pass over n rows, once.
        self._totals = (int(np.count_nonzero(self._has_text)), float(self._lengths.sum()))
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

    def _parse(self, data: memoryview, n: int) -> None:
        t, p, b = (int(v) for v in np.frombuffer(data, dtype=_HEAD, count=3))
        offset = 24
        arrays = []
        for count, dtype in ((n, "<u4"), (t + 1, "<u8"), (t + 1, "<u8"), (p, "<u4"), (p, "<u4"),
                             (b, "u1")):
            offset = _pad8(offset)
            arrays.append(np.frombuffer(data, dtype=dtype, count=count, offset=offset))
            offset += count * np.dtype(dtype).itemsize
        if offset != len(data):
            raise ValueError("trailing bytes")
        (self.doc_len_raw, self.term_offsets, self.post_offsets, self.post_rows, self.post_tf,
         self.term_bytes) = arrays

    def _problem(self, n: int) -> str | None:
        for name, offsets, end in (("term", self.term_offsets, len(self.term_bytes)),
                                   ("posting", self.post_offsets, len(self.post_rows))):
            if offsets[0] != 0 or offsets[-1] != end or (offsets[1:] < offsets[:-1]).any():
                return f"{name} offsets are not a partition"
        if len(self.post_rows) and (self.post_rows.max() >= n or self.post_tf.min() < 1):
            return "a posting names a row out of range or a zero frequency"
        sums = np.bincount(self.post_rows, weights=self.post_tf, minlength=n)
        lengths = np.where(self.doc_len_raw == NO_TEXT, 0, self.doc_len_raw)
        if not np.array_equal(sums, lengths):
            return "term frequencies do not add up to the document lengths"
        return None

    def _terms(self) -> dict[str, int]:
        with self._lock:
            if self._term_index is None:
                raw = self.term_bytes.tobytes()
                bounds = self.term_offsets.tolist()
                try:
                    self._term_index = {raw[a:z].decode("utf-8"): t
                                        for t, (a, z) in enumerate(itertools.pairwise(bounds))}
                except UnicodeDecodeError:
                    raise CorruptionError("keyword index holds a term that is not UTF-8") from None
            return self._term_index

    def has_text(self) -> np.ndarray:
        return self._has_text

    def doc_lengths(self) -> np.ndarray:
        return self._lengths

    def totals(self) -> tuple[int, float]:
        return self._totals

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows u32, tf u32) of the rows holding `term`, ascending: views of the map."""
        t = self._terms().get(term)
        if t is None:
            return _EMPTY
        a, z = int(self.post_offsets[t]), int(self.post_offsets[t + 1])
        return self.post_rows[a:z], self.post_tf[a:z]

    def bounds(self, term: str) -> tuple[float, float]:
        """(largest tf, shortest length) among the term's postings."""
        t = self._terms().get(term)
        if t is None:
            return 0.0, 0.0
        max_tf, min_len = self._all_bounds()
        return float(max_tf[t]), float(min_len[t])

    def _all_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Every term's bounds at once, on first use (one pass over the postings)."""
        with self._lock:
            if self._bounds is None:
                starts = self.post_offsets[:-1].astype(np.int64)
                if len(starts) == 0:
                    self._bounds = (np.zeros(0), np.zeros(0))
                else:
                    self._bounds = (np.maximum.reduceat(self.post_tf, starts),
                                    np.minimum.reduceat(self._lengths[self.post_rows], starts))
            return self._bounds


def _bounds(rows: np.ndarray, tf: np.ndarray, lengths: np.ndarray) -> tuple[float, float]:
    if len(rows) == 0:
        return 0.0, 0.0
    return float(tf.max()), float(lengths[rows].min())


def empty_segment_keywords(n: int) -> SegmentKeywords:
    """The index of a segment written before texts existed: no row has a text."""
    return SegmentKeywords(memoryview(encode([None] * n, str.split)), n, CorruptionError)


# ---------------------------------------------------------------------------- memtable


class MemtableKeywords:
    """A memtable's postings (term -> {slot: tf}), kept up to date by `refresh`.

    Runs under the memtable's keyword lock: concurrent readers bring it up to date.
    """

    def __init__(self) -> None:
        self._postings: dict[str, dict[int, int]] = {}
        self._slot_terms: dict[int, Counter] = {}
        self._doc_len = np.zeros(0, dtype=np.float64)
        self._has_text = np.zeros(0, dtype=bool)
        self._n = 0

    def refresh(self, slots: Sequence[int], texts: Sequence[str | None], n: int,
                analyze: Analyze) -> None:
        """Re-index `slots` from `texts` (the memtable's texts, slot-indexed; n slots in use)."""
        self._n = n
        if len(self._doc_len) < n:
            grown = max(n, 2 * len(self._doc_len), 64)
            self._doc_len = np.resize(self._doc_len, grown)
            self._doc_len[n:] = 0
            self._has_text = np.concatenate([self._has_text,
                                             np.zeros(grown - len(self._has_text), dtype=bool)])
        for slot in slots:
            self._unindex(slot)
            text = texts[slot]
            self._has_text[slot] = text is not None
            self._doc_len[slot] = 0
            if text is None:
                continue
            counts = Counter(analyze(text))
            self._slot_terms[slot] = counts
            self._doc_len[slot] = sum(counts.values())
            for term, tf in counts.items():
                self._postings.setdefault(term, {})[slot] = tf

    def _unindex(self, slot: int) -> None:
        for term in self._slot_terms.pop(slot, ()):
            rows = self._postings[term]
            del rows[slot]
            if not rows:
                del self._postings[term]

    def has_text(self) -> np.ndarray:
        return self._has_text[: self._n]

    def doc_lengths(self) -> np.ndarray:
        return self._doc_len[: self._n]

    def totals(self) -> tuple[int, float]:
        return int(np.count_nonzero(self.has_text())), float(self.doc_lengths().sum())

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self._postings.get(term)
        if not rows:
            return _EMPTY
        slots = np.fromiter(rows.keys(), dtype=np.int64, count=len(rows))
        tf = np.fromiter(rows.values(), dtype=np.float64, count=len(rows))
        order = np.argsort(slots, kind="stable")
        return slots[order], tf[order]

    def bounds(self, term: str) -> tuple[float, float]:
        rows, tf = self.postings(term)
        return _bounds(rows, tf, self.doc_lengths())
