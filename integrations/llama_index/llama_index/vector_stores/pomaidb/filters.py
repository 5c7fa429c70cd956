"""LlamaIndex `MetadataFilters` -> the engine's filter dict (API.md, "Filters").

Every `FilterOperator` maps onto one engine operator, so a filtered query is
answered entirely by the engine: it returns the k best nodes *that match*,
never the k best nodes thinned out afterwards.

Semantics follow llama-index-core's reference evaluator
(`vector_stores.utils.build_metadata_filter_fn`):

- `FilterCondition.NOT` means "none of the filters match", i.e. NOT(OR(...)).
- A `MetadataFilters` with an empty `filters` list restricts nothing, whatever
  its condition; nested inside another group it is simply skipped (for AND)
  or makes the whole group unrestricted (for OR). NOT over it matches nothing.
- A key that a record lacks matches only NE, NIN and IS_EMPTY.
- A dotted key ("author.name") reads a field inside nested metadata objects,
  as the engine defines it (a top-level key spelled with the dot wins).
  Engine operators with no FilterOperator ($between, $like, ...) come in
  through the store's `pomaidb_filter=` query keyword instead.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from pomaidb_core import InvalidArgumentError

EngineFilter = dict[str, Any]

# The engine's operator for each LlamaIndex operator that takes a value as is.
_VALUE_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.CONTAINS: "$contains",
    FilterOperator.TEXT_MATCH: "$text_match",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$itext_match",
}

# Operators whose value is a list of candidates.
_LIST_OPERATORS = {
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$any",
    FilterOperator.ALL: "$all",
}

_TEXT_OPERATORS = (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE)

# A filter no record satisfies: what NOT over "no restriction" means.
MATCH_NOTHING: EngineFilter = {"$not": {}}


def to_engine_filter(filters: MetadataFilters | None) -> EngineFilter | None:
    """The engine filter for `filters`, or None when they restrict nothing."""
    if filters is None:
        return None
    return _group(filters)


def all_of(*parts: EngineFilter | None) -> EngineFilter | None:
    """AND of the given filters, skipping None (no restriction)."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return {"$and": present}


def _group(filters: MetadataFilters) -> EngineFilter | None:
    if not filters.filters:
        return None
    children = [_child(child) for child in filters.filters]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all_of(*children)
    if any(child is None for child in children):
        # OR with an unrestricted branch is unrestricted; NOT of that matches nothing.
        return None if condition == FilterCondition.OR else MATCH_NOTHING
    either: EngineFilter = children[0] if len(children) == 1 else {"$or": children}
    if condition == FilterCondition.OR:
        return either
    if condition == FilterCondition.NOT:
        return {"$not": either}
    raise InvalidArgumentError(f"unknown filter condition {condition!r}")


def _child(child: Any) -> EngineFilter | None:
    if isinstance(child, MetadataFilters):
        return _group(child)
    if isinstance(child, MetadataFilter):
        return _leaf(child)
    raise InvalidArgumentError(
        f"MetadataFilters.filters holds a {type(child).__name__}; "
        "expected MetadataFilter or MetadataFilters"
    )


def _leaf(leaf: MetadataFilter) -> EngineFilter:
    key, value, operator = leaf.key, leaf.value, leaf.operator
    if not key or key.startswith("$"):
        raise InvalidArgumentError(f"filter key {key!r} must be non-empty and not start with '$'")
    if operator == FilterOperator.IS_EMPTY:
        # LlamaIndex ignores the value of IS_EMPTY; so do we.
        return {key: {"$is_empty": True}}
    if operator in _LIST_OPERATORS:
        if not isinstance(value, list):
            raise InvalidArgumentError(
                f"filter on {key!r} with operator {operator.value!r} needs a list value, "
                f"got {value!r}"
            )
        return {key: {_LIST_OPERATORS[operator]: list(value)}}
    if operator in _TEXT_OPERATORS and not isinstance(value, str):
        raise InvalidArgumentError(
            f"filter on {key!r} with operator {operator.value!r} needs a string value, "
            f"got {value!r}"
        )
    if operator in _VALUE_OPERATORS:
        return {key: {_VALUE_OPERATORS[operator]: value}}
    raise InvalidArgumentError(f"unsupported filter operator {operator!r}")
