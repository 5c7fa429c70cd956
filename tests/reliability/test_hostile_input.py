"""Hostile input: nothing a caller or a file says can escape the directory, run code,
exhaust the stack, or be stored half-way; and everything PomaiDB creates is owner-only.

Complements tests/unit/test_db.py (the everyday bad arguments) with the adversarial ones.
"""

from __future__ import annotations

import ast
import os
import pickle
import stat

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import filenames, fs

DIM = 3
PACKAGE = os.path.dirname(pdb.__file__)


@pytest.fixture
def db(tmp_path):
    with pdb.open(tmp_path / "db", shards=2, max_metadata_bytes=1000) as handle:
        yield handle


@pytest.fixture
def m(db):
    membrane = db.create_membrane("m", dim=DIM)
    membrane.put_batch([1, 2], np.eye(2, DIM), [{"keep": 1}, None])
    return membrane


def _nested_filter(depth: int) -> dict:
    spec: dict = {"a": 1}
    for level in range(depth):
        spec = {"$not": spec} if level % 2 else {"$and": [spec, {"b": 2}]}
    return spec


def _nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------------------- names and paths


ESCAPING_NAMES = ["..", ".", "../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "x\x00y",
                  "line\nbreak", "tab\there", "\x1b[31mred", "rtl\u202eoverride", "n" * 129,
                  "", 5, None, b"bytes"]


@pytest.mark.parametrize("name", ESCAPING_NAMES, ids=repr)
def test_a_membrane_name_that_could_escape_or_confuse_is_rejected(db, name):
    with pytest.raises(pdb.InvalidArgumentError):
        db.create_membrane(name, dim=DIM)
    assert db.membranes() == []


def test_membrane_names_never_become_paths(tmp_path):
    """Odd but legal names are catalog entries only: every file is one the layout names."""
    world = tmp_path / "world"
    world.mkdir()
    path = world / "db"
    names = ["...", "~", "$HOME", "*", "CON", "a b", "ünïcødé ✓", "%2e%2e%2f", "-rf", "'; drop"]
    with pdb.open(path, shards=2) as db:
        for name in names:
            m = db.create_membrane(name, dim=DIM)
            m.put_batch(range(20), np.ones((20, DIM)))
        db.freeze()
    with pdb.open(path, shards=2) as db:
        assert db.membranes() == sorted(names)
    assert os.listdir(world) == ["db"]
    for dirpath, _, files in os.walk(path):
        for name in files:
            assert (name in (filenames.LOCK, filenames.MARKER)
                    or filenames.parse_manifest_name(name) is not None
                    or filenames.parse_wal_name(name) is not None
                    or filenames.parse_segment_name(name) is not None), (dirpath, name)


# ---------------------------------------------------------------------------- nothing evaluated

_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "joblib",
                      "yaml", "cloudpickle"}
_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}  # the builtins, called bare


def _package_sources():
    for dirpath, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def test_no_module_can_unpickle_or_evaluate_what_it_reads():
    offences = []
    for path in _package_sources():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules = {(node.module or "").split(".")[0]}
            else:
                modules = set()
            offences += [f"{path}: import {name}" for name in modules & _FORBIDDEN_MODULES]
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
                    offences.append(f"{path}:{node.lineno}: {node.func.id}()")
                if any(k.arg == "allow_pickle" and not _is_false(k.value) for k in node.keywords):
                    offences.append(f"{path}:{node.lineno}: allow_pickle")
    assert not offences, offences


def _is_false(value: ast.AST) -> bool:
    return isinstance(value, ast.Constant) and value.value is False


@pytest.mark.parametrize("target", ["manifest", "segment", "sidecar", "wal"])
def test_a_pickle_planted_in_place_of_a_file_is_corruption_never_run(tmp_path, target):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        m = db.create_membrane("m", dim=DIM)
        m.put_batch(range(20), np.ones((20, DIM)))
        db.freeze()
        m.put(99, np.ones(DIM))
    victim = {"manifest": "manifest/MANIFEST-*", "segment": "shard_0/segments/*.seg",
              "sidecar": "shard_0/segments/*.wsbr", "wal": "shard_0/wal/*.wal"}[target]
    planted = sorted(path.glob(victim))[-1]
    marker = tmp_path / "pwned"
    planted.write_bytes(pickle.dumps(_Trap(str(marker))))
    if target == "wal":
        # A log that is garbage from its first byte is a torn tail (LevelDB's rule): dropped.
        with pdb.open(path, shards=1) as db:
            assert db.membrane("m").count() == 20
    else:
        with pytest.raises(pdb.CorruptionError):
            pdb.open(path, shards=1)
    assert not marker.exists()


class _Trap:
    """Unpickling this creates a file: proof that something ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_metadata_that_looks_like_code_is_stored_as_text(m):
    hostile = {"s": "__import__('os').system('true')", "p": pickle.dumps(1).hex(),
               "y": "!!python/object/apply:os.system ['true']", "j": '{"$eval": 1}',
               "$and": [1], "nested": {"$or": "x"}}
    m.put(7, np.ones(DIM), hostile)
    assert m.get(7).metadata == hostile


# ---------------------------------------------------------------------------- bad arguments

BAD_CALLS = {
    "metadata one byte over the limit": lambda m: m.put(5, np.ones(DIM), {"t": "x" * 993}),
    "metadata nested 10000 deep": lambda m: m.put(5, np.ones(DIM), {"x": _nested_list(10_000)}),
    "metadata set value": lambda m: m.put(5, np.ones(DIM), {"x": {1}}),
    "metadata bytes key": lambda m: m.put(5, np.ones(DIM), {b"k": 1}),
    "metadata inf": lambda m: m.put(5, np.ones(DIM), {"x": float("inf")}),
    "metadata list of nan": lambda m: m.put(5, np.ones(DIM), {"x": [1.0, float("nan")]}),
    "complex vector": lambda m: m.put(5, np.ones(DIM, dtype=complex)),
    "object vector": lambda m: m.put(5, np.array([1, "a", None], dtype=object)),
    "string vector": lambda m: m.put(5, np.array(["1", "2", "3"])),
    "bool vector": lambda m: m.put(5, np.ones(DIM, dtype=bool)),
    "ragged vector": lambda m: m.put(5, [1.0, [2.0], 3.0]),
    "scalar vector": lambda m: m.put(5, 1.0),
    "2-d vector for put": lambda m: m.put(5, np.ones((1, DIM))),
    "3-d batch": lambda m: m.put_batch([5], np.ones((1, 1, DIM))),
    "batch of the wrong width": lambda m: m.put_batch([5, 6], np.ones((2, DIM + 1))),
    "float32 overflow": lambda m: m.put(5, [1e39, 0.0, 0.0]),
    "-inf in a batch": lambda m: m.put_batch([5, 6], [[0, 0, 0], [0, 0, -np.inf]]),
    "nan query": lambda m: m.search([np.nan, 0, 0]),
    "inf query in a batch": lambda m: m.search_batch([[0, 0, 0], [np.inf, 0, 0]]),
    "1-d search_batch": lambda m: m.search_batch(np.ones(DIM)),
    "id -1 as int64 array": lambda m: m.put_batch(np.array([-1]), np.ones((1, DIM))),
    "id 2**64": lambda m: m.put(2**64, np.ones(DIM)),
    "id 2**64 in a batch": lambda m: m.put_batch([5, 2**64], np.ones((2, DIM))),
    "id as float array": lambda m: m.put_batch(np.array([5.0]), np.ones((1, DIM))),
    "id -1 in delete_batch": lambda m: m.delete_batch([5, -1]),
    "id 2**64 in get_batch": lambda m: m.get_batch([2**64]),
    "filter nested 10000 deep (search)": lambda m: m.search(np.ones(DIM), filter=_nested_filter(10_000)),
    "filter nested 10000 deep (delete_where)": lambda m: m.delete_where(_nested_filter(10_000)),
    "filter nested 10000 deep (scan)": lambda m: list(m.scan(_nested_filter(10_000))),
    "filter nested 33 deep": lambda m: m.search(np.ones(DIM), filter=_nested_filter(33)),
    "filter operator on nan": lambda m: m.search(np.ones(DIM), filter={"x": {"$gt": float("nan")}}),
    "k of 2.0": lambda m: m.search(np.ones(DIM), k=2.0),
    "k of True": lambda m: m.search(np.ones(DIM), k=True),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_hostile_arguments_raise_invalid_argument_and_change_nothing(m, call):
    before = sorted((r.id, r.vector.tobytes(), str(r.metadata)) for r in m.scan())
    with pytest.raises(pdb.InvalidArgumentError):
        call(m)
    assert sorted((r.id, r.vector.tobytes(), str(r.metadata)) for r in m.scan()) == before


def test_metadata_exactly_at_the_limit_is_accepted(m):
    m.put(5, np.ones(DIM), {"t": "x" * 992})  # {"t":"..."} is 1000 bytes of JSON
    assert len(m.get(5).metadata["t"]) == 992


def test_a_huge_k_returns_every_record_without_allocating_for_k(m):
    assert len(m.search(np.ones(DIM), k=2**62)) == 2


@pytest.mark.parametrize("dim", [0, -1, 65537, 10**12, 3.0, True, "3", None])
def test_absurd_dims_are_rejected(db, dim):
    with pytest.raises(pdb.InvalidArgumentError):
        db.create_membrane("d", dim=dim)


# ---------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_every_file_and_directory_a_database_creates_is_owner_only(tmp_path, umask):
    """Watched as they are created (temporaries included), under a permissive umask too."""
    created: list[str] = []

    def watch(op: str, *paths: str) -> None:
        if op in ("create", "open", "mkdir"):
            created.append(paths[0])
            mode = stat.S_IMODE(os.stat(paths[0]).st_mode)
            wanted = fs.DIR_MODE if op == "mkdir" else fs.FILE_MODE
            assert mode == wanted, f"{paths[0]} was created {oct(mode)}"

    path = tmp_path / "new" / "parent" / "db"
    old = os.umask(umask)
    fs.set_observer(watch)
    try:
        with pdb.open(path, shards=2, memtable_limit=50, compaction_trigger=2) as db:
            m = db.create_membrane("m", dim=DIM)
            for start in range(0, 300, 50):
                m.put_batch(range(start, start + 50), np.random.default_rng(start).random((50, 3)))
            db.freeze()
            db.compact()
            db.drop_membrane("m")
    finally:
        fs.set_observer(None)
        os.umask(old)
    names = [os.path.basename(p) for p in created]
    for kind in (".wal", ".seg.tmp", ".wsbr.tmp", ".tmp"):
        assert any(name.endswith(kind) for name in names), f"no {kind} file was watched"
    assert {"new", "parent", "db", "manifest", "wal", "segments"} <= set(names)
    for dirpath, _, files in os.walk(tmp_path / "new"):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == fs.DIR_MODE, dirpath
        for name in files:
            full = os.path.join(dirpath, name)
            assert stat.S_IMODE(os.stat(full).st_mode) == fs.FILE_MODE, full


def test_an_existing_directory_keeps_the_mode_its_owner_gave_it(tmp_path):
    path = tmp_path / "shared"
    path.mkdir(mode=0o750)
    os.chmod(path, 0o750)
    with pdb.open(path) as db:
        db.create_membrane("m", dim=DIM)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(path / "LOCK").st_mode) == fs.FILE_MODE
