"""PomaiDB: an embedded, durable vector database.

Public names only; see ../shared/API.md for the contract.
"""

from .db import DB, open
from .errors import (
    AlreadyExistsError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    LockedError,
    NotFoundError,
    PomaiError,
    ReadOnlyError,
    StorageError,
)
from .membrane import Membrane
from .options import IndexParams, Options
from .repair import repair
from .results import Hit, Record

__all__ = [
    "DB",
    "AlreadyExistsError",
    "ClosedError",
    "CorruptionError",
    "Hit",
    "IndexParams",
    "InvalidArgumentError",
    "LockedError",
    "Membrane",
    "NotFoundError",
    "Options",
    "PomaiError",
    "ReadOnlyError",
    "Record",
    "StorageError",
    "open",
    "repair",
]
