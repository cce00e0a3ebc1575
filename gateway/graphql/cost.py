"""What an operation may cost, computed from its document and variables before anything runs.

The cost is an upper bound on the resolver calls that reach the store, counted without the DataLoaders' batching:

- a field with its own resolver (a connection, ``totalCount``, a related object, the counts) costs 1 each time it is
  resolved; a plain attribute of an object already loaded (``name``, ``edges``, ``node``) costs 0;
- what is selected under a connection's ``edges`` is resolved once per item of the page: ``first``/``last`` (a
  literal or a variable), 20 when neither is given, never more than 100 (gateway.graphql.pagination);
- what is selected under a plain list of objects is resolved once per item of an assumed size (``_LIST_SIZES``);
- a root mutation field costs ``MUTATION_WEIGHT`` (it writes); a subscription is costed per event, as the selection
  each event runs.

So ``directory{users(first:100){edges{node{groups{id name memberCount}}}}}`` costs 1 + 1 + 100 × (1 + 10 × 1) =
1,102, within the default budget of 2,000; with ``members(first:100){totalCount}`` under each group it costs
1 + 1 + 100 × (1 + 10 × 2) = 2,102, and with 28 aliases of ``members`` about 56,000: both are refused before a
single statement runs.

A dashboard repeats the same few documents, and the cost depends on nothing else than the document, the operation
and the values of the variables given as page sizes: ``cached_operation_cost`` keeps each figure per parsed document
(the parser cache hands the same object back for the same text), operation name and those variables' values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.utilities import get_operation_ast

from gateway.graphql.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

MUTATION_WEIGHT = 10
# Plain (unpaginated) lists of objects: how many items the cost assumes each holds.
_LIST_SIZES = {("DirectoryUser", "groups"): 10, ("Organization", "directories"): 10}
_DEFAULT_LIST_SIZE = 20
# Resolvers that compute from what the object already holds (no store access).
_FREE_RESOLVERS = frozenset({("Directory", "endpoint"), ("Event", "user"), ("Event", "group")})
_BACKREF = "strawberry-definition"


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """The cost of the operation ``operation_name`` of a validated ``document`` run with ``variables`` (0 when the
    document has no such operation: execution refuses it anyway)."""
    operation = get_operation_ast(document, operation_name)
    root = schema.get_root_type(operation.operation) if operation is not None else None
    if operation is None or root is None:
        return 0
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return _Costing(schema, operation, fragments, variables or {}).selection(root, operation.selection_set, None)


# How a variable read as a page size counts: its integer, "not an integer" (no size) or "not given" (its default).
_NOT_INT = ("not int",)
_ABSENT = ("absent",)
_MAX_CACHED = 512
# (id(schema), id(document), operation name) -> (schema, document, page-size variables, {their values: cost}). The
# entry holds the schema and document themselves, so their id()s cannot be reused while it lives.
_costs: dict[
    tuple[int, int, str | None],
    tuple[GraphQLSchema, DocumentNode, tuple[str, ...], dict[tuple[Any, ...], int]],
] = {}


def _page_variable_values(names: tuple[str, ...], variables: Mapping[str, Any]) -> tuple[Any, ...]:
    values: list[Any] = []
    for name in names:
        if name not in variables:
            values.append(_ABSENT)
            continue
        given = variables[name]
        values.append(given if isinstance(given, int) and not isinstance(given, bool) else _NOT_INT)
    return tuple(values)


def cached_operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """``operation_cost``, computed once per document, operation and values of the variables it reads as page sizes
    (the same figure, without walking the document again)."""
    given = variables or {}
    key = (id(schema), id(document), operation_name)
    entry = _costs.get(key)
    if entry is None or entry[0] is not schema or entry[1] is not document:
        operation = get_operation_ast(document, operation_name)
        names = _page_variables(operation) if operation is not None else ()
        if len(_costs) >= _MAX_CACHED:
            _costs.clear()
        entry = _costs[key] = (schema, document, names, {})
    names, figures = entry[2], entry[3]
    values = _page_variable_values(names, given)
    cost = figures.get(values)
    if cost is None:
        cost = operation_cost(schema, document, operation_name=operation_name, variables=given)
        if len(figures) >= _MAX_CACHED:
            figures.clear()
        figures[values] = cost
    return cost


def _page_variables(operation: OperationDefinitionNode) -> tuple[str, ...]:
    """Every variable the operation declares: any of them may be passed as ``first``/``last`` (directly, or in a
    fragment), and only its value as an integer (or its absence) changes the cost."""
    return tuple(sorted(d.variable.name.value for d in operation.variable_definitions or ()))


class _Costing:
    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self._schema = schema
        self._operation = operation
        self._fragments = fragments
        self._variables = variables
        # A fragment spread many times (or spreads nesting fan-outs) is costed once per (fragment, page size).
        self._fragment_costs: dict[tuple[str, str, int | None], int] = {}
        self._open: set[str] = set()

    def selection(self, parent: GraphQLNamedType, selection_set: SelectionSetNode, page: int | None) -> int:
        """The cost of ``selection_set`` on one object of type ``parent``; ``page``: the page size when ``parent``
        is a connection."""
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += self._field(parent, node, page)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                target = self._schema.get_type(condition.name.value) if condition else parent
                total += self.selection(target or parent, node.selection_set, page)
            elif isinstance(node, FragmentSpreadNode):
                total += self._spread(parent, node.name.value, page)
        return total

    def _spread(self, parent: GraphQLNamedType, name: str, page: int | None) -> int:
        fragment = self._fragments.get(name)
        if fragment is None or name in self._open:  # validation refuses both; never loop on them
            return 0
        key = (name, parent.name, page)
        if key not in self._fragment_costs:
            target = self._schema.get_type(fragment.type_condition.name.value) or parent
            self._open.add(name)
            self._fragment_costs[key] = self.selection(target, fragment.selection_set, page)
            self._open.discard(name)
        return self._fragment_costs[key]

    def _field(self, parent: GraphQLNamedType, node: FieldNode, page: int | None) -> int:
        name = node.name.value
        fields: dict[str, GraphQLField] = getattr(parent, "fields", {})
        definition = fields.get(name)
        if definition is None:  # __typename, introspection (answered from memory) or an unknown field
            return 0
        weight = self._weight(parent, name, definition)
        if node.selection_set is None:
            return weight
        returned = get_named_type(definition.type)
        child_page = self._page_size(node) if _is_connection(returned) else None
        children = self.selection(returned, node.selection_set, child_page)
        if is_list_type(get_nullable_type(definition.type)):
            items = page if page is not None and name == "edges" else _LIST_SIZES.get((parent.name, name))
            children *= items if items is not None else _DEFAULT_LIST_SIZE
        return weight + children

    def _weight(self, parent: GraphQLNamedType, name: str, definition: GraphQLField) -> int:
        if parent is self._schema.mutation_type and self._operation.operation is OperationType.MUTATION:
            return MUTATION_WEIGHT
        strawberry_field = (definition.extensions or {}).get(_BACKREF)
        has_resolver = getattr(strawberry_field, "base_resolver", None) is not None
        return 1 if has_resolver and (parent.name, name) not in _FREE_RESOLVERS else 0

    def _page_size(self, node: FieldNode) -> int:
        sizes = [self._int_argument(node, name) for name in ("first", "last")]
        given = [size for size in sizes if size is not None]
        size = max(given) if given else DEFAULT_PAGE_SIZE
        return min(max(size, 0), MAX_PAGE_SIZE)  # beyond the range, execution answers BAD_USER_INPUT

    def _int_argument(self, node: FieldNode, name: str) -> int | None:
        argument = next((a for a in node.arguments or () if a.name.value == name), None)
        if argument is None:
            return None
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            variable = value.name.value
            if variable in self._variables:
                given = self._variables[variable]
                return given if isinstance(given, int) and not isinstance(given, bool) else None
            for definition in self._operation.variable_definitions or ():
                default = definition.default_value
                if definition.variable.name.value == variable and isinstance(default, IntValueNode):
                    return int(default.value)
        return None


def _is_connection(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and {"edges", "pageInfo"} <= named.fields.keys()
