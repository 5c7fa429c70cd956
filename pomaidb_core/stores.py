"""What the LangChain and LlamaIndex stores share: checks on the database they are given."""

from __future__ import annotations

import hashlib
import warnings

from .db import DB


def string_id(value: str, byteorder: str = "big") -> int:
    """The engine id of a store's string id: BLAKE2b-64 of its UTF-8 bytes, read big-endian.

    It decides which record holds a document on disk, so it is frozen. Both stores use it;
    `byteorder="little"` reads LlamaIndex stores written before they shared it.
    """
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, byteorder)  # type: ignore[arg-type]


def warn_if_membrane_elsewhere(db: DB, name: str, stacklevel: int = 2) -> None:
    """Warn when membrane `name` is missing but others exist.

    Most likely a store reopened without its original `membrane=`, which would
    otherwise silently find nothing.
    """
    present = db.membranes()
    if present and name not in present:
        warnings.warn(
            f"membrane {name!r} does not exist in the database at {db.path}, which holds "
            f"{present}; this store starts empty (pass membrane= to use one of those)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
