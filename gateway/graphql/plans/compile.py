"""Which operations a read plan answers, and building it: the fields asked, merged by response name in the order
graphql-core collects them (fragments and inline fragments included), each a part that renders itself
(gateway.graphql.plans.nodes). A document with anything else has no plan: another root field, a directive, a field
no part knows, an abstract type in the way."""

from __future__ import annotations

from collections.abc import Sequence

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NamedTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
)

from gateway.graphql.plans import nodes
from gateway.graphql.plans.leaves import COLUMN_FIELDS, NotCovered, column_of, converter

_CACHE_SIZE = 256
_COUNTS = {"userCount": "users", "activeUserCount": "active", "inactiveUserCount": "inactive", "groupCount": "groups"}


class Plan:
    """The root fields of an operation a plan answers."""

    def __init__(self, fields: nodes.Fields) -> None:
        self.fields = fields


# id(operation) -> (operation, its plan or None). The parser cache hands back the same document for the same text,
# so a dashboard's repeated queries find their plan; the entry holds the operation, so its id() is not reused.
_plans: dict[int, tuple[OperationDefinitionNode, Plan | None]] = {}


def plan_for(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> Plan | None:
    """The plan of a validated operation, or None when it has none."""
    hit = _plans.get(id(operation))
    if hit is not None and hit[0] is operation:
        return hit[1]
    try:
        plan: Plan | None = _Builder(schema, fragments).operation(operation)
    except NotCovered:
        plan = None
    if len(_plans) >= _CACHE_SIZE:
        del _plans[next(iter(_plans))]
    _plans[id(operation)] = (operation, plan)
    return plan


Merged = dict[str, list[FieldNode]]


class _Builder:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.schema = schema
        self.fragments = fragments

    def operation(self, operation: OperationDefinitionNode) -> Plan:
        root = self.schema.query_type
        if operation.operation is not OperationType.QUERY or operation.directives or root is None:
            raise NotCovered
        fields: nodes.Fields = []
        for name, found in self.collect(root, [operation.selection_set]).items():
            field_name = found[0].name.value
            if field_name == "__typename":
                fields.append((name, nodes.Typename(root.name)))
            elif field_name == "directory":
                fields.append((name, self.directory(root.fields[field_name], found)))
            else:
                raise NotCovered
        if not any(isinstance(part, nodes.DirectoryField) for _name, part in fields):
            raise NotCovered  # nothing to read: graphql-core answers that as fast
        return Plan(fields)

    def collect(self, parent: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode | None]) -> Merged:
        """The fields selected on an object of type ``parent``, by response name, as graphql-core collects them."""
        merged: Merged = {}
        visited: set[str] = set()

        def visit(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if selection.directives:  # @skip/@include depend on variables: not worth a plan per value
                    raise NotCovered
                if isinstance(selection, FieldNode):
                    name = selection.alias.value if selection.alias else selection.name.value
                    merged.setdefault(name, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if self.applies(selection.type_condition, parent):
                        visit(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    spread = selection.name.value
                    if spread in visited:
                        continue
                    visited.add(spread)
                    fragment = self.fragments.get(spread)
                    if fragment is None or fragment.variable_definitions:
                        raise NotCovered
                    if self.applies(fragment.type_condition, parent):
                        visit(fragment.selection_set)

        for selection_set in selection_sets:
            if selection_set is not None:
                visit(selection_set)
        return merged

    def applies(self, condition: NamedTypeNode | None, parent: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        named = self.schema.get_type(condition.name.value)
        if named is None:
            raise NotCovered
        if named is parent:
            return True
        return is_abstract_type(named) and self.schema.is_sub_type(named, parent)

    def children(self, parent: GraphQLObjectType, found: list[FieldNode]) -> Merged:
        return self.collect(parent, [node.selection_set for node in found])

    def object_type(self, definition: GraphQLField) -> GraphQLObjectType:
        named = get_named_type(definition.type)
        if not isinstance(named, GraphQLObjectType):
            raise NotCovered
        return named

    def directory(self, definition: GraphQLField, found: list[FieldNode]) -> nodes.DirectoryField:
        directory = self.object_type(definition)
        columns = nodes.Columns(names=["id", "organization_id"])
        fields: nodes.Fields = []
        for name, children in self.children(directory, found).items():
            field_name = children[0].name.value
            if field_name == "endpoint":
                fields.append((name, nodes.Endpoint()))
            elif field_name in _COUNTS:
                fields.append((name, nodes.Count(_COUNTS[field_name])))
            elif field_name in ("users", "groups"):
                fields.append((name, self.connection(directory.fields[field_name], children, field_name == "users")))
            else:
                fields.append((name, self.leaf(directory, field_name, columns)))
        return nodes.DirectoryField(definition, found[0], columns, fields)

    def leaf(self, parent: GraphQLObjectType, field_name: str, columns: nodes.Columns) -> nodes.Part:
        if field_name == "__typename":
            return nodes.Typename(parent.name)
        if field_name not in COLUMN_FIELDS.get(parent.name, ()):
            raise NotCovered
        definition = parent.fields[field_name]
        convert, nullable = converter(definition)
        return nodes.Column(columns.index(column_of(definition)), convert, nullable)

    def connection(self, definition: GraphQLField, found: list[FieldNode], of_users: bool) -> nodes.Connection:
        connection_type = self.object_type(definition)
        plan = nodes.Connection(definition, found[0], of_users, nodes.Columns(), [])
        for name, children in self.children(connection_type, found).items():
            field_name = children[0].name.value
            field_type = connection_type.fields.get(field_name)
            if field_name == "__typename":
                plan.fields.append((name, nodes.Typename(connection_type.name)))
            elif field_name == "totalCount":
                plan.fields.append((name, nodes.TotalCount()))
            elif field_name == "edges" and field_type is not None:
                plan.fields.append((name, nodes.Edges(self.edge(self.object_type(field_type), children, plan))))
            elif field_name == "pageInfo" and field_type is not None:
                plan.fields.append((name, nodes.PageInfo(self.page_info(self.object_type(field_type), children))))
            else:
                raise NotCovered
        return plan

    def edge(self, edge_type: GraphQLObjectType, found: list[FieldNode], plan: nodes.Connection) -> nodes.Fields:
        fields: nodes.Fields = []
        for name, children in self.children(edge_type, found).items():
            field_name = children[0].name.value
            if field_name == "__typename":
                fields.append((name, nodes.Typename(edge_type.name)))
            elif field_name == "cursor":
                fields.append((name, nodes.Cursor()))
            elif field_name == "node":
                node_type = self.object_type(edge_type.fields[field_name])
                fields.append((name, nodes.Node(self.item(node_type, children, plan))))
            else:
                raise NotCovered
        return fields

    def item(self, item_type: GraphQLObjectType, found: list[FieldNode], plan: nodes.Connection) -> nodes.Fields:
        """A node of the page: a user (with its groups) or a group."""
        fields: nodes.Fields = []
        for name, children in self.children(item_type, found).items():
            field_name = children[0].name.value
            if field_name == "groups" and plan.of_users:
                if plan.group_columns is None:
                    plan.group_columns = nodes.Columns(offset=1)  # after the member id
                group_type = self.object_type(item_type.fields[field_name])
                group_columns = plan.group_columns
                group_fields = [
                    (group_name, self.leaf(group_type, group_children[0].name.value, group_columns))
                    for group_name, group_children in self.children(group_type, children).items()
                ]
                fields.append((name, nodes.UserGroups(group_fields)))
            else:
                fields.append((name, self.leaf(item_type, field_name, plan.columns)))
        return fields

    def page_info(self, info_type: GraphQLObjectType, found: list[FieldNode]) -> nodes.Fields:
        fields: nodes.Fields = []
        for name, children in self.children(info_type, found).items():
            field_name = children[0].name.value
            if field_name == "__typename":
                fields.append((name, nodes.Typename(info_type.name)))
            elif field_name in nodes.PAGE_INFO_FIELDS:
                fields.append((name, nodes.PageInfoValue(field_name)))
            else:
                raise NotCovered
        return fields
