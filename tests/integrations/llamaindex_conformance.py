"""A reusable conformance suite for LlamaIndex vector stores that store text.

llama-index-core ships none, so this is one in the spirit of langchain-tests'
`VectorStoreIntegrationTests`: subclass `LlamaIndexVectorStoreSuite`, override
the `vector_store` fixture to yield an empty store, and `reopen` to open a
closed store again over the same data. Every test asserts against an oracle:
numpy brute force for rankings, and a pure-Python filter evaluator that mirrors
llama-index-core's `build_metadata_filter_fn`, extended to nested groups.

`HashEmbedding` is a deterministic, non-constant embedding (llama-index-core's
MockEmbedding returns one vector for every text, which cannot test ranking).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import (
    BaseNode,
    IndexNode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

DIM = 16
CORPUS_SIZE = 30


class HashEmbedding(BaseEmbedding):
    """Signed feature hashing of words and character trigrams, L2-normalised.

    Equal texts embed equally; texts sharing words embed close together.
    """

    dim: int = 64

    @classmethod
    def class_name(cls) -> str:
        return "HashEmbedding"

    def _embed(self, text: str) -> list[float]:
        vector = np.zeros(self.dim)
        for word in re.findall(r"\w+", text.lower()):
            padded = f" {word} "
            for feature in [word] + [padded[i : i + 3] for i in range(len(padded) - 2)]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = np.linalg.norm(vector)
        return (vector / norm if norm else vector).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)


def similarity(metric: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The oracle's higher-is-better score of each row of `vectors` for `query`."""
    if metric == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ (query / np.linalg.norm(query))
    if metric == "ip":
        return vectors @ query
    if metric == "l2":
        return -np.sum((vectors - query) ** 2, axis=1)
    raise ValueError(metric)


def corpus_metadata(i: int) -> dict[str, Any]:
    """Deterministic metadata of corpus node i: every filter operator has matches and misses."""
    metadata: dict[str, Any] = {
        "year": 1990 + (i * 7) % 25,
        "rating": (i * 37 % 50) / 10,
        "tags": [tag for bit, tag in enumerate("abcd") if i % 16 & (1 << bit)],
        "title": ["Alpha Centauri", "alpha beta", "The Gamma Ray", "DELTA force", ""][i % 5],
    }
    if i % 4 != 3:
        metadata["genre"] = ["fiction", "science", "history"][i % 4]
    if i % 6 != 2:
        metadata["note"] = [None, "", "kept", "kept", "kept", "kept"][i % 6]
    return metadata


def corpus_nodes(seed: int = 0) -> list[TextNode]:
    """CORPUS_SIZE text nodes with random embeddings, metadata and a source document each."""
    vectors = np.random.default_rng(seed).normal(size=(CORPUS_SIZE, DIM)).astype(np.float32)
    return [
        TextNode(
            id_=f"node-{i}",
            text=f"text of node {i}",
            metadata=corpus_metadata(i),
            embedding=vectors[i].tolist(),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % 5}")},
        )
        for i in range(CORPUS_SIZE)
    ]


def reference_leaf(metadata: dict[str, Any], leaf: MetadataFilter) -> bool:
    """One MetadataFilter, as llama-index-core 0.14.2x's build_metadata_filter_fn evaluates it.

    Written out here because older llama-index-core releases evaluate differently (a missing
    key failed NE, TEXT_MATCH ignored case), and a suite must not change with the installed core.
    """
    op, value, held = leaf.operator, leaf.value, metadata.get(leaf.key)
    if op == FilterOperator.IS_EMPTY:
        return held is None or held == "" or held == []
    if held is None:
        return op in (FilterOperator.NE, FilterOperator.NIN)
    checks: dict[FilterOperator, Callable[[], bool]] = {
        FilterOperator.EQ: lambda: held == value,
        FilterOperator.NE: lambda: held != value,
        FilterOperator.GT: lambda: held > value,
        FilterOperator.GTE: lambda: held >= value,
        FilterOperator.LT: lambda: held < value,
        FilterOperator.LTE: lambda: held <= value,
        FilterOperator.IN: lambda: held in value,
        FilterOperator.NIN: lambda: held not in value,
        FilterOperator.CONTAINS: lambda: value in held,
        FilterOperator.TEXT_MATCH: lambda: value in held,
        FilterOperator.TEXT_MATCH_INSENSITIVE: lambda: value.lower() in held.lower(),
        FilterOperator.ALL: lambda: all(item in held for item in value),
        FilterOperator.ANY: lambda: any(item in held for item in value),
    }
    return checks[op]()


def reference_match(metadata: dict[str, Any], filters: MetadataFilters) -> bool:
    """The reference evaluator per leaf, combined recursively for nested groups.

    As in llama-index-core, a group without filters matches everything and NOT means
    "none of the filters match".
    """
    if not filters.filters:
        return True
    matches = [
        reference_match(metadata, child)
        if isinstance(child, MetadataFilters)
        else reference_leaf(metadata, child)
        for child in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all(matches)
    if condition == FilterCondition.OR:
        return any(matches)
    return not any(matches)


def _leaf(key: str, operator: FilterOperator, value: Any) -> MetadataFilter:
    return MetadataFilter(key=key, operator=operator, value=value)


def _group(condition: FilterCondition, *filters: Any) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


Op, Cond = FilterOperator, FilterCondition

OPERATOR_CASES = {
    "eq_string": _leaf("genre", Op.EQ, "fiction"),
    "eq_int": _leaf("year", Op.EQ, 1997),
    "eq_float": _leaf("rating", Op.EQ, 3.7),
    "ne_missing_key_matches": _leaf("genre", Op.NE, "science"),
    "gt_int": _leaf("year", Op.GT, 2005),
    "gt_string": _leaf("genre", Op.GT, "g"),
    "gte_float": _leaf("rating", Op.GTE, 2.5),
    "lt_float": _leaf("rating", Op.LT, 1.0),
    "lte_int": _leaf("year", Op.LTE, 1995),
    "in_strings": _leaf("genre", Op.IN, ["fiction", "history"]),
    "in_ints": _leaf("year", Op.IN, [1990, 1997, 2004]),
    "nin_missing_key_matches": _leaf("genre", Op.NIN, ["fiction"]),
    "any_tags": _leaf("tags", Op.ANY, ["a", "d"]),
    "all_tags": _leaf("tags", Op.ALL, ["b", "c"]),
    "contains_list_element": _leaf("tags", Op.CONTAINS, "c"),
    "contains_substring": _leaf("title", Op.CONTAINS, "amma"),
    "text_match_case_sensitive": _leaf("title", Op.TEXT_MATCH, "alpha"),
    "text_match_insensitive": _leaf("title", Op.TEXT_MATCH_INSENSITIVE, "ALPHA"),
    "is_empty_none_blank_or_missing": _leaf("note", Op.IS_EMPTY, None),
    "is_empty_list": _leaf("tags", Op.IS_EMPTY, None),
    "unknown_key_matches_nothing": _leaf("no_such_key", Op.EQ, "x"),
}

CONDITION_CASES = {
    "and": _group(Cond.AND, _leaf("genre", Op.EQ, "fiction"), _leaf("year", Op.GT, 2000)),
    "or": _group(Cond.OR, _leaf("genre", Op.EQ, "history"), _leaf("tags", Op.ANY, ["d"])),
    "not": _group(Cond.NOT, _leaf("genre", Op.EQ, "science"), _leaf("rating", Op.LT, 2.0)),
    "nested_or_of_and_and_not": _group(
        Cond.OR,
        _group(Cond.AND, _leaf("genre", Op.EQ, "fiction"), _leaf("year", Op.GTE, 2000)),
        _group(Cond.NOT, _leaf("tags", Op.ANY, ["a", "b"])),
    ),
    "nested_not_of_or": _group(
        Cond.NOT,
        _group(Cond.OR, _leaf("title", Op.TEXT_MATCH_INSENSITIVE, "delta")),
        _leaf("note", Op.IS_EMPTY, None),
    ),
    "nested_three_levels": _group(
        Cond.AND,
        _leaf("year", Op.LT, 2012),
        _group(
            Cond.OR,
            _leaf("genre", Op.IN, ["science"]),
            _group(Cond.AND, _leaf("rating", Op.GT, 1.0), _leaf("tags", Op.CONTAINS, "a")),
        ),
    ),
    "empty_group_restricts_nothing": _group(Cond.AND),
    "empty_nested_group_in_and_is_skipped": _group(
        Cond.AND, _leaf("genre", Op.EQ, "fiction"), _group(Cond.OR)
    ),
    "empty_nested_group_in_or_matches_all": _group(
        Cond.OR, _leaf("genre", Op.EQ, "fiction"), _group(Cond.AND)
    ),
    "not_of_empty_group_matches_nothing": _group(Cond.NOT, _group(Cond.AND)),
}

FILTER_CASES = {
    **{name: MetadataFilters(filters=[leaf]) for name, leaf in OPERATOR_CASES.items()},
    **CONDITION_CASES,
}


class LlamaIndexVectorStoreSuite:
    """Conformance tests for a `BasePydanticVectorStore` with `stores_text=True`.

    Subclasses override:
      - the `vector_store` fixture: a new, empty store (closed afterwards);
      - `reopen(store)`: close `store` and return a new one over the same data;
      - `metric`: "cosine", "ip" or "l2", the meaning of the store's similarities.
    """

    metric = "cosine"

    @pytest.fixture
    def vector_store(self) -> BasePydanticVectorStore:
        raise NotImplementedError("override the vector_store fixture")

    def reopen(self, store: BasePydanticVectorStore) -> BasePydanticVectorStore:
        raise NotImplementedError("override reopen()")

    # -- helpers --------------------------------------------------------------

    @pytest.fixture
    def corpus(self) -> list[TextNode]:
        return corpus_nodes()

    @pytest.fixture
    def filled_store(
        self, vector_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> BasePydanticVectorStore:
        vector_store.add(corpus)
        return vector_store

    def oracle_ids(
        self,
        nodes: Sequence[TextNode],
        query: Sequence[float],
        k: int,
        keep: Callable[[TextNode], bool] = lambda node: True,
    ) -> list[str]:
        kept = [node for node in nodes if keep(node)]
        if not kept:
            return []
        vectors = np.array([node.embedding for node in kept], dtype=np.float64)
        scores = similarity(self.metric, np.asarray(query, dtype=np.float64), vectors)
        order = np.argsort(-scores, kind="stable")[:k]
        return [kept[i].node_id for i in order]

    @staticmethod
    def query_for(vector: Sequence[float], k: int, **fields: Any) -> VectorStoreQuery:
        return VectorStoreQuery(query_embedding=list(vector), similarity_top_k=k, **fields)

    @staticmethod
    def probe(seed: int = 1) -> list[float]:
        return np.random.default_rng(seed).normal(size=DIM).astype(np.float32).tolist()

    @staticmethod
    def assert_same_node(actual: BaseNode, expected: BaseNode) -> None:
        assert type(actual) is type(expected)
        assert actual.model_dump(exclude={"embedding"}) == expected.model_dump(
            exclude={"embedding"}
        )
        np.testing.assert_allclose(actual.embedding, expected.embedding, rtol=1e-6, atol=1e-6)

    # -- storing nodes --------------------------------------------------------

    def test_store_declares_it_stores_text(self, vector_store: BasePydanticVectorStore) -> None:
        assert vector_store.stores_text is True

    def test_add_returns_node_ids_in_input_order(
        self, vector_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        assert vector_store.add(corpus) == [node.node_id for node in corpus]

    def test_add_of_nothing_returns_nothing(self, vector_store: BasePydanticVectorStore) -> None:
        assert vector_store.add([]) == []

    def test_get_nodes_returns_every_field_exactly_as_added(
        self, vector_store: BasePydanticVectorStore
    ) -> None:
        rich = TextNode(
            id_="rich",
            text="Some text, ünïcode and\nnewlines.",
            metadata={
                "author": "Ann",
                "pages": 12,
                "score": 0.5,
                "flags": ["x", "y"],
                "nested": {"a": [1, {"b": None}]},
                "empty": None,
            },
            excluded_embed_metadata_keys=["pages"],
            excluded_llm_metadata_keys=["score"],
            relationships={
                NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-9", metadata={"k": "v"}),
                NodeRelationship.NEXT: RelatedNodeInfo(node_id="other"),
            },
            metadata_template="{key}=>{value}",
            text_template="{metadata_str}\n--\n{content}",
            start_char_idx=3,
            end_char_idx=40,
            embedding=self.probe(2),
        )
        index_node = IndexNode(
            id_="pointer", text="points elsewhere", index_id="sub-index", embedding=self.probe(3)
        )
        document = Document(
            id_="whole-doc", text="a document", metadata={"m": 1}, embedding=self.probe(4)
        )
        vector_store.add([rich, index_node, document])
        got = vector_store.get_nodes(node_ids=["pointer", "rich", "whole-doc"])
        for actual, expected in zip(got, [index_node, rich, document]):
            self.assert_same_node(actual, expected)
        assert got[1].ref_doc_id == "doc-9"

    def test_query_results_carry_text_metadata_and_ref_doc_id(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        target = corpus[7]
        result = filled_store.query(self.query_for(target.embedding, 1))
        (node,) = result.nodes
        assert result.ids == [target.node_id]
        assert node.get_content() == target.get_content()
        assert node.metadata == target.metadata
        assert node.ref_doc_id == target.ref_doc_id

    def test_add_with_existing_node_id_replaces_the_node(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        replacement = corpus[3].model_copy(update={"text": "rewritten", "embedding": self.probe(5)})
        filled_store.add([replacement])
        (got,) = filled_store.get_nodes(node_ids=[replacement.node_id])
        self.assert_same_node(got, replacement)
        result = filled_store.query(self.query_for(self.probe(5), CORPUS_SIZE))
        assert result.ids.count(replacement.node_id) == 1
        assert len(result.ids) == CORPUS_SIZE

    def test_node_repeated_in_one_add_keeps_the_last_copy(
        self, vector_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        later = corpus[0].model_copy(update={"text": "second copy"})
        vector_store.add([corpus[0], later])
        (got,) = vector_store.get_nodes(node_ids=[corpus[0].node_id])
        assert got.text == "second copy"

    # -- querying -------------------------------------------------------------

    def test_query_on_empty_store_returns_no_nodes(
        self, vector_store: BasePydanticVectorStore
    ) -> None:
        result = vector_store.query(self.query_for(self.probe(), 3))
        assert list(result.nodes or []) == [] and list(result.ids or []) == []

    @pytest.mark.parametrize("k", [1, 5, CORPUS_SIZE])
    def test_query_returns_similarity_top_k_in_oracle_order(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode], k: int
    ) -> None:
        query = self.probe()
        result = filled_store.query(self.query_for(query, k))
        assert result.ids == self.oracle_ids(corpus, query, k)
        assert [node.node_id for node in result.nodes] == result.ids

    def test_query_with_top_k_above_store_size_returns_every_node(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        result = filled_store.query(self.query_for(self.probe(), CORPUS_SIZE + 10))
        assert sorted(result.ids) == sorted(node.node_id for node in corpus)

    def test_similarities_are_the_metric_scores_higher_is_better(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        query = np.asarray(self.probe(), dtype=np.float64)
        result = filled_store.query(self.query_for(query.tolist(), 10))
        by_id = {node.node_id: np.asarray(node.embedding) for node in corpus}
        expected = similarity(self.metric, query, np.array([by_id[i] for i in result.ids]))
        np.testing.assert_allclose(result.similarities, expected, rtol=1e-4, atol=1e-4)
        assert list(result.similarities) == sorted(result.similarities, reverse=True)

    def test_doc_ids_restrict_the_query_to_those_documents(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        query, docs = self.probe(), ["doc-1", "doc-3"]
        result = filled_store.query(self.query_for(query, 4, doc_ids=docs))
        assert result.ids == self.oracle_ids(corpus, query, 4, lambda n: n.ref_doc_id in docs)

    def test_node_ids_restrict_the_query_to_those_nodes(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        query, wanted = self.probe(), {f"node-{i}" for i in (2, 4, 8, 16, 29)}
        result = filled_store.query(self.query_for(query, 3, node_ids=sorted(wanted)))
        assert result.ids == self.oracle_ids(corpus, query, 3, lambda n: n.node_id in wanted)

    def test_empty_node_ids_list_restricts_nothing(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        # VectorStoreIndex.as_retriever sends node_ids=[] for a store that keeps text.
        query = self.probe()
        result = filled_store.query(self.query_for(query, 5, node_ids=[]))
        assert result.ids == self.oracle_ids(corpus, query, 5)

    def test_empty_doc_ids_list_matches_nothing(
        self, filled_store: BasePydanticVectorStore
    ) -> None:
        assert filled_store.query(self.query_for(self.probe(), 5, doc_ids=[])).ids == []
        assert filled_store.query(self.query_for(self.probe(), 5, node_ids=[], doc_ids=[])).ids == []

    def test_node_ids_doc_ids_and_filters_combine_with_and(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        query = self.probe()
        node_ids = [f"node-{i}" for i in range(0, CORPUS_SIZE, 2)]
        filters = MetadataFilters(filters=[_leaf("year", Op.GT, 1995)])
        result = filled_store.query(
            self.query_for(
                query, CORPUS_SIZE, node_ids=node_ids, doc_ids=["doc-0", "doc-2"], filters=filters
            )
        )

        def keep(node: TextNode) -> bool:
            return (
                node.node_id in node_ids
                and node.ref_doc_id in ("doc-0", "doc-2")
                and reference_match(node.metadata, filters)
            )

        assert result.ids == self.oracle_ids(corpus, query, CORPUS_SIZE, keep)

    # -- filters --------------------------------------------------------------

    @pytest.mark.parametrize("case", sorted(FILTER_CASES))
    def test_filtered_query_returns_the_best_matching_nodes(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode], case: str
    ) -> None:
        filters, query = FILTER_CASES[case], self.probe()

        def keep(node: TextNode) -> bool:
            return reference_match(node.metadata, filters)

        every = filled_store.query(self.query_for(query, CORPUS_SIZE, filters=filters))
        assert every.ids == self.oracle_ids(corpus, query, CORPUS_SIZE, keep)
        top3 = filled_store.query(self.query_for(query, 3, filters=filters))
        assert top3.ids == self.oracle_ids(corpus, query, 3, keep)

    @pytest.mark.parametrize("case", sorted(FILTER_CASES))
    def test_get_nodes_with_filters_returns_every_matching_node(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode], case: str
    ) -> None:
        filters = FILTER_CASES[case]
        got = filled_store.get_nodes(filters=filters)
        expected = {n.node_id for n in corpus if reference_match(n.metadata, filters)}
        assert sorted(n.node_id for n in got) == sorted(expected)

    @pytest.mark.parametrize(
        "case", ["eq_string", "is_empty_none_blank_or_missing", "not", "nested_or_of_and_and_not"]
    )
    def test_delete_nodes_with_filters_deletes_exactly_the_matching_nodes(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode], case: str
    ) -> None:
        filters = FILTER_CASES[case]
        filled_store.delete_nodes(filters=filters)
        left = filled_store.get_nodes()
        expected = {n.node_id for n in corpus if not reference_match(n.metadata, filters)}
        assert sorted(n.node_id for n in left) == sorted(expected)

    # -- reading and deleting by id -------------------------------------------

    def test_get_nodes_by_ids_returns_those_in_order_and_skips_unknown(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        got = filled_store.get_nodes(node_ids=["node-9", "missing", "node-2"])
        assert [node.node_id for node in got] == ["node-9", "node-2"]
        self.assert_same_node(got[0], corpus[9])

    def test_get_nodes_by_ids_and_filters_returns_the_intersection(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filters = FILTER_CASES["eq_string"]
        ids = [f"node-{i}" for i in range(10)]
        got = filled_store.get_nodes(node_ids=ids, filters=filters)
        expected = {n.node_id for n in corpus[:10] if reference_match(n.metadata, filters)}
        assert sorted(n.node_id for n in got) == sorted(expected)

    def test_get_nodes_with_empty_id_list_returns_nothing(
        self, filled_store: BasePydanticVectorStore
    ) -> None:
        assert filled_store.get_nodes(node_ids=[]) == []

    def test_get_nodes_without_arguments_returns_every_node(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        assert sorted(n.node_id for n in filled_store.get_nodes()) == sorted(
            n.node_id for n in corpus
        )

    def test_delete_by_ref_doc_id_removes_only_that_documents_nodes(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filled_store.delete("doc-2")
        result = filled_store.query(self.query_for(self.probe(), CORPUS_SIZE))
        assert sorted(result.ids) == sorted(n.node_id for n in corpus if n.ref_doc_id != "doc-2")

    def test_delete_of_unknown_ref_doc_id_changes_nothing(
        self, filled_store: BasePydanticVectorStore
    ) -> None:
        filled_store.delete("no-such-doc")
        assert len(filled_store.get_nodes()) == CORPUS_SIZE

    def test_delete_nodes_by_ids_removes_exactly_those(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filled_store.delete_nodes(node_ids=["node-0", "node-5", "missing"])
        left = {n.node_id for n in filled_store.get_nodes()}
        assert left == {n.node_id for n in corpus} - {"node-0", "node-5"}

    def test_delete_nodes_by_ids_and_filters_removes_only_the_intersection(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filters = FILTER_CASES["eq_string"]
        ids = [f"node-{i}" for i in range(10)]
        filled_store.delete_nodes(node_ids=ids, filters=filters)
        gone = {n.node_id for n in corpus[:10] if reference_match(n.metadata, filters)}
        assert gone
        assert {n.node_id for n in filled_store.get_nodes()} == {n.node_id for n in corpus} - gone

    def test_delete_nodes_with_empty_id_list_deletes_nothing(
        self, filled_store: BasePydanticVectorStore
    ) -> None:
        filled_store.delete_nodes(node_ids=[])
        filled_store.delete_nodes(node_ids=[], filters=FILTER_CASES["eq_string"])
        assert len(filled_store.get_nodes()) == CORPUS_SIZE

    def test_deleted_node_added_again_unchanged_is_back(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        doc_nodes = [n for n in corpus if n.ref_doc_id == "doc-4"]
        filled_store.delete("doc-4")
        filled_store.add(doc_nodes)
        result = filled_store.query(self.query_for(doc_nodes[0].embedding, 1))
        assert result.ids == [doc_nodes[0].node_id]
        assert len(filled_store.get_nodes()) == CORPUS_SIZE

    def test_clear_removes_every_node_and_the_store_stays_usable(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filled_store.clear()
        assert filled_store.get_nodes() == []
        assert list(filled_store.query(self.query_for(self.probe(), 5)).ids or []) == []
        filled_store.add(corpus[:2])
        assert len(filled_store.get_nodes()) == 2

    # -- MMR ------------------------------------------------------------------

    def test_mmr_with_threshold_one_ranks_by_cosine_relevance(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        # MMR relevance is cosine similarity, as in llama-index-core's reference MMR.
        query = self.probe()
        mmr = filled_store.query(
            self.query_for(query, 5, mode=VectorStoreQueryMode.MMR), mmr_threshold=1.0
        )
        vectors = np.array([node.embedding for node in corpus])
        order = np.argsort(-similarity("cosine", np.asarray(query), vectors), kind="stable")
        assert mmr.ids == [corpus[i].node_id for i in order[:5]]

    def test_mmr_prefers_a_diverse_result_over_near_duplicates(
        self, vector_store: BasePydanticVectorStore
    ) -> None:
        # Three near-copies close to the query and one distinct, slightly less relevant node.
        base = np.zeros(DIM)
        base[0] = 1.0
        nodes = [
            TextNode(
                id_=f"copy-{i}",
                text=f"copy {i}",
                embedding=(base + 0.01 * i * np.eye(DIM)[1]).tolist(),
            )
            for i in range(3)
        ]
        other = base * 0.6 + np.eye(DIM)[2] * 0.8
        nodes.append(TextNode(id_="different", text="different", embedding=other.tolist()))
        vector_store.add(nodes)
        query = self.query_for(base.tolist(), 2, mode=VectorStoreQueryMode.MMR)
        plain = vector_store.query(self.query_for(base.tolist(), 2))
        assert "different" not in plain.ids
        diverse = vector_store.query(query, mmr_threshold=0.3)
        assert diverse.ids[0] == plain.ids[0] and diverse.ids[1] == "different"
        via_field = vector_store.query(
            self.query_for(base.tolist(), 2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3)
        )
        assert via_field.ids == diverse.ids

    def test_mmr_honours_filters(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filters = FILTER_CASES["in_strings"]
        result = filled_store.query(
            self.query_for(self.probe(), 4, mode=VectorStoreQueryMode.MMR, filters=filters),
            mmr_threshold=0.5,
        )
        matching = {n.node_id for n in corpus if reference_match(n.metadata, filters)}
        assert len(result.ids) == 4 and set(result.ids) <= matching

    # -- async ----------------------------------------------------------------

    async def test_async_add_then_aquery_match_the_oracle(
        self, vector_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        assert await vector_store.async_add(corpus) == [n.node_id for n in corpus]
        query, filters = self.probe(), FILTER_CASES["nested_or_of_and_and_not"]
        result = await vector_store.aquery(self.query_for(query, 4, filters=filters))
        def keep(node: TextNode) -> bool:
            return reference_match(node.metadata, filters)

        assert result.ids == self.oracle_ids(corpus, query, 4, keep)

    async def test_aquery_mmr_matches_sync_mmr(self, filled_store: BasePydanticVectorStore) -> None:
        query = self.query_for(self.probe(), 5, mode=VectorStoreQueryMode.MMR)
        sync = filled_store.query(query, mmr_threshold=0.4)
        asynchronous = await filled_store.aquery(query, mmr_threshold=0.4)
        assert asynchronous.ids == sync.ids
        assert asynchronous.similarities == sync.similarities

    async def test_aget_nodes_matches_get_nodes(
        self, filled_store: BasePydanticVectorStore
    ) -> None:
        filters = FILTER_CASES["or"]
        for kwargs in (
            {"node_ids": ["node-3", "node-1"]},
            {"filters": filters},
            {"node_ids": ["node-3", "node-7"], "filters": filters},
            {},
        ):
            sync = filled_store.get_nodes(**kwargs)
            asynchronous = await filled_store.aget_nodes(**kwargs)
            assert sorted(n.node_id for n in asynchronous) == sorted(n.node_id for n in sync)

    async def test_adelete_removes_the_documents_nodes(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        await filled_store.adelete("doc-0")
        left = {n.node_id for n in await filled_store.aget_nodes()}
        assert left == {n.node_id for n in corpus if n.ref_doc_id != "doc-0"}

    async def test_adelete_nodes_by_ids_and_by_filters(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        filters = FILTER_CASES["any_tags"]
        await filled_store.adelete_nodes(node_ids=["node-0", "node-2"])
        await filled_store.adelete_nodes(filters=filters)
        left = {n.node_id for n in filled_store.get_nodes()}
        assert left == {
            n.node_id
            for n in corpus
            if n.node_id not in ("node-0", "node-2") and not reference_match(n.metadata, filters)
        }

    async def test_aclear_removes_every_node(self, filled_store: BasePydanticVectorStore) -> None:
        await filled_store.aclear()
        assert await filled_store.aget_nodes() == []

    # -- persistence ----------------------------------------------------------

    def test_reopened_store_returns_the_same_nodes_and_ranking(
        self, filled_store: BasePydanticVectorStore, corpus: list[TextNode]
    ) -> None:
        query = self.probe()
        before = filled_store.query(self.query_for(query, 5))
        reopened = self.reopen(filled_store)
        after = reopened.query(self.query_for(query, 5))
        assert after.ids == before.ids
        (node,) = reopened.get_nodes(node_ids=["node-11"])
        self.assert_same_node(node, corpus[11])

    # -- end to end through VectorStoreIndex ----------------------------------

    @pytest.fixture
    def documents(self) -> list[Document]:
        texts = [
            "The durable write-ahead log records every put before acknowledging it.",
            "Cats sleep for most of the day and hunt at night.",
            "Segment files are immutable and memory mapped for scanning.",
            "Sourdough bread needs a starter, flour, water and patience.",
            "Compaction merges segments and drops deleted records.",
        ]
        return [
            Document(id_=f"doc-{i}", text=text, metadata={"topic": "db" if i % 2 == 0 else "life"})
            for i, text in enumerate(texts)
        ]

    @pytest.fixture
    def index(
        self, vector_store: BasePydanticVectorStore, documents: list[Document]
    ) -> VectorStoreIndex:
        return VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=HashEmbedding(),
        )

    @staticmethod
    def retrieved_doc_ids(index: VectorStoreIndex, text: str, k: int = 1) -> list[str]:
        return [
            hit.node.ref_doc_id for hit in index.as_retriever(similarity_top_k=k).retrieve(text)
        ]

    def test_retriever_over_index_finds_the_matching_document(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        for doc in documents:
            assert self.retrieved_doc_ids(index, doc.text) == [doc.id_]

    def test_retriever_scores_are_descending_and_nodes_keep_metadata(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        hits = index.as_retriever(similarity_top_k=3).retrieve(documents[2].text)
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
        assert hits[0].node.metadata == documents[2].metadata
        assert hits[0].node.get_content() == documents[2].text

    def test_retriever_with_filters(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        filters = MetadataFilters(filters=[_leaf("topic", Op.EQ, "life")])
        hits = index.as_retriever(similarity_top_k=5, filters=filters).retrieve(documents[0].text)
        assert sorted(hit.node.ref_doc_id for hit in hits) == ["doc-1", "doc-3"]

    def test_query_engine_with_mock_llm_answers_from_the_best_document(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
        response = engine.query(documents[3].text)
        assert [hit.node.ref_doc_id for hit in response.source_nodes] == ["doc-3"]
        assert documents[3].text in response.source_nodes[0].node.get_content()

    def test_index_insert_and_delete_ref_doc(self, index: VectorStoreIndex) -> None:
        extra = Document(id_="doc-new", text="Hummingbirds hover by beating their wings fast.")
        index.insert(extra)
        assert self.retrieved_doc_ids(index, extra.text) == ["doc-new"]
        index.delete_ref_doc("doc-new", delete_from_docstore=True)
        assert "doc-new" not in self.retrieved_doc_ids(index, extra.text, k=10)

    def test_deleted_document_reinserted_with_unchanged_text_is_found(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        index.delete_ref_doc("doc-1", delete_from_docstore=True)
        assert "doc-1" not in self.retrieved_doc_ids(index, documents[1].text, k=10)
        index.insert(documents[1])
        assert self.retrieved_doc_ids(index, documents[1].text, k=10).count("doc-1") == 1

    def test_refresh_ref_docs_updates_changed_and_skips_unchanged_documents(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        changed = Document(
            id_="doc-1", text="Dogs fetch sticks in the park.", metadata=documents[1].metadata
        )
        added = Document(id_="doc-9", text="Volcanoes erupt molten rock and ash.")
        assert index.refresh_ref_docs([documents[0], changed, added]) == [False, True, True]
        assert self.retrieved_doc_ids(index, changed.text) == ["doc-1"]
        assert self.retrieved_doc_ids(index, added.text) == ["doc-9"]
        all_hits = index.as_retriever(similarity_top_k=20).retrieve(documents[1].text)
        contents = [hit.node.get_content() for hit in all_hits]
        assert documents[1].text not in contents and changed.text in contents
        assert len(contents) == len(documents) + 1

    def test_refresh_ref_docs_reinserts_a_deleted_document_with_unchanged_text(
        self, vector_store: BasePydanticVectorStore, documents: list[Document]
    ) -> None:
        # llama-index-core only forgets a deleted document's hash when the docstore
        # tracks its nodes, which store_nodes_override=True asks for.
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=HashEmbedding(),
            store_nodes_override=True,
        )
        index.delete_ref_doc("doc-2", delete_from_docstore=True)
        assert "doc-2" not in self.retrieved_doc_ids(index, documents[2].text, k=10)
        assert index.refresh_ref_docs(documents) == [False, False, True, False, False]
        assert self.retrieved_doc_ids(index, documents[2].text) == ["doc-2"]

    def test_refresh_ref_docs_reinserts_a_deleted_document_once_its_hash_is_dropped(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        # Without store_nodes_override, llama-index-core keeps a deleted document's hash in
        # the docstore (it tracks no nodes for a store with stores_text=True), so refresh
        # would skip it; dropping the hash is the documented way round.
        index.delete_ref_doc("doc-2", delete_from_docstore=True)
        index.docstore.delete_document("doc-2", raise_error=False)
        assert index.refresh_ref_docs(documents) == [False, False, True, False, False]
        assert self.retrieved_doc_ids(index, documents[2].text) == ["doc-2"]

    async def test_async_index_insert_retrieve_and_delete(self, index: VectorStoreIndex) -> None:
        extra = Document(id_="doc-async", text="Glaciers carve valleys over millennia.")
        await index.ainsert(extra)
        hits = await index.as_retriever(similarity_top_k=1).aretrieve(extra.text)
        assert [hit.node.ref_doc_id for hit in hits] == ["doc-async"]
        await index.adelete_ref_doc("doc-async")
        hits = await index.as_retriever(similarity_top_k=10).aretrieve(extra.text)
        assert "doc-async" not in [hit.node.ref_doc_id for hit in hits]

    def test_index_from_reopened_vector_store_retrieves(
        self, index: VectorStoreIndex, documents: list[Document]
    ) -> None:
        reopened = self.reopen(index.vector_store)
        again = VectorStoreIndex.from_vector_store(reopened, embed_model=HashEmbedding())
        for doc in documents:
            assert self.retrieved_doc_ids(again, doc.text) == [doc.id_]
