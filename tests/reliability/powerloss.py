"""A model of what a disk keeps when the power fails, fed by pomaidb_core.fs's observer.

LevelDB's fault-injection test and RocksDB's FaultInjectionTestFS, in Python.
The model knows, for every file and directory under `root`, what an fsync has
made durable:

* a file's durable bytes are its content at its last fsync (empty for a file
  never fsynced);
* a directory's durable entries are its listing at its last fsync_dir: a file
  created, renamed or unlinked since then, or a subdirectory made since then,
  has its old fate after a power cut (it vanishes, keeps its old name, or comes
  back with its durable bytes).

`cut()` (or `cut_after(n)`, which cuts inside the n-th IO step, on whatever
thread makes it, or `cut_when(predicate)`, inside the first step it accepts)
freezes the image the disk would show after a power failure at that instant;
`materialize(image)` replaces the directory tree with it once the database has
been closed. What happens to the bytes appended since a file's last fsync:

* "drop": all lost;
* "torn": kept up to a random length (a write that half reached the platter);
* "zeros": turned into zeros (the size was journaled, the data blocks never written);
* "pages": the page cache writes pages back in any order, so each 4 KiB page
  (at file offsets that are multiples of PAGE_SIZE) of those bytes is
  independently "kept", "lost" (reads as zeros) or "garbage" (random bytes),
  and the file may end anywhere after its synced bytes: a later page can
  survive an earlier one. `fates` fixes the pages' fates in order (the last
  one repeats) and keeps the whole length, for tests that need one case.

Synced bytes are never touched: damage to acknowledged data is a different
failure (a bad disk), tested by editing the image.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pomaidb_core import fs

TAIL_MODES = ("drop", "torn", "zeros", "pages")
PAGE_SIZE = 4096
PAGE_FATES = ("kept", "lost", "garbage")


@dataclass(eq=False)
class _File:
    """One file (an inode): what its last fsync made durable."""

    durable: bytes


@dataclass
class Image:
    """The tree a power cut leaves: path relative to root -> bytes, or None for a directory."""

    entries: dict[str, bytes | None]
    note: object = None  # what the test recorded at the instant of the cut
    events: int = 0  # IO steps observed before the cut


@dataclass
class _State:
    live: dict[str, _File] = field(default_factory=dict)  # the namespace now
    durable_dirs: dict[str, dict[str, _File | None]] = field(default_factory=dict)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class PowerLossDisk:
    """Install with `with PowerLossDisk(root) as disk:`; everything under root starts durable."""

    def __init__(self, root: str | os.PathLike, *, tail: str = "drop", seed: int = 0,
                 fates: Sequence[str] | None = None) -> None:
        assert tail in TAIL_MODES
        assert fates is None or (tail == "pages" and fates and set(fates) <= set(PAGE_FATES))
        self.root = os.path.abspath(os.fspath(root))
        self._tail = tail
        self._fates = fates
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._state = _State()
        self._cut_after: int | None = None
        self._cut_when: Callable[..., bool] | None = None
        self._note: Callable[[], object] = lambda: None
        self.events = 0
        self.image: Image | None = None
        self._snapshot_tree()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> PowerLossDisk:
        fs.set_observer(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        fs.set_observer(None)

    def cut_after(self, steps: int, note: Callable[[], object] = lambda: None) -> None:
        """Cut the power inside the `steps`-th IO step from now; `note()` is recorded with it."""
        with self._lock:
            self._cut_after = self.events + steps
            self._note = note

    def cut_when(self, predicate: Callable[..., bool], note: Callable[[], object] = lambda: None) -> None:
        """Cut the power inside the first IO step for which `predicate(op, *paths)` is true."""
        with self._lock:
            self._cut_when = predicate
            self._note = note

    def cut(self, note: object = None) -> Image:
        """Cut the power now (if it was not cut already) and return the surviving image."""
        with self._lock:
            if self.image is None:
                self.image = self._freeze_image(note)
            return self.image

    # ------------------------------------------------------------------ the model

    def _snapshot_tree(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.root):
            entries: dict[str, _File | None] = {name: None for name in dirnames}
            for name in filenames:
                path = os.path.join(dirpath, name)
                entries[name] = self._state.live.setdefault(path, _File(_read(path)))
            self._state.durable_dirs[dirpath] = entries

    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _observe(self, op: str, *paths: str) -> None:
        with self._lock:
            if self.image is not None or not all(self._inside(p) for p in paths):
                return
            getattr(self, "_on_" + op)(*paths)
            self.events += 1
            if ((self._cut_after is not None and self.events >= self._cut_after)
                    or (self._cut_when is not None and self._cut_when(op, *paths))):
                self.image = self._freeze_image(self._note())

    def _known(self, path: str) -> _File:
        """The file at `path`; one made outside the seam (the LOCK file) counts as durable."""
        found = self._state.live.get(path)
        if found is None:
            found = self._state.live[path] = _File(_read(path) if os.path.isfile(path) else b"")
        return found

    def _on_create(self, path: str) -> None:
        # O_TRUNC keeps the inode and its durable bytes; a new name is a new, empty inode.
        self._state.live.setdefault(path, _File(b""))

    _on_open = _on_create

    def _on_write(self, path: str) -> None:
        pass

    def _on_truncate(self, path: str) -> None:
        pass

    def _on_fsync(self, path: str) -> None:
        self._known(path).durable = _read(path)

    def _on_fsync_dir(self, path: str) -> None:
        entries: dict[str, _File | None] = {}
        for name in os.listdir(path):
            child = os.path.join(path, name)
            entries[name] = None if os.path.isdir(child) else self._known(child)
        self._state.durable_dirs[path] = entries

    def _on_rename(self, src: str, dst: str) -> None:
        moved = self._state.live.pop(src, None)
        self._state.live[dst] = moved if moved is not None else _File(_read(dst))

    def _on_unlink(self, path: str) -> None:
        self._state.live.pop(path, None)

    def _on_mkdir(self, path: str) -> None:
        self._state.durable_dirs[path] = {}

    # ------------------------------------------------------------------ the image

    def _freeze_image(self, note: object) -> Image:
        where = {id(f): path for path, f in self._state.live.items()}
        entries: dict[str, bytes | None] = {}
        self._collect(self.root, "", entries, where)
        return Image(entries, note, self.events)

    def _collect(self, directory: str, rel: str, out: dict, where: dict[int, str]) -> None:
        listing = self._state.durable_dirs.get(directory)
        assert listing is not None, f"the model never saw {directory} made"
        for name, item in listing.items():
            path, child_rel = os.path.join(directory, name), os.path.join(rel, name)
            if item is None:
                out[child_rel] = None
                self._collect(path, child_rel, out, where)
            else:
                out[child_rel] = self._surviving_bytes(item, where.get(id(item)))

    def _surviving_bytes(self, item: _File, live_path: str | None) -> bytes:
        if self._tail == "drop" or live_path is None or not os.path.isfile(live_path):
            return item.durable
        now = _read(live_path)
        if not now.startswith(item.durable) or len(now) == len(item.durable):
            return item.durable  # not an append since the last fsync: keep the synced bytes
        if self._tail == "pages":
            return self._paged(item.durable, now)
        kept = self._rng.randint(0, len(now) - len(item.durable))
        if self._tail == "torn":
            return now[: len(item.durable) + kept]
        return item.durable + bytes(kept)

    def _paged(self, durable: bytes, now: bytes) -> bytes:
        out = bytearray(now)
        start = len(durable)
        for index, page in enumerate(range(start - start % PAGE_SIZE, len(now), PAGE_SIZE)):
            low, high = max(page, start), min(page + PAGE_SIZE, len(now))
            fate = self._fate(index)
            if fate == "lost":
                out[low:high] = bytes(high - low)
            elif fate == "garbage":
                out[low:high] = self._rng.randbytes(high - low)
        if self._fates is None and self._rng.random() < 0.5:
            del out[self._rng.randint(start, len(now)):]  # the new size was not journaled in full
        return bytes(out)

    def _fate(self, index: int) -> str:
        if self._fates is None:
            return self._rng.choice(PAGE_FATES)
        return self._fates[min(index, len(self._fates) - 1)]


def materialize(root: str | os.PathLike, image: Image) -> None:
    """Make the tree under `root` exactly the image (the database must be closed)."""
    root = os.fspath(root)
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    for rel, content in sorted(image.entries.items()):
        path = os.path.join(root, rel)
        if content is None:
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            with open(path, "wb") as handle:
                handle.write(content)
