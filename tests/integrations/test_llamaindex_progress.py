"""LlamaIndex add()/async_add(show_progress=True): a tqdm bar, every node written; off by default."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore


def nodes(n: int) -> list[TextNode]:
    rng = np.random.default_rng(3)
    return [TextNode(id_=f"n{i}", text=f"text {i}", embedding=rng.standard_normal(8).tolist())
            for i in range(n)]


def check_all_stored(store: PomaiDBVectorStore, added: list[TextNode]) -> None:
    got = store.get_nodes(node_ids=[n.node_id for n in added])
    assert sorted(n.node_id for n in got) == sorted(n.node_id for n in added)
    hit = store.query(VectorStoreQuery(query_embedding=added[123].embedding, similarity_top_k=1))
    assert hit.ids == [added[123].node_id]


def test_add_shows_progress_only_when_asked(tmp_path, capsys):
    added = nodes(600)
    with PomaiDBVectorStore(path=str(tmp_path / "db")) as store:
        store.add(added[:300])
        assert capsys.readouterr().err == ""
        store.add(added[300:], show_progress=True)
        err = capsys.readouterr().err
        assert "Adding nodes" in err and "300/300" in err
        check_all_stored(store, added)


@pytest.mark.asyncio
async def test_async_add_shows_progress_when_asked(tmp_path, capsys):
    added = nodes(600)
    with PomaiDBVectorStore(path=str(tmp_path / "db")) as store:
        assert await store.async_add(added, show_progress=True) == [n.node_id for n in added]
        assert "600/600" in capsys.readouterr().err
        check_all_stored(store, added)
