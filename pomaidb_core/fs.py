"""The one seam through which PomaiDB touches the file system.

Every write, fsync, rename, unlink, truncate and directory change goes through
this module, for two reasons:

* Tests inject faults here: `set_fault_hook(fn)` makes `fn(op, path)` run before
  each mutating step; it may raise `OSError` (ENOSPC, EIO) to simulate a failing
  disk. Every `OSError` leaves this module as `StorageError`.
* Crash tests set `POMAIDB_TEST_KILL_ODDS=N`: before every mutating step the
  process SIGKILLs itself with probability 1/N (RocksDB's kill_random_test).
  Unset, the check is a single comparison against None.
* Power-loss tests watch the disk: `set_observer(fn)` makes `fn(op, *paths)`
  run after each mutating step succeeds ("create", "open", "write",
  "truncate", "fsync", "fsync_dir", "rename" src dst, "unlink", "mkdir",
  "rmdir"), which is enough to know which bytes and directory entries an
  fsync has made durable (tests/reliability/powerloss.py). Unset, it is
  again one comparison against None.

Files and directories are created owner-only (0o600 / 0o700) unless the caller
passes another mode.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import random
import signal
from collections.abc import Callable

from .errors import LockedError, StorageError

FILE_MODE = 0o600
DIR_MODE = 0o700

FaultHook = Callable[[str, str], None]
_fault_hook: FaultHook | None = None
Observer = Callable[..., None]
_observer: Observer | None = None
_kill_odds: int | None = None
_kill_rng = random.Random()


def _read_kill_odds() -> int | None:
    raw = os.environ.get("POMAIDB_TEST_KILL_ODDS")
    if not raw:
        return None
    odds = int(raw)
    return odds if odds > 0 else None


def reload_test_hooks() -> None:
    """Re-read POMAIDB_TEST_KILL_ODDS (read once at import otherwise)."""
    global _kill_odds
    _kill_odds = _read_kill_odds()
    _kill_rng.seed(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))


def set_fault_hook(hook: FaultHook | None) -> None:
    """Install `hook(op, path)`, called before every mutating step; None removes it."""
    global _fault_hook
    _fault_hook = hook


def set_observer(observer: Observer | None) -> None:
    """Install `observer(op, *paths)`, called after every mutating step succeeds; None removes it."""
    global _observer
    _observer = observer


def _done(op: str, *paths: str) -> None:
    if _observer is not None:
        _observer(op, *paths)


def _step(op: str, path: str) -> None:
    if _kill_odds is not None and _kill_rng.randrange(_kill_odds) == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    if _fault_hook is not None:
        _fault_hook(op, path)


def _storage_error(op: str, path: str, exc: OSError) -> StorageError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(f"{op} failed on {path}: {reason}")


class WritableFile:
    """An append-only file handle; every method is one step of the seam."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        try:
            while view:
                _step("write", self.path)
                written = os.write(self._fd, view)
                view = view[written:]
                _done("write", self.path)
        except OSError as exc:
            raise _storage_error("write", self.path, exc) from exc

    def fsync(self) -> None:
        try:
            _step("fsync", self.path)
            os.fsync(self._fd)
        except OSError as exc:
            raise _storage_error("fsync", self.path, exc) from exc
        _done("fsync", self.path)

    def truncate(self, size: int) -> None:
        try:
            _step("truncate", self.path)
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError as exc:
            raise _storage_error("truncate", self.path, exc) from exc
        _done("truncate", self.path)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def create(path: str, mode: int = FILE_MODE) -> WritableFile:
    """Create (or truncate) `path` for writing."""
    try:
        _step("create", path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise _storage_error("create", path, exc) from exc
    _done("create", path)
    return WritableFile(path, fd)


def open_append(path: str, mode: int = FILE_MODE) -> WritableFile:
    """Open `path` for appending, creating it if needed."""
    try:
        _step("open", path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode)
        os.lseek(fd, 0, os.SEEK_END)
    except OSError as exc:
        raise _storage_error("open", path, exc) from exc
    _done("open", path)
    return WritableFile(path, fd)


def write_file(path: str, data: bytes | bytearray | memoryview, mode: int = FILE_MODE) -> None:
    """Write a whole file and fsync it (not its directory: see `fsync_dir`)."""
    handle = create(path, mode)
    try:
        handle.write(data)
        handle.fsync()
    finally:
        handle.close()


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _storage_error("read", path, exc) from exc


def map_file(path: str) -> mmap.mmap | None:
    """A read-only memory map of the whole file (None for an empty file)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return None
            return mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise _storage_error("mmap", path, exc) from exc


def rename(src: str, dst: str) -> None:
    try:
        _step("rename", dst)
        os.rename(src, dst)
    except OSError as exc:
        raise _storage_error("rename", dst, exc) from exc
    _done("rename", src, dst)


def unlink(path: str, missing_ok: bool = True) -> None:
    try:
        _step("unlink", path)
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise StorageError(f"unlink failed on {path}: no such file") from None
        return
    except OSError as exc:
        raise _storage_error("unlink", path, exc) from exc
    _done("unlink", path)


def fsync_dir(path: str) -> None:
    """Make renames, creations and unlinks inside `path` durable."""
    try:
        _step("fsync", path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error("fsync", path, exc) from exc
    _done("fsync_dir", path)


def makedirs(path: str, mode: int = DIR_MODE) -> None:
    """Create `path` and any missing parents, each with `mode` (os.makedirs gives parents the umask's).

    Each new directory's entry is made durable by fsyncing its parent: a
    directory is not on disk until its parent says so, and a power cut would
    otherwise take away every file inside it, fsynced or not.
    """
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if parent != path:
        makedirs(parent, mode)
    try:
        _step("mkdir", path)
        os.mkdir(path, mode)
    except FileExistsError:
        return
    except OSError as exc:
        raise _storage_error("mkdir", path, exc) from exc
    _done("mkdir", path)
    fsync_dir(parent)


def listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _storage_error("listdir", path, exc) from exc


def exists(path: str) -> bool:
    return os.path.exists(path)


def is_dir(path: str) -> bool:
    return os.path.isdir(path)


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise _storage_error("stat", path, exc) from exc


class FileLock:
    """An exclusive OS advisory lock (flock) on a file; held until `release`.

    flock locks belong to the open file description, so a second DB in the
    same process that opens the LOCK file again is refused too.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise _storage_error("open", path, exc) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(
                    f"{os.path.dirname(path) or '.'} is already open for writing by another "
                    "DB (this or another process); close it first, or open with read_only=True"
                ) from None
            raise _storage_error("lock", path, exc) from exc

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


reload_test_hooks()
