"""Options of a DB and IndexParams of a membrane, validated at construction.

Every field is documented with its default; a bad value raises
InvalidArgumentError from the constructor, before any IO happens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import analyzer
from .errors import InvalidArgumentError

SYNC_POLICIES = ("always", "batch", "never")
METRICS = ("cosine", "ip", "l2")
WSBR_MODES = ("shortlist", "literal")


def _require_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {value}")


def _require_optional_int(name: str, value: Any, low: int) -> None:
    if value is not None:
        _require_int(name, value, low)


@dataclass(frozen=True)
class IndexParams:
    """WSBR knobs of a membrane (see wsbr.py for the algorithm).

    None means "chosen per segment from its size" (the documented defaults in
    wsbr.py reach recall@10 >= 0.95 on real sentence embeddings).
    """

    wsbr_block_size: int | None = None  # rows per block, before k-means splitting
    wsbr_top_blocks: int | None = None  # blocks scored exactly per segment and query
    wsbr_widen_blocks: int | None = None  # extra Hamming-ranked candidates re-ranked by centroid
    wsbr_mode: str = "shortlist"  # "shortlist" (Hamming shortlist + centroid re-rank) | "literal"
    # Keyword search (analyzer.py, bm25.py); fixed at creation like every field here.
    text_stemmer: str | None = None  # None | "english" (Snowball via PyStemmer, the stemming extra)
    text_stopwords: str | None = None  # None | "english" (Lucene's English stop words)
    bm25_k1: float = 1.2  # BM25 term-frequency saturation
    bm25_b: float = 0.75  # BM25 document-length normalisation, in [0, 1]

    def __post_init__(self) -> None:
        analyzer.check_settings(self.text_stemmer, self.text_stopwords)
        for name, value, high in (("bm25_k1", self.bm25_k1, 1e6), ("bm25_b", self.bm25_b, 1.0)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value <= high):
                raise InvalidArgumentError(f"{name} must be a number in [0, {high:g}], got {value!r}")
        _require_optional_int("wsbr_block_size", self.wsbr_block_size, 1)
        _require_optional_int("wsbr_top_blocks", self.wsbr_top_blocks, 1)
        _require_optional_int("wsbr_widen_blocks", self.wsbr_widen_blocks, 0)
        if self.wsbr_mode not in WSBR_MODES:
            raise InvalidArgumentError(
                f"wsbr_mode must be one of {WSBR_MODES}, got {self.wsbr_mode!r}"
            )

    def analyzer(self) -> analyzer.Analyze:
        """The membrane's text -> terms function (analyzer.py)."""
        return analyzer.analyzer(self.text_stemmer, self.text_stopwords)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (how the manifest stores them)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        """The inverse of `to_dict`; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Options:
    """How a DB is opened. Every field may also be passed to DB() as a keyword."""

    shards: int | None = None  # shard actors (threads); None = as created, 4 for a new directory
    sync: str = "batch"  # "always" | "batch" (group commit) | "never" (write(), no fsync)
    memtable_limit: int = 50_000  # records in a shard's active memtable before it is frozen
    memtable_limit_bytes: int = 256 << 20  # vector+metadata bytes before an automatic freeze
    mailbox_capacity: int = 1024  # commands queued per shard before callers wait
    group_commit_max: int = 256  # commands drained into one WAL write + sync
    wal_file_limit_bytes: int = 64 << 20  # a WAL file is rotated past this size
    compaction_trigger: int = 4  # adjacent similar-sized segments that auto-compaction merges
    max_segment_rows: int = 2_000_000  # compaction never writes a larger segment (compaction.py)
    auto_freeze: bool = True  # freeze automatically at memtable_limit(_bytes)
    auto_compact: bool = True  # compact automatically at compaction_trigger
    # A shard that has had no command for this long freezes a memtable of at least
    # idle_freeze_min_records, so a bulk load is searched through WSBR soon after it
    # ends instead of by exact scan until the memtable fills (0 disables it).
    idle_freeze_seconds: float = 3.0
    idle_freeze_min_records: int = 1024
    max_metadata_bytes: int = 1 << 20  # JSON size of one record's metadata
    read_only: bool = False  # open a consistent snapshot; every write raises ReadOnlyError
    index: IndexParams = field(default_factory=IndexParams)  # default for new membranes

    def __post_init__(self) -> None:
        if self.shards is not None:
            _require_int("shards", self.shards, 1, 256)
        if self.sync not in SYNC_POLICIES:
            raise InvalidArgumentError(f"sync must be one of {SYNC_POLICIES}, got {self.sync!r}")
        _require_int("memtable_limit", self.memtable_limit, 1)
        _require_int("memtable_limit_bytes", self.memtable_limit_bytes, 1)
        _require_int("mailbox_capacity", self.mailbox_capacity, 1)
        _require_int("group_commit_max", self.group_commit_max, 1)
        _require_int("wal_file_limit_bytes", self.wal_file_limit_bytes, 4096)
        _require_int("compaction_trigger", self.compaction_trigger, 2)
        _require_int("max_segment_rows", self.max_segment_rows, 1)
        _require_int("max_metadata_bytes", self.max_metadata_bytes, 2)
        _require_int("idle_freeze_min_records", self.idle_freeze_min_records, 1)
        idle = self.idle_freeze_seconds
        if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not 0 <= idle < 1e6:
            raise InvalidArgumentError(f"idle_freeze_seconds must be a number in [0, 1e6), got {idle!r}")
        for name in ("auto_freeze", "auto_compact", "read_only"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name} must be a bool")
        if not isinstance(self.index, IndexParams):
            raise InvalidArgumentError("index must be a pomaidb_core.IndexParams")

    @classmethod
    def merged(cls, options: Options | None, overrides: dict[str, Any]) -> Options:
        """`options` (or the defaults) with keyword overrides applied."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidArgumentError(
                f"unknown option(s) {unknown}; valid options are {sorted(known)}"
            )
        if options is not None and not isinstance(options, Options):
            raise InvalidArgumentError("options must be a pomaidb_core.Options")
        return dataclasses.replace(options or cls(), **overrides)
