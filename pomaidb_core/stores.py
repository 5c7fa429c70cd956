"""What the LangChain and LlamaIndex stores share: checks on the database they are given."""

from __future__ import annotations

import warnings

from .db import DB


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
