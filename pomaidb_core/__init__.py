"""PomaiDB: an embedded, durable vector database.

Public names only; see ../shared/API.md for the contract.
"""

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
from .options import IndexParams, Options

__all__ = [
    "AlreadyExistsError",
    "ClosedError",
    "CorruptionError",
    "IndexParams",
    "InvalidArgumentError",
    "LockedError",
    "NotFoundError",
    "Options",
    "PomaiError",
    "ReadOnlyError",
    "StorageError",
]
