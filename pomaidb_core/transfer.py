"""Export a membrane to a file and import it back: `pomaidb export` / `pomaidb import`.

Both formats are lossless: ids, float32 vectors (bit for bit), metadata, and `text` where a
record has one. A file starts (JSONL) or is tagged (Parquet) with a header naming the membrane,
its dim, metric and index parameters, so an import recreates the membrane as it was.

JSONL (UTF-8, one JSON object per line):
    line 1:  {"pomaidb_export": 1, "membrane": str, "dim": int, "metric": str, "index": {...}}
    then:    {"id": int, "vector": [float, ...], "metadata": object | null[, "text": str]}
    Each float is the shortest decimal that reads back as the same float32 value (Python's
    repr of the float64 the float32 widens to), so the vector round-trips exactly.

Parquet (needs pyarrow): one row per record, columns
    id        uint64
    vector    fixed_size_list<float32>[dim]
    metadata  string (the metadata as JSON), null when the record has none
    text      string, null when the record has none
and the header above as JSON under the schema metadata key b"pomaidb".

The format version (`pomaidb_export`, 1) is frozen: a reader refuses versions it does not know.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from .db import DB
from .errors import InvalidArgumentError, NotFoundError
from .membrane import Membrane
from .options import IndexParams

FORMAT_VERSION = 1
FORMATS = ("jsonl", "parquet")
_PARQUET_KEY = b"pomaidb"
_BATCH = 1000


@dataclass(frozen=True)
class Header:
    membrane: str
    dim: int
    metric: str
    index: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"pomaidb_export": FORMAT_VERSION, "membrane": self.membrane,
                           "dim": self.dim, "metric": self.metric, "index": self.index})

    @classmethod
    def from_json(cls, line: str, source: str) -> Header:
        try:
            data = json.loads(line)
            if data.get("pomaidb_export") != FORMAT_VERSION:
                raise ValueError(f"unknown export format version {data.get('pomaidb_export')!r}")
            return cls(data["membrane"], data["dim"], data["metric"], data.get("index", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgumentError(f"{source} is not a PomaiDB export: {exc}") from exc


@dataclass(frozen=True)
class Row:
    id: int
    vector: np.ndarray
    metadata: dict | None
    text: str | None


def format_for(path: str, given: str | None) -> str:
    """The format asked for, else the one the file name implies (.parquet, else JSONL)."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidArgumentError(f"format must be one of {FORMATS}, got {given!r}")
        return given
    return "parquet" if path.endswith(".parquet") else "jsonl"


def export_membrane(db: DB, name: str, out: str, fmt: str, *, progress: bool = False) -> int:
    """Write every live record of membrane `name` to `out`; returns how many were written.

    The file appears under its name only when complete (written beside it, then renamed).
    """
    membrane = db.membrane(name)
    header = Header(membrane.name, membrane.dim, membrane.metric, membrane.index_params.to_dict())
    rows = (Row(r.id, r.vector, r.metadata, r.text) for r in membrane.scan())
    partial = f"{out}.partial"
    try:
        with tqdm(total=membrane.count(), disable=not progress, unit="rec",
                  desc=f"export {name}") as bar:
            counted = _counting(rows, bar)
            if fmt == "parquet":
                written = _write_parquet(partial, header, counted)
            else:
                with open(partial, "w", encoding="utf-8") as handle:
                    written = _write_jsonl(handle, header, counted)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return written


def import_file(db: DB, source: str, fmt: str, *, membrane: str | None = None,
                progress: bool = False) -> tuple[str, int]:
    """Load an export into `membrane` (default: the name in the file), creating it with the
    file's dim, metric and index parameters if it does not exist. Returns (membrane, records)."""
    if not os.path.isfile(source):
        raise NotFoundError(f"no export file at {source}")
    header, rows = _read_parquet(source) if fmt == "parquet" else _read_jsonl(source)
    target = db.get_or_create_membrane(membrane or header.membrane, dim=header.dim,
                                       metric=header.metric,
                                       index=IndexParams.from_dict(header.index))
    written = 0
    with tqdm(disable=not progress, unit="rec", desc=f"import {target.name}") as bar:
        for batch in _batches(rows, _BATCH):
            _put(target, batch)
            written += len(batch)
            bar.update(len(batch))
    return target.name, written


def _counting(rows: Iterable[Row], bar: tqdm) -> Iterator[Row]:
    for row in rows:
        yield row
        bar.update(1)


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _put(target: Membrane, batch: list[Row]) -> None:
    ids = [row.id for row in batch]
    vectors = np.stack([row.vector for row in batch])
    metadatas = [row.metadata for row in batch]
    target.put_batch(ids, vectors, metadatas, texts=[row.text for row in batch])


# ---------------------------------------------------------------------------- JSONL


def _write_jsonl(handle: IO[str], header: Header, rows: Iterable[Row]) -> int:
    handle.write(header.to_json() + "\n")
    written = 0
    for row in rows:
        line: dict[str, Any] = {"id": row.id, "vector": row.vector.tolist(), "metadata": row.metadata}
        if row.text is not None:
            line["text"] = row.text
        handle.write(json.dumps(line, allow_nan=False) + "\n")
        written += 1
    return written


def _read_jsonl(source: str) -> tuple[Header, Iterator[Row]]:
    handle = open(source, encoding="utf-8")  # closed by _jsonl_rows when exhausted
    header = Header.from_json(handle.readline(), source)
    return header, _jsonl_rows(handle, header.dim, source)


def _jsonl_rows(handle: IO[str], dim: int, source: str) -> Iterator[Row]:
    with handle:
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                row = Row(data["id"], np.asarray(data["vector"], dtype=np.float32),
                          data.get("metadata"), data.get("text"))
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidArgumentError(f"{source}:{number}: not a record line: {exc}") from exc
            if row.vector.shape != (dim,):
                raise InvalidArgumentError(
                    f"{source}:{number}: vector has {row.vector.size} values, the header says {dim}")
            yield row


# ---------------------------------------------------------------------------- Parquet


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidArgumentError(
            "the Parquet format needs pyarrow: pip install 'pomaidb-core[parquet]' "
            "(or use --format jsonl)") from exc
    return pa, pq


def _write_parquet(out: str, header: Header, rows: Iterable[Row]) -> int:
    pa, pq = _pyarrow()
    schema = pa.schema([("id", pa.uint64()), ("vector", pa.list_(pa.float32(), header.dim)),
                        ("metadata", pa.string()), ("text", pa.string())],
                       metadata={_PARQUET_KEY: header.to_json().encode("utf-8")})
    written = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in _batches(rows, _BATCH):
            vectors = np.stack([row.vector for row in batch]).astype(np.float32, copy=False)
            writer.write_table(pa.table({
                "id": pa.array([row.id for row in batch], type=pa.uint64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), header.dim),
                "metadata": [None if row.metadata is None else json.dumps(row.metadata)
                             for row in batch],
                "text": [row.text for row in batch],
            }, schema=schema))
            written += len(batch)
    return written


def _read_parquet(source: str) -> tuple[Header, Iterator[Row]]:
    pa, pq = _pyarrow()
    try:
        parquet = pq.ParquetFile(source)
        tagged = (parquet.schema_arrow.metadata or {}).get(_PARQUET_KEY)
    except pa.ArrowException as exc:
        raise InvalidArgumentError(f"{source} is not a Parquet file: {exc}") from exc
    if tagged is None:
        raise InvalidArgumentError(f"{source} is not a PomaiDB export (no {_PARQUET_KEY!r} tag)")
    header = Header.from_json(tagged.decode("utf-8"), source)
    return header, _parquet_rows(parquet, header.dim)


def _parquet_rows(parquet: Any, dim: int) -> Iterator[Row]:
    for batch in parquet.iter_batches(batch_size=_BATCH):
        ids = batch.column("id").to_pylist()
        vectors = batch.column("vector").flatten().to_numpy().reshape(-1, dim)
        metadatas = batch.column("metadata").to_pylist()
        texts = batch.column("text").to_pylist()
        for i, key in enumerate(ids):
            meta = None if metadatas[i] is None else json.loads(metadatas[i])
            yield Row(key, vectors[i], meta, texts[i])
