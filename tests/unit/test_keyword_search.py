"""Record texts, BM25 keyword search and hybrid search, against independent oracles."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from bm25_reference import bm25_scores, top

import pomaidb_core as pdb
from pomaidb_core import analyzer, records, validation
from pomaidb_core.errors import CorruptionError, InvalidArgumentError

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "pypi_2k.txt")
ANALYZE = analyzer.analyzer()


def corpus(n: int = 2000) -> list[str]:
    with open(DATA, encoding="utf-8") as handle:
        return handle.read().splitlines()[:n]


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


QUERIES = ["python library", "django rest framework api", "mcp server", "testing tool for pytest",
           "async http client", "machine learning model", "aws cdk construct", "a the of"]


def load(path, texts, shards=4, **options):
    db = pdb.open(path, shards=shards, **options)
    m = db.create_membrane("m", dim=8)
    m.put_batch(np.arange(len(texts)), vectors(len(texts)), [{"i": i % 3} for i in range(len(texts))],
                texts=texts)
    return db, m


def keyword(m, query, k=10, flt=None):
    return [(h.id, h.score) for h in m.search(None, k=k, filter=flt, text=query)]


def assert_matches_reference(got, expected):
    assert [i for i, _ in got] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-12)


# ---------------------------------------------------------------- texts as payload


def test_text_round_trips_through_memtable_wal_segment_and_compaction(tmp_path):
    with pdb.open(tmp_path, shards=2) as db:
        m = db.create_membrane("m", dim=8)
        m.put(1, vectors(1)[0], {"a": 1}, text="Grüße aus 東京")
        m.put_batch([2, 3], vectors(2), texts=["tls handshake error", None])
        m.put(4, vectors(1)[0])
        assert [m.get(i).text for i in (1, 2, 3, 4)] == ["Grüße aus 東京", "tls handshake error",
                                                            None, None]
    with pdb.open(tmp_path) as db:  # replayed from the WAL
        m = db.membrane("m")
        assert m.get(1).text == "Grüße aus 東京"
        db.freeze()
        assert m.get(2).text == "tls handshake error"
        m.put(2, vectors(1)[0], text="replaced")
        db.freeze()
        db.compact()
        db.verify()
        assert sorted((r.id, r.text) for r in m.scan()) == [
            (1, "Grüße aus 東京"), (2, "replaced"), (3, None), (4, None)]
        hits = m.search(vectors(1)[0], k=4, exact=True)
        assert {h.id: h.text for h in hits}[2] == "replaced"


def test_a_put_record_written_before_texts_existed_still_replays():
    batch = validation.make_put_batch(7, [1, 2], vectors(2, 3), [{"a": 1}, None], 3, 1 << 20)
    payload = records.encode_put(batch)
    # The original layout, built by hand: head, ids, vectors, metadata lengths and JSON.
    old = (np.array([7, 2, 3], "<u4").tobytes() + np.array([1, 2], "<u8").tobytes()
           + batch.vectors.astype("<f4").tobytes() + np.array([7, 0xFFFFFFFF], "<u4").tobytes()
           + b'{"a":1}')
    assert payload == old
    decoded = records.decode(records.PUT_BATCH, old)
    assert decoded.texts is None and decoded.metadatas == [{"a": 1}, None]
    with_text = validation.make_put_batch(7, [1, 2], vectors(2, 3), None, 3, 1 << 20,
                                       texts=[None, "héllo"])
    assert records.decode(records.PUT_BATCH, records.encode_put(with_text)).texts == [None, "héllo"]
    with pytest.raises(CorruptionError):
        records.decode(records.PUT_BATCH, records.encode_put(with_text)[:-1])


@pytest.mark.parametrize("bad", [
    dict(query=None), dict(text=b"bytes"), dict(text="x", fusion="max"), dict(text="x", alpha=1.5),
    dict(text="x", alpha=True), dict(text=["x"])])
def test_bad_search_arguments_raise_and_change_nothing(tmp_path, bad):
    with pdb.open(tmp_path, shards=1) as db:
        m = db.create_membrane("m", dim=8)
        m.put(1, vectors(1)[0], text="x")
        args = {"query": vectors(1)[0], **bad}
        with pytest.raises(InvalidArgumentError):
            m.search(args.pop("query"), **args)
        assert m.count() == 1 and m.get(1).text == "x"


def test_bad_texts_are_refused_before_anything_is_written(tmp_path):
    with pdb.open(tmp_path, shards=2) as db:
        m = db.create_membrane("m", dim=8)
        for texts in (["a"], ["a", 3], "ab", ["a", "\ud800"]):
            with pytest.raises(InvalidArgumentError):
                m.put_batch([1, 2], vectors(2), texts=texts)
        with pytest.raises(InvalidArgumentError):
            m.put(1, vectors(1)[0], text=5)
        assert m.count() == 0


# ---------------------------------------------------------------- BM25 against oracles


def test_bm25_matches_an_independent_numpy_reference_on_real_text(tmp_path):
    texts = corpus()
    db, m = load(tmp_path, texts)
    with db:
        docs = {i: ANALYZE(t) for i, t in enumerate(texts)}
        for query in QUERIES:
            expected = top(bm25_scores(docs, ANALYZE(query)), 10)
            assert_matches_reference(keyword(m, query), expected)


def test_bm25_matches_bm25s_configured_to_the_same_formula(tmp_path):
    bm25s = pytest.importorskip("bm25s")
    texts = corpus()
    tokens = [ANALYZE(t) for t in texts]
    # bm25s's "lucene" method is Lucene 8+'s, without the (k1 + 1) factor API.md keeps:
    # the same ranking, scores scaled by 1 / (k1 + 1).
    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene", dtype="float64")
    ref.index(tokens, show_progress=False)
    db, m = load(tmp_path, texts)
    with db:
        for query in QUERIES[:-1]:
            scores = ref.get_scores(list(dict.fromkeys(ANALYZE(query)))) * 2.2
            matched = np.flatnonzero(scores > 0)
            order = matched[np.lexsort((matched, -scores[matched]))][:10]
            got = keyword(m, query)
            assert [i for i, _ in got] == order.tolist()
            np.testing.assert_allclose([s for _, s in got], scores[order], rtol=1e-6)


def test_ranking_is_the_same_for_any_shard_count_and_layout(tmp_path):
    texts = corpus(1200)
    answers = []
    for shards in (1, 4):
        db, m = load(tmp_path / f"s{shards}", texts, shards=shards, auto_compact=False)
        with db:
            m.put_batch(np.arange(0, 300, 7), vectors(43, seed=1), texts=[texts[-1]] * 43)
            m.delete_batch(np.arange(1, 300, 11))
            live = {r.id: ANALYZE(r.text) for r in m.scan() if r.text is not None}
            expected = {q: top(bm25_scores(live, ANALYZE(q)), 10) for q in QUERIES}
            for step in ("memtable", "freeze", "more", "compact"):
                if step == "freeze":
                    db.freeze()
                if step == "more":  # a newer memtable shadows and deletes segment rows
                    m.delete_batch(np.arange(2, 400, 13))
                    m.put_batch([5, 9], vectors(2), texts=["python python library", None])
                    live = {r.id: ANALYZE(r.text) for r in m.scan() if r.text is not None}
                    expected = {q: top(bm25_scores(live, ANALYZE(q)), 10) for q in QUERIES}
                if step == "compact":
                    db.freeze()
                    db.compact()
                for query in QUERIES:
                    assert_matches_reference(keyword(m, query), expected[query])
            answers.append({q: keyword(m, q) for q in QUERIES})
    assert answers[0] == answers[1]  # bit-identical scores whatever the shard count


def test_filters_apply_before_ranking_with_corpus_statistics_unfiltered(tmp_path):
    texts = corpus(900)
    db, m = load(tmp_path, texts)
    with db:
        docs = {i: ANALYZE(t) for i, t in enumerate(texts)}
        for query in QUERIES[:4]:
            scores = bm25_scores(docs, ANALYZE(query))
            expected = top({i: s for i, s in scores.items() if i % 3 == 1}, 10)
            assert_matches_reference(keyword(m, query, flt={"i": 1}), expected)


def test_reopened_in_a_new_process_keyword_and_hybrid_answers_are_the_same(tmp_path):
    texts = corpus(600)
    db, m = load(tmp_path, texts, shards=3)
    with db:
        db.freeze()
        m.put(10_000, vectors(1)[0], text="mcp server python library")  # stays in the WAL
        script = ("import sys, numpy as np, pomaidb_core as pdb\n"
                  "m = pdb.open(sys.argv[1], read_only=True).membrane('m')\n"
                  "q = np.asarray(eval(sys.argv[2]), dtype=np.float32)\n"
                  "for t in sys.argv[3:]:\n"
                  "    print([(h.id, repr(h.score)) for h in m.search(None, text=t)])\n"
                  "    print([(h.id, repr(h.score)) for h in m.search(q, text=t)])\n")
        query = vectors(1, seed=5)[0]
        here = []
        for t in QUERIES:
            here.append(str([(h.id, repr(h.score)) for h in m.search(None, text=t)]))
            here.append(str([(h.id, repr(h.score)) for h in m.search(query, text=t)]))
    out = subprocess.run([sys.executable, "-P", "-c", script, str(tmp_path), repr(query.tolist()),
                          *QUERIES], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == here


# ---------------------------------------------------------------- fail closed


def _keyword_section(path):
    from pomaidb_core import segment
    reader = segment.SegmentReader(str(path), membrane_id=1, dim=8, metric="cosine")
    offset, length, _ = reader._table[segment.KEYWORDS]
    reader.close()
    return offset, length


def test_a_corrupted_keyword_index_fails_closed_and_repair_rebuilds_it(tmp_path):
    texts = corpus(300)
    db, m = load(tmp_path, texts, shards=1)
    with db:
        db.freeze()
        expected = keyword(m, "python library")
    (seg,) = list(tmp_path.rglob("*.seg"))
    offset, length = _keyword_section(seg)
    data = bytearray(seg.read_bytes())
    data[offset + length // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    with pdb.open(tmp_path) as db:
        m = db.membrane("m")
        with pytest.raises(CorruptionError):
            m.search(None, text="python library")
        with pytest.raises(CorruptionError):
            db.verify()
    report = pdb.repair(tmp_path)
    assert report["segments_rebuilt"] and not report["segments_dropped"]
    with pdb.open(tmp_path) as db:
        db.verify()
        assert keyword(db.membrane("m"), "python library") == expected


# ---------------------------------------------------------------- hybrid


def test_hybrid_rrf_fuses_both_filtered_lists_and_returns_k_when_k_match(tmp_path):
    texts = corpus(500)
    db, m = load(tmp_path, texts, shards=2)
    with db:
        m.put_batch([900, 901], vectors(2, seed=9), [{"i": 1}, {"i": 1}])  # no text
        query = vectors(1, seed=9)[0]
        flt = {"i": 1}
        dense = m.search(query, k=10, filter=flt)
        sparse = m.search(None, k=10, filter=flt, text="python")
        hits = m.search(query, k=10, filter=flt, text="python")
        expected: dict[int, float] = {}
        for hits_ in (dense, sparse):
            for rank, h in enumerate(hits_, start=1):
                expected[h.id] = expected.get(h.id, 0.0) + 1 / (60 + rank)
        assert [(h.id, h.score) for h in hits] == sorted(
            expected.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert len(hits) == 10 and all(h.metadata == {"i": 1} for h in hits)
        assert 900 in {h.id for h in hits} | {h.id for h in dense}  # textless records take part
        weighted = m.search(query, k=10, filter=flt, text="python", fusion="weighted", alpha=1.0)
        # alpha = 1: the vector side alone orders them (its last hit normalises to 0, tied
        # with every keyword-only hit).
        assert [h.id for h in weighted][:9] == [h.id for h in dense][:9]


def test_keyword_search_sees_its_writes_and_deletes_at_once(tmp_path):
    with pdb.open(tmp_path, shards=2) as db:
        m = db.create_membrane("m", dim=8)
        m.put(1, vectors(1)[0], text="error E1234 in module")
        assert [h.id for h in m.search(None, text="e1234")] == [1]
        m.put(1, vectors(1)[0], text="all fine")
        assert m.search(None, text="e1234") == []
        m.put(2, vectors(1)[0], text="E1234 again")
        m.delete(2)
        assert m.search(None, text="E1234") == []


def test_async_and_batch_searches_answer_as_the_sync_ones(tmp_path):
    import asyncio
    texts = corpus(400)
    db, m = load(tmp_path, texts, shards=3)
    with db:
        query = vectors(2, seed=3)
        sync = m.search_batch(query, k=5, texts=QUERIES[:2])
        assert sync == [m.search(q, k=5, text=t) for q, t in zip(query, QUERIES[:2])]

        async def run():
            return (await m.asearch_batch(query, k=5, texts=QUERIES[:2]),
                    await m.asearch(None, k=5, text=QUERIES[0]))
        batch, single = asyncio.run(run())
        assert batch == sync and single == m.search(None, k=5, text=QUERIES[0])


# ---------------------------------------------------------------- analyzer


def test_the_analyzer_folds_case_and_splits_every_script():
    assert ANALYZE("Straße TLS-Handshake_ERROR 42") == ["strasse", "tls", "handshake_error", "42"]
    assert ANALYZE("東京都に住む") == ["東", "京", "都", "に", "住", "む"]
    assert ANALYZE("Привет, мир! 🙂") == ["привет", "мир"]
    assert analyzer.analyzer(None, "english")("The cat and the hat") == ["cat", "hat"]


def test_english_stemming_is_a_membrane_setting(tmp_path):
    pytest.importorskip("Stemmer")
    with pdb.open(tmp_path, shards=2) as db:
        m = db.create_membrane("m", dim=8, index=pdb.IndexParams(text_stemmer="english"))
        m.put(1, vectors(1)[0], text="running servers")
        db.freeze()
    with pdb.open(tmp_path) as db:
        assert [h.id for h in db.membrane("m").search(None, text="run server")] == [1]
    with pytest.raises(InvalidArgumentError):
        pdb.IndexParams(text_stemmer="klingon")


def test_export_and_import_carry_texts_and_the_copy_ranks_the_same(tmp_path):
    from pomaidb_core import cli

    texts = corpus(300)
    db, m = load(tmp_path / "db", texts[:-1] + [None], shards=2)
    with db:
        expected = {q: keyword(m, q) for q in QUERIES}
    out = str(tmp_path / "m.jsonl")
    assert cli.main(["export", str(tmp_path / "db"), out, "--membrane", "m"]) == 0
    assert cli.main(["import", str(tmp_path / "copy"), out, "--shards", "3"]) == 0
    with pdb.open(tmp_path / "copy", read_only=True) as db:
        copy = db.membrane("m")
        assert copy.get(299).text is None and copy.get(5).text == texts[5]
        assert {q: keyword(copy, q) for q in QUERIES} == expected


def test_a_stemmer_that_cannot_load_is_refused_at_creation_and_nothing_is_created(
        tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "Stemmer", None)  # as if PyStemmer were not installed
    analyzer.analyzer.cache_clear()
    with pdb.open(tmp_path, shards=1) as db:
        with pytest.raises(InvalidArgumentError, match="PyStemmer"):
            db.create_membrane("m", dim=8, index=pdb.IndexParams(text_stemmer="english"))
        assert db.membranes() == []
    analyzer.analyzer.cache_clear()


@pytest.mark.parametrize("field", [0, 1, 2])
@pytest.mark.parametrize("count", [2**63, 2**64 - 1, 10**6])
def test_a_forged_keyword_count_is_corruption_not_a_crash(field, count):
    """The section's head counts size its arrays; a forged one (past what numpy can index)
    is CorruptionError, found by the fuzzed readers as an OverflowError."""
    from pomaidb_core import analyzer, keyword_index
    texts = ["python library", None, "vector search library"]
    section = bytearray(keyword_index.encode(texts, analyzer.analyzer()))
    section[8 * field : 8 * field + 8] = count.to_bytes(8, "little")
    with pytest.raises(CorruptionError, match="keyword"):
        keyword_index.SegmentKeywords(memoryview(bytes(section)), len(texts), CorruptionError)
