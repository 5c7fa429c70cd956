"""`pomaidb import-chroma`: every collection copied (ids, embeddings, documents, metadata) in the
LangChain integration's layout, checked against the Chroma side. A fake client covers the mapping
everywhere; a real chromadb database is used when the chromadb package is installed."""

from __future__ import annotations

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import chroma, cli


class FakeCollection:
    """The slice of chromadb's Collection that the importer uses (count, get with paging)."""

    def __init__(self, name, rows, metadata=None):
        self.name, self.metadata, self._rows = name, metadata, rows

    def count(self):
        return len(self._rows)

    def get(self, include, limit, offset):
        page = self._rows[offset:offset + limit]
        return {"ids": [r[0] for r in page],
                "embeddings": np.array([r[1] for r in page], dtype=np.float32),
                "documents": [r[2] for r in page], "metadatas": [r[3] for r in page]}


class FakeClient:
    def __init__(self, *collections):
        self._collections = {c.name: c for c in collections}

    def list_collections(self):
        return list(self._collections)  # chromadb 0.6 returns names; 1.x returns collections

    def get_collection(self, name):
        return self._collections[name]


def rows(n, dim, seed, with_documents=True):
    rng = np.random.default_rng(seed)
    return [(f"id-{seed}-{i}", rng.standard_normal(dim).astype(np.float32).tolist(),
             f"document {i}" if with_documents and i % 4 else None,
             {"i": i, "even": i % 2 == 0} if i % 5 else None) for i in range(n)]


def check_copied(db, name, source_rows, metric):
    membrane = db.membrane(name)
    assert (membrane.dim, membrane.metric, membrane.count()) == (len(source_rows[0][1]), metric,
                                                                 len(source_rows))
    for chroma_id, vector, document, metadata in source_rows:
        record = membrane.get(chroma.engine_id(chroma_id))
        expected = dict(metadata or {}, _lc_id=chroma_id)
        if document is not None:
            expected["_lc_text"] = document
        assert record.metadata == expected
        assert np.array_equal(record.vector, np.asarray(vector, dtype=np.float32))


def test_every_collection_is_copied_with_its_metric_and_counts_checked(tmp_path):
    docs, plain = rows(25, 6, 1), rows(7, 3, 2, with_documents=False)
    client = FakeClient(FakeCollection("docs", docs, {"hnsw:space": "cosine"}),
                        FakeCollection("plain", plain), FakeCollection("empty", []))
    with pdb.open(tmp_path / "db", shards=3) as db:
        reports = chroma.import_chroma(client, db, batch_size=4)
        assert [(r.name, r.chroma_count, r.imported, r.membrane_count, r.ok) for r in reports] == [
            ("docs", 25, 25, 25, True), ("plain", 7, 7, 7, True), ("empty", 0, 0, 0, True)]
        check_copied(db, "docs", docs, "cosine")
        check_copied(db, "plain", plain, "l2")  # Chroma's default distance
        assert db.membranes() == ["docs", "plain"]  # an empty collection has no dim to create


def test_engine_ids_are_the_langchain_integrations(tmp_path):
    ids = pytest.importorskip("langchain_pomaidb.ids")
    for chroma_id in ["a", "id-1-0", "é✓", ""]:
        assert chroma.engine_id(chroma_id) == ids.engine_id(chroma_id)


def test_the_langchain_store_serves_an_imported_collection(tmp_path):
    langchain_pomaidb = pytest.importorskip("langchain_pomaidb")
    source = rows(12, 8, 3)
    with pdb.open(tmp_path / "db") as db:
        chroma.import_chroma(FakeClient(FakeCollection("lc", source, {"hnsw:space": "cosine"})), db)
    embeddings = langchain_pomaidb.HashingEmbeddings(dim=8)
    with langchain_pomaidb.PomaiDBVectorStore(embeddings, path=tmp_path / "db", membrane="lc") as store:
        found = store.get_by_ids([source[1][0], source[5][0]])
    assert [(d.id, d.page_content, d.metadata) for d in found] == [
        (source[1][0], source[1][2], source[1][3] or {}), (source[5][0], source[5][2], source[5][3] or {})]


def test_a_taken_membrane_name_or_unknown_distance_refuses_before_writing(tmp_path):
    with pdb.open(tmp_path / "db") as db:
        db.create_membrane("b", dim=2)
        taken = FakeClient(FakeCollection("a", rows(3, 2, 4)), FakeCollection("b", rows(3, 2, 5)))
        with pytest.raises(pdb.AlreadyExistsError, match=r"\['b'\] already exist"):
            chroma.import_chroma(taken, db)
        odd = FakeClient(FakeCollection("a", rows(3, 2, 4)),
                         FakeCollection("c", rows(3, 2, 6), {"hnsw:space": "manhattan"}))
        with pytest.raises(pdb.InvalidArgumentError, match="'manhattan'"):
            chroma.import_chroma(odd, db)
        assert db.membranes() == ["b"]


def test_two_ids_sharing_an_engine_id_stop_the_import(tmp_path, monkeypatch):
    monkeypatch.setattr(chroma, "engine_id", lambda chroma_id: 7)
    with pdb.open(tmp_path / "db") as db:
        with pytest.raises(pdb.AlreadyExistsError, match="map to one engine id"):
            chroma.import_chroma(FakeClient(FakeCollection("a", rows(2, 2, 1))), db)


def test_import_chroma_command_on_a_real_chroma_database(tmp_path, capsys):
    chromadb = pytest.importorskip("chromadb")
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    docs = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    added = rows(30, 4, 8)
    docs.add(ids=[r[0] for r in added], embeddings=[r[1] for r in added],
             documents=[r[2] for r in added], metadatas=[r[3] for r in added])
    client.create_collection("more").add(ids=["x", "y"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    # The oracle is what Chroma itself returns (it does not hand back the input floats exactly).
    stored = {name: client.get_collection(name).get(include=["embeddings", "documents", "metadatas"])
              for name in ("docs", "more")}
    del client

    code = cli.main(["import-chroma", str(tmp_path / "chroma"), str(tmp_path / "db")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "docs: 30 in Chroma, 30 imported, 30 in the membrane (dim 4, metric cosine): ok" in out
    assert "2 collection(s) copied" in out
    with pdb.open(tmp_path / "db", read_only=True) as db:
        for name, metric in (("docs", "cosine"), ("more", "l2")):
            page = stored[name]
            check_copied(db, name, list(zip(page["ids"], page["embeddings"], page["documents"],
                                            page["metadatas"])), metric)
