"""Hypothesis strategies for GraphQL documents and variables, built from ``schema.graphql``: random selections
(aliases, fragments on the ``Node`` union, unknown fields), arguments as literals or variables, mostly of the right
type and sometimes not, ids real or made up, cursors real or forged, page sizes in range and out of it."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLUnionType,
    Undefined,
    build_schema,
    get_named_type,
    is_leaf_type,
)
from hypothesis import strategies as st

from tests.robustness.scim_inputs import POISON, json_values, near, random_id, texts

SCHEMA = build_schema((Path(__file__).parents[2] / "schema.graphql").read_text())
MAX_DEPTH = 4
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


@dataclass
class Pools:
    """Values worth trying because they mean something to the server."""

    ids: list[str]
    cursors: list[str]
    event_names: list[str] = field(
        default_factory=lambda: ["dsync.user.created", "dsync.group.user_added", "dsync.deleted", "nope", ""]
    )


@st.composite
def forged_cursors(draw: st.DrawFn) -> str:
    """Cursors a client could make up: our encoding around an odd key (numbers out of range, non-ASCII digits,
    NUL), or any text, base64 or not."""

    def encode(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")

    if draw(st.booleans()):
        odd = ["0", "-1", "²", "٣", "99999999999999999999", str(2**63), str(2**63 - 1), "\x00", "", "org_x", "1.5"]
        key = draw(st.sampled_from(odd) if draw(st.booleans()) else texts())
        return encode(f"k:{key}")
    return draw(st.one_of(texts().map(encode), st.sampled_from(["", "=", "!!!", "a", "azo", "%%%"]), texts()))


def integers() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-2, 102),
        st.sampled_from([0, 1, 100, 101, -1, 2**31 - 1, -(2**31), 2**31, 2**53, 10**30]),
    )


DATES = [
    "2020-01-01T00:00:00Z",
    "2020-01-01T00:00:00",
    "2020-01-01T05:00:00+05:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2020-02-30T00:00:00Z",
    "now",
    "",
]


# The kind of id an argument (or, for ``id``, its field) wants: ids of that kind are drawn more often.
_ID_KINDS = {
    "organizationId": "org",
    "directoryId": "directory",
    "groupId": "directory_group",
    "memberId": "directory_user",
    "organization": "org",
    "updateOrganization": "org",
    "deleteOrganization": "org",
    "directory": "directory",
    "renameDirectory": "directory",
    "rotateDirectoryToken": "directory",
    "setDirectoryDeprovisionPolicy": "directory",
    "deleteDirectory": "directory",
    "directoryUser": "directory_user",
    "directoryGroup": "directory_group",
    "revokeApiKey": "api_key",
}


def _one_in(draw: st.DrawFn, n: int) -> bool:
    # The top of the range: hypothesis draws the bottom (0) more often than its share.
    return draw(st.integers(1, n)) == n


class _Builder:
    """Draws one operation, collecting the variables it declares on the way. A ``well_typed`` one passes
    validation (its values are still made up: ids of nothing, forged cursors, page sizes out of range); the others
    also get unknown fields and arguments, missing required ones, and values and variables of the wrong type."""

    def __init__(self, draw: st.DrawFn, pools: Pools, *, well_typed: bool) -> None:
        self.draw, self.pools, self.well_typed = draw, pools, well_typed
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}

    def broken(self, n: int) -> bool:
        return not self.well_typed and _one_in(self.draw, n)

    def selection(self, named: GraphQLNamedType, depth: int, *, limit: int = 3) -> str:
        draw = self.draw
        if isinstance(named, GraphQLUnionType):
            members = draw(st.lists(st.sampled_from(named.types), min_size=1, max_size=2, unique_by=lambda t: t.name))
            fragments = [f"... on {t.name} {self.selection(t, depth + 1)}" for t in members]
            return "{ __typename " + " ".join(fragments) + " }"
        assert isinstance(named, GraphQLObjectType)
        names = sorted(named.fields)
        if named is SCHEMA.query_type:
            names += ["events", "events"]  # the root field with the most arguments, drawn more often
        if depth >= MAX_DEPTH:
            names = [n for n in names if is_leaf_type(get_named_type(named.fields[n].type))] or ["__typename"]
        parts: list[str] = []
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=limit, unique=True)):
            if name == "__typename":
                parts.append(name)
                continue
            definition = named.fields[name]
            alias = f"{draw(st.sampled_from(['a', 'b', 'x_1']))}: " if _one_in(draw, 8) else ""
            inner = get_named_type(definition.type)
            below = "" if is_leaf_type(inner) else " " + self.selection(inner, depth + 1)
            parts.append(f"{alias}{name}{self.arguments(name, definition.args)}{below}")
        if self.broken(6):
            parts.append(draw(st.sampled_from(["nosuch", "id { id }", "__schema { types { name } }", "...F"])))
        return "{ " + " ".join(parts) + " }"

    def arguments(self, field_name: str, arguments: dict[str, GraphQLArgument]) -> str:
        draw = self.draw
        parts: list[str] = []
        for name, argument in arguments.items():
            required = isinstance(argument.type, GraphQLNonNull) and argument.default_value is Undefined
            if (not required and not _one_in(draw, 3)) or self.broken(8):
                continue  # omitted (a required one: a validation error)
            value = self.value(argument.type, _ID_KINDS.get(name if name != "id" else field_name, name))
            if draw(st.booleans()):
                parts.append(f"{name}: {_literal(value, argument.type)}")
                continue
            variable = f"v{len(self.definitions)}"
            declared = draw(st.sampled_from(["Int", "String!", "[ID]"])) if self.broken(8) else argument.type
            self.definitions.append(f"${variable}: {declared}")
            if not self.broken(8):
                self.variables[variable] = value
            parts.append(f"{name}: ${variable}")
        if self.broken(8):
            parts.append("bogus: 1")
        return f"({', '.join(parts)})" if parts else ""

    def value(self, kind: GraphQLInputType, name: str, *, nullable: bool = True) -> Any:
        draw = self.draw
        if self.broken(6):
            return draw(json_values)  # of any type at all
        if isinstance(kind, GraphQLNonNull):
            return self.value(kind.of_type, name, nullable=False)
        if nullable and _one_in(draw, 8):
            return None
        if isinstance(kind, GraphQLList):
            return [self.value(kind.of_type, name) for _ in range(draw(st.integers(0, 3)))]
        if isinstance(kind, GraphQLEnumType):
            return draw(st.sampled_from([*kind.values, "NOPE", "active"] if self.broken(2) else [*kind.values]))
        pools = self.pools
        strategy: st.SearchStrategy[Any]
        if getattr(kind, "name", None) in ("ID", "String") and _one_in(draw, 10):
            return draw(st.sampled_from(POISON))
        match getattr(kind, "name", None):
            case "ID":
                fitting = [i for i in pools.ids if i.rsplit("_", 1)[0] == name] or pools.ids
                prefixes = st.sampled_from(["org", "directory", "directory_user", "directory_group", "event"])
                strategy = st.sampled_from(fitting)
                if _one_in(draw, 3):
                    strategy = st.one_of(st.sampled_from(pools.ids), prefixes.flatmap(random_id), texts())
            case "Int":
                if self.broken(2):
                    strategy = integers()
                else:  # mostly page sizes that pass, so that what comes after them (cursors) is reached
                    strategy = st.one_of(st.integers(0, 100), integers().filter(lambda i: -(2**31) <= i < 2**31))
            case "Boolean":
                strategy = st.booleans()
            case "DateTime":  # the ends of the calendar, where an offset takes a date out of range, half the time
                strategy = st.sampled_from(DATES[3:5] if draw(st.booleans()) else DATES)
            case "JSON":
                strategy = json_values
            case _ if name in ("after", "before"):
                strategy = forged_cursors() if draw(st.booleans()) else st.sampled_from(pools.cursors)
            case _ if name == "events":
                strategy = st.sampled_from(pools.event_names)
            case _:
                strategy = texts()
        return draw(strategy)


def _literal(value: Any, kind: GraphQLInputType) -> str:
    """``value`` written in GraphQL (a string that names an enum value is written bare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    inner = kind.of_type if isinstance(kind, GraphQLNonNull | GraphQLList) else kind
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, inner) for v in value) + "]"
    if isinstance(value, dict):
        fields = (f"{k}: {_literal(v, inner)}" for k, v in value.items() if _NAME.fullmatch(k))
        return "{" + ", ".join(fields) + "}"
    if isinstance(get_named_type(kind), GraphQLEnumType) and _NAME.fullmatch(str(value)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


@st.composite
def operations(draw: st.DrawFn, pools: Pools) -> tuple[str, dict[str, Any]]:
    """A query (most often), mutation or subscription document, and its variables."""
    kind = draw(st.sampled_from(["query"] * 6 + ["mutation", "mutation", "subscription"]))
    root = {"query": SCHEMA.query_type, "mutation": SCHEMA.mutation_type, "subscription": SCHEMA.subscription_type}
    root_type = root[kind]
    assert root_type is not None
    builder = _Builder(draw, pools, well_typed=not _one_in(draw, 3))
    selection = builder.selection(root_type, 0, limit=1 if kind != "query" else 3)
    header = f"{kind} Fuzz({', '.join(builder.definitions)})" if builder.definitions else kind
    document = f"{header} {selection}"
    if builder.broken(4):
        document = draw(near(document))
    return document, builder.variables
