"""Every path PomaiDB creates is built here, so the layout is defined once.

    <root>/LOCK                               single-writer lock (flock)
    <root>/manifest/MANIFEST-<n>              manifest versions; the highest valid n is live
    <root>/manifest/*.tmp                     a manifest being written
    <root>/shard_<i>/wal/<seq:020d>.wal       WAL files; <seq> is the first sequence they hold
    <root>/shard_<i>/segments/<m>-<s>.seg     segment <s> of membrane id <m>
    <root>/shard_<i>/segments/<m>-<s>.wsbr    its WSBR sidecar
    <root>/lost/<relative path, / as __>      files repair set aside (damaged or superseded)
"""

from __future__ import annotations

import os
import re

LOCK = "LOCK"
MANIFEST_DIR = "manifest"
TMP_SUFFIX = ".tmp"
WAL_SUFFIX = ".wal"
SEGMENT_SUFFIX = ".seg"
SIDECAR_SUFFIX = ".wsbr"

_MANIFEST_RE = re.compile(r"^MANIFEST-(\d{1,20})$")
_WAL_RE = re.compile(r"^(\d{20})\.wal$")
_SEGMENT_RE = re.compile(r"^(\d{1,10})-(\d{1,20})\.(seg|wsbr)$")


def lock_path(root: str) -> str:
    return os.path.join(root, LOCK)


def manifest_dir(root: str) -> str:
    return os.path.join(root, MANIFEST_DIR)


def manifest_path(root: str, number: int) -> str:
    return os.path.join(manifest_dir(root), f"MANIFEST-{number}")


def parse_manifest_name(name: str) -> int | None:
    match = _MANIFEST_RE.match(name)
    return int(match.group(1)) if match else None


def lost_dir(root: str) -> str:
    return os.path.join(root, "lost")


def shard_dir(root: str, shard: int) -> str:
    return os.path.join(root, f"shard_{shard}")


def wal_dir(root: str, shard: int) -> str:
    return os.path.join(shard_dir(root, shard), "wal")


def wal_path(root: str, shard: int, first_seq: int) -> str:
    return os.path.join(wal_dir(root, shard), f"{first_seq:020d}{WAL_SUFFIX}")


def parse_wal_name(name: str) -> int | None:
    match = _WAL_RE.match(name)
    return int(match.group(1)) if match else None


def segment_dir(root: str, shard: int) -> str:
    return os.path.join(shard_dir(root, shard), "segments")


def segment_path(root: str, shard: int, membrane_id: int, segment_id: int) -> str:
    return os.path.join(segment_dir(root, shard), f"{membrane_id}-{segment_id}{SEGMENT_SUFFIX}")


def sidecar_path(root: str, shard: int, membrane_id: int, segment_id: int) -> str:
    return os.path.join(segment_dir(root, shard), f"{membrane_id}-{segment_id}{SIDECAR_SUFFIX}")


def parse_segment_name(name: str) -> tuple[int, int, str] | None:
    """(membrane_id, segment_id, 'seg' | 'wsbr') for a segment-directory file name."""
    match = _SEGMENT_RE.match(name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def tmp_path(path: str) -> str:
    return path + TMP_SUFFIX
