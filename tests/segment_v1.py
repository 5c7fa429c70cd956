"""The segment writer of format version 1, frozen as released, to make v1 files for the
compatibility tests (the engine writes only the current version). Its byte layout is the one
pomaidb_core/segment.py documents for version 1; nothing here may change."""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from pomaidb_core.kernels import crc32c

_FIXED = struct.Struct("<8sIIQQQIBBH")
_ENTRY = struct.Struct("<QQII")
_HEADER_BYTES, _HEADER_CRC_OFFSET, _ALIGN = 256, 216, 64
_METRICS = {"cosine": 1, "ip": 2, "l2": 3}


def write_segment_v1(path, *, membrane_id, dim, metric, ids, tombstones, vectors, metadatas):
    """Write a v1 segment at `path` and return its data checksum (the header CRC)."""
    n = len(ids)
    blobs = [b"" if m is None else json.dumps(m, ensure_ascii=False, allow_nan=False,
                                              separators=(",", ":")).encode("utf-8")
             for m in metadatas]
    offsets = np.zeros(n + 1, dtype="<u8")
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    rows = np.argsort(ids, kind="stable")
    sections = [np.ascontiguousarray(ids, dtype="<u8").tobytes(),
                np.asarray(tombstones, dtype=np.uint8).tobytes(),
                np.ascontiguousarray(vectors, dtype="<f4").tobytes(),
                np.asarray(ids, dtype="<u8")[rows].tobytes(),
                rows.astype("<u4").tobytes(), offsets.tobytes(), b"".join(blobs)]
    body, table = bytearray(), []
    position = _HEADER_BYTES
    for section in sections:
        start = (position + _ALIGN - 1) // _ALIGN * _ALIGN
        body += bytes(start - position) + section
        table.append((start, len(section), crc32c(section)))
        position = start + len(section)
    head = bytearray(_HEADER_BYTES)
    _FIXED.pack_into(head, 0, b"PMDBSEG\0", 1, int(bool(np.any(tombstones))), membrane_id, n,
                     position, dim, _METRICS[metric], len(sections), 0)
    for i, (offset, length, crc) in enumerate(table):
        _ENTRY.pack_into(head, _FIXED.size + i * _ENTRY.size, offset, length, crc, 0)
    struct.pack_into("<I", head, _HEADER_CRC_OFFSET, crc32c(bytes(head[:_HEADER_CRC_OFFSET])))
    with open(path, "wb") as handle:
        handle.write(bytes(head) + bytes(body))
        handle.flush()
        os.fsync(handle.fileno())
    return struct.unpack_from("<I", head, _HEADER_CRC_OFFSET)[0]
