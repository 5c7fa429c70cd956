"""The PomaiError family: every failure a caller can cause or must handle.

Each class is also the natural stdlib type, so `except ValueError` and
`except KeyError` keep working for callers that do not know PomaiDB.
Bugs in PomaiDB itself are assertions, never one of these.
"""

from __future__ import annotations


class PomaiError(Exception):
    """Base of every error PomaiDB raises on purpose."""


class InvalidArgumentError(PomaiError, ValueError):
    """The caller passed something malformed; nothing was changed."""


class NotFoundError(PomaiError, KeyError):
    """A named thing (membrane) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(PomaiError):
    """A named thing exists already with other settings."""


class CorruptionError(PomaiError):
    """A file failed a checksum or structural check: fail closed, never answer wrongly."""


class ClosedError(PomaiError):
    """The database is not open (never opened, closed, or opened read-only for a write)."""


class StorageError(PomaiError, IOError):
    """The operating system refused a file operation (disk full, permission, failed fsync)."""


class LockedError(StorageError):
    """Another writer holds the directory's LOCK file."""


class UnavailableError(PomaiError, TimeoutError):
    """Shards of a Ray-backed database did not answer in time (their node is gone); names them."""


class ReadOnlyError(PomaiError):
    """A write was attempted on a database opened with read_only=True."""


def copy_for_caller(error: BaseException) -> BaseException:
    """A separate exception object for each caller that one failure reaches.

    Raising one instance in several threads makes them write its __traceback__
    concurrently (and keeps every caller's frames alive through it).
    """
    try:
        copy = type(error)(*error.args)
    except Exception:  # a type whose constructor wants other arguments: share it after all
        return error
    copy.__cause__ = error.__cause__
    return copy
