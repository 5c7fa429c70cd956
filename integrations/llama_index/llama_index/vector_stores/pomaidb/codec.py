"""How a LlamaIndex node is stored as one engine record, and read back.

Engine id: pomaidb_core.stores.string_id(node_id), the first 8 bytes of
BLAKE2b(node_id in UTF-8) read big-endian, as the LangChain store does: an int
in [0, 2**64). Frozen: changing it orphans every stored node. Stores written
before the two shared it read those bytes little-endian; `id_byteorder`
tells which a membrane uses (the store asks it once, at open).

Record metadata (a JSON-compatible dict; these key names are frozen too):

    "_node_id"       the node's own id, so a hash collision is detected, never
                     answered with another node
    "_node_type"     the node's class name ("TextNode", "Document", ...)
    "_node_content"  JSON of the whole node (metadata, relationships,
                     templates, ...) except its embedding, which is the vector,
                     and the text of a TextNode, which is the record's `text`
                     (indexed for TEXT_SEARCH, SPARSE and HYBRID queries);
                     records written before texts existed keep the text here
    "ref_doc_id"     the source document's id, or None; what delete() and
                     VectorStoreQuery.doc_ids filter on
    every key of node.metadata whose value the engine can filter on (str, int,
    float, bool, None, a list of those, or a nested object of those at most
    MAX_FILTERABLE_DEPTH levels deep), so MetadataFilters see them as is, and
    dotted keys ("author.name") reach into the nested objects.

A user metadata key that equals one of the four reserved keys, or whose value
is not filterable (a list of objects, say), is kept in "_node_content" and
comes back unchanged, but filters see the reserved value or nothing for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import (
    BaseNode,
    Document,
    ImageDocument,
    ImageNode,
    IndexNode,
    Node,
    TextNode,
)

from pomaidb_core import AlreadyExistsError, CorruptionError, InvalidArgumentError
from pomaidb_core.stores import string_id

NODE_ID_KEY = "_node_id"
NODE_TYPE_KEY = "_node_type"
NODE_CONTENT_KEY = "_node_content"
REF_DOC_ID_KEY = "ref_doc_id"
RESERVED_KEYS = frozenset({NODE_ID_KEY, NODE_TYPE_KEY, NODE_CONTENT_KEY, REF_DOC_ID_KEY})

_NODE_CLASSES = {
    cls.class_name(): cls for cls in (TextNode, Node, ImageNode, IndexNode, Document, ImageDocument)
}
_SCALARS = (str, int, float, bool, type(None))
MAX_FILTERABLE_DEPTH = 8  # nested objects deeper than this stay in _node_content only


def engine_id(node_id: str, byteorder: str = "big") -> int:
    """The engine id of a node id (see the module docstring)."""
    return string_id(node_id, byteorder)


def id_byteorder(sample: Any | None) -> str:
    """The byte order of the engine ids of the membrane `sample` (any one record, or None
    for an empty membrane) comes from: "little" only for a store written before 0.2."""
    node_id = None if sample is None else stored_node_id(sample.metadata)
    if node_id is not None and sample.id == engine_id(node_id, "little") != engine_id(node_id):
        return "little"
    return "big"


def record_text(node: BaseNode) -> str | None:
    """The record's text: a TextNode's text (other nodes keep their content in the JSON)."""
    return node.text if isinstance(node, TextNode) else None


def encode_metadata(node: BaseNode) -> dict[str, Any]:
    """The record metadata that stores `node` (its embedding and record text aside)."""
    node_dict = node.model_dump(mode="json")
    node_dict["embedding"] = None
    if record_text(node) is not None:
        node_dict["text"] = ""  # stored once, as the record's text
    filterable = {
        key: value
        for key, value in node_dict.get("metadata", {}).items()
        if key not in RESERVED_KEYS and _is_filterable(value)
    }
    filterable[NODE_ID_KEY] = node.node_id
    filterable[NODE_TYPE_KEY] = node.class_name()
    filterable[NODE_CONTENT_KEY] = json.dumps(node_dict, ensure_ascii=False)
    filterable[REF_DOC_ID_KEY] = node.ref_doc_id
    return filterable


def decode_node(metadata: dict[str, Any], vector: np.ndarray | None = None,
                text: str | None = None) -> BaseNode:
    """The node stored in a record (its metadata and text), with `vector` as its embedding
    if given."""
    try:
        node_class = _NODE_CLASSES[metadata[NODE_TYPE_KEY]]
        node = node_class.from_json(metadata[NODE_CONTENT_KEY])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptionError(
            f"record of node {metadata.get(NODE_ID_KEY)!r} is not a stored LlamaIndex node: {exc}"
        ) from exc
    if vector is not None:
        node.embedding = [float(x) for x in vector]
    if text is not None and isinstance(node, TextNode):
        node.text = text
    return node


def stored_node_id(metadata: dict[str, Any] | None) -> str | None:
    """The node id a record holds, or None for a record this store did not write."""
    if not metadata:
        return None
    node_id = metadata.get(NODE_ID_KEY)
    return node_id if isinstance(node_id, str) else None


def check_no_collisions(node_ids: Sequence[str], stored: Sequence[Any | None]) -> None:
    """Raise AlreadyExistsError if an engine id of `node_ids` belongs to another node.

    `stored[i]` is the live record (or None) at engine_id(node_ids[i]); a record
    holding the same node id is an overwrite, which is fine.
    """
    for node_id, record in zip(node_ids, stored):
        if record is None:
            continue
        holder = stored_node_id(record.metadata)
        if holder != node_id:
            raise AlreadyExistsError(
                f"node id {node_id!r} hashes to engine id {record.id}, which holds "
                f"{'a foreign record' if holder is None else repr(holder)}; "
                "give the node another id"
            )


def unique_nodes(nodes: Sequence[BaseNode]) -> list[BaseNode]:
    """`nodes` with only the last of any repeated node id (an upsert keeps the newest).

    Raises InvalidArgumentError if two different node ids share an engine id.
    """
    latest: dict[int, BaseNode] = {}
    for node in nodes:
        key = engine_id(node.node_id)
        previous = latest.pop(key, None)
        if previous is not None and previous.node_id != node.node_id:
            raise InvalidArgumentError(
                f"node ids {previous.node_id!r} and {node.node_id!r} hash to the same "
                f"engine id {key}; give one of them another id"
            )
        latest[key] = node
    return list(latest.values())


def _is_filterable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, dict):
        return depth < MAX_FILTERABLE_DEPTH and all(
            isinstance(key, str) and _is_filterable(item, depth + 1) for key, item in value.items()
        )
    if isinstance(value, list):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, _SCALARS)
