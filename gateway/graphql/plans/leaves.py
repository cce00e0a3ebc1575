"""How a plan reads a plain attribute: the fields it reads straight from a table row, per type, each converted from
its column as the type's ``from_row`` and graphql-core's serialization would (tests compare the two on every one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLEnumType, GraphQLField, GraphQLList, GraphQLNonNull, GraphQLScalarType

from gateway.graphql.types.rows import utc

# Per GraphQL type, the fields whose value is the column of the Strawberry field's name as ``from_row`` copies it
# (an enum member of the value, a datetime in UTC, a JSON value as decoded). Any other field has no plan.
COLUMN_FIELDS: dict[str, frozenset[str]] = {
    "Directory": frozenset(
        {"id", "organizationId", "name", "type", "state", "deprovisionPolicy", "createdAt", "updatedAt"}
    ),
    "DirectoryUser": frozenset(
        {
            "id",
            "directoryId",
            "idpId",
            "userName",
            "email",
            "emails",
            "firstName",
            "lastName",
            "displayName",
            "jobTitle",
            "state",
            "role",
            "roles",
            "customAttributes",
            "rawAttributes",
            "createdAt",
            "updatedAt",
        }
    ),
    "DirectoryGroup": frozenset({"id", "directoryId", "idpId", "name", "rawAttributes", "createdAt", "updatedAt"}),
}

Convert = Callable[[Any], Any]


class Unanswerable(Exception):
    """The plan cannot answer exactly as graphql-core would (a null where the schema says non-null, a value the
    scalar refuses, a missing directory, bad arguments): graphql-core runs the operation instead and reports it."""


class NotCovered(Exception):
    """A document a plan does not cover: it runs through graphql-core."""


def column_of(field: GraphQLField) -> str:
    definition = (field.extensions or {}).get("strawberry-definition")
    if definition is None or not definition.is_basic_field:
        raise NotCovered
    name: str = definition.python_name
    return name


def converter(field: GraphQLField) -> tuple[Convert, bool]:
    """How the column's value becomes the field's serialized value, and whether the field is nullable."""
    nullable = not isinstance(field.type, GraphQLNonNull)
    output = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if isinstance(output, GraphQLList):
        item = output.of_type
        if not (isinstance(item, GraphQLNonNull) and getattr(item.of_type, "name", None) == "String"):
            raise NotCovered
        return _strings, nullable
    if isinstance(output, GraphQLEnumType):
        members = getattr(output, "wrapped_cls", None)
        if members is None:
            raise NotCovered
        # from_row makes the member of the column's value; graphql-core serializes the member.
        names = {member.value: output.coerce_output_value(member) for member in members}
        return _lookup(names), nullable
    if not isinstance(output, GraphQLScalarType):
        raise NotCovered
    if output.name == "DateTime":
        return _scalar(output, utc), nullable
    if output.name in ("String", "ID"):
        return _text(output), nullable
    return _scalar(output, None), nullable


def _serialized(scalar: GraphQLScalarType, value: Any) -> Any:
    try:
        coerced = scalar.coerce_output_value(value)
    except Exception:  # graphql-core's path reports it
        raise Unanswerable from None
    if coerced is None:
        raise Unanswerable
    return coerced


def _text(scalar: GraphQLScalarType) -> Convert:
    def convert(value: Any) -> Any:
        return value if type(value) is str else _serialized(scalar, value)

    return convert


def _scalar(scalar: GraphQLScalarType, before: Convert | None) -> Convert:
    def convert(value: Any) -> Any:
        if before is not None:
            try:
                value = before(value)
            except Exception:
                raise Unanswerable from None
        return _serialized(scalar, value)

    return convert


def _lookup(names: dict[Any, str]) -> Convert:
    def convert(value: Any) -> Any:
        try:
            return names[value]
        except (KeyError, TypeError):
            raise Unanswerable from None

    return convert


def _strings(value: Any) -> Any:
    if type(value) is not list or any(type(item) is not str for item in value):
        raise Unanswerable
    return list(value)
