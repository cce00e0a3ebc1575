"""The parts of a read plan. Each renders its value from its source (the row of the object it belongs to, or a
connection's page) within one store job (``Run``), reading what it needs with narrow Core statements: the columns
its fields ask for, nothing decoded that is not shown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import FieldNode, GraphQLField, get_argument_values
from graphql.execution.values import VariableValues
from sqlalchemy import Connection as StoreConnection
from sqlalchemy import bindparam, select

from gateway.graphql.loaders import directory_counts, groups_of_users
from gateway.graphql.pagination import (
    PageRequest,
    count_statement,
    encode_cursor,
    keyset_parameters,
    keyset_result,
    keyset_statement,
)
from gateway.graphql.plans.leaves import Convert, Unanswerable
from gateway.graphql.types.statements import (
    as_parameters,
    group_filter_values,
    group_filters,
    table_of,
    user_filter_values,
    user_filters,
)
from gateway.ops.directories import directory_endpoint
from gateway.ops.principals import Principal
from gateway.store import models


class Run:
    """One answer's state: the store connection (Core: the ORM's execution layer adds a fifth to each statement's
    cost, for nothing a plan uses), the operation's variables, who asks, what was read so far."""

    __slots__ = ("connection", "counts", "group_objects", "groups_of_user", "principal", "public_url", "variables")

    def __init__(
        self, connection: StoreConnection, variables: VariableValues, principal: Principal, public_url: str
    ) -> None:
        self.connection = connection
        self.variables = variables
        self.principal = principal
        self.public_url = public_url
        self.counts: dict[str, dict[str, int]] = {}
        # The groups of the users of the page being rendered (set by its connection, which renders its edges).
        self.groups_of_user: dict[str, list[Any]] = {}
        # (group fields, group id) -> its rendered object: a page's users share their groups.
        self.group_objects: dict[tuple[int, str], dict[str, Any]] = {}


class Part(Protocol):
    def render(self, source: Any, run: Run) -> Any: ...


Fields = list[tuple[str, Part]]


def render_object(fields: Fields, source: Any, run: Run) -> dict[str, Any]:
    return {name: part.render(source, run) for name, part in fields}


@dataclass
class Columns:
    """The columns one statement reads, in order: parts learn their index while the plan is built. ``id`` is always
    first (after ``offset`` leading columns the statement adds, e.g. the member id of a user's groups)."""

    offset: int = 0
    names: list[str] = field(default_factory=lambda: ["id"])

    def index(self, name: str) -> int:
        if name not in self.names:
            self.names.append(name)
        return self.offset + self.names.index(name)


@dataclass
class Typename:
    name: str

    def render(self, source: Any, run: Run) -> Any:
        return self.name


@dataclass
class Column:
    index: int
    convert: Convert
    nullable: bool

    def render(self, row: Any, run: Run) -> Any:
        value = row[self.index]
        if value is None:
            if self.nullable:
                return None
            raise Unanswerable
        return self.convert(value)


def arguments(definition: GraphQLField, node: FieldNode, run: Run) -> dict[str, Any]:
    return get_argument_values(definition, node, run.variables)


@dataclass
class DirectoryField:
    """``Query.directory(id)``: the directory if the key may see it; else graphql-core answers NOT_FOUND."""

    definition: GraphQLField
    node: FieldNode
    columns: Columns
    fields: Fields
    statement: Any = None

    def render(self, source: Any, run: Run) -> Any:
        directory_id = str(arguments(self.definition, self.node, run)["id"])
        if self.statement is None:  # built once the plan knows its columns, then reused
            table = models.Directory.__table__  # type: ignore[attr-defined]
            columns = (table.c[name] for name in self.columns.names)
            self.statement = select(*columns).where(table.c.id == bindparam("directory_id"))
        row = run.connection.execute(self.statement, {"directory_id": directory_id}).first()
        if row is None or not run.principal.can_see(row[1]):  # organization_id is the second column
            raise Unanswerable
        return render_object(self.fields, row, run)


@dataclass
class Endpoint:
    def render(self, row: Any, run: Run) -> Any:
        return directory_endpoint(public_url=run.public_url, directory_id=row[0])


@dataclass
class Count:
    """One of a directory's four counts: the first one asked reads all four (one statement)."""

    key: str

    def render(self, row: Any, run: Run) -> Any:
        counts = run.counts.get(row[0])
        if counts is None:
            counts = run.counts[row[0]] = directory_counts(run.connection, [row[0]])[0]
        return counts[self.key]


@dataclass
class Page:
    rows: list[Any]
    has_next: bool
    has_previous: bool
    count: Any  # the statement counting every row of the connection, and its parameters
    parameters: dict[str, Any]
    total: int | None = None

    def cursor(self, at: int) -> str | None:
        return encode_cursor(self.rows[at][0]) if self.rows else None


# (which filters are set, which page arguments are given): the shape of a connection's statements.
_Shape = tuple[bool, ...]


@dataclass
class Connection:
    """``Directory.users`` or ``Directory.groups``: the page by keyset, its nodes' groups (users) in one more
    statement when asked, ``totalCount`` one more when asked, as the resolvers read them. The statements are built
    once per shape of request (which filters, which page arguments), their values passed as parameters."""

    definition: GraphQLField
    node: FieldNode
    of_users: bool
    columns: Columns
    fields: Fields
    # The groups' columns when the page's users are asked for their groups.
    group_columns: Columns | None = None
    statements: dict[_Shape, tuple[Any, Any]] = field(default_factory=dict)

    def render(self, directory: Any, run: Run) -> Any:
        args = arguments(self.definition, self.node, run)
        request = PageRequest(first=args["first"], after=args["after"], last=args["last"], before=args["before"])
        if self.of_users:
            group = args["groupId"]
            values = user_filter_values(
                directory_id=directory[0],
                state=args["state"],
                group_id=str(group) if group else None,
                search=args["search"],
                role=args["role"],
            )
        else:
            member = args["memberId"]
            values = group_filter_values(
                directory_id=directory[0], search=args["search"], member_id=str(member) if member else None
            )
        parameters = keyset_parameters(request)
        bound, filter_parameters = as_parameters(values)
        shape = (*(value is not None for value in values.values()), *(name in parameters for name in _BOUNDS))
        shape += (request.last is not None,)
        statements = self.statements.get(shape)
        if statements is None:
            statements = self.statements[shape] = self._statements(bound, request)
        rows = run.connection.execute(statements[0], {**filter_parameters, **parameters}).all()
        found = keyset_result(list(rows), request)
        page = Page(found.rows, found.has_next, found.has_previous, statements[1], filter_parameters)
        if self.group_columns is not None:
            user_ids = [row[0] for row in page.rows]
            run.groups_of_user = groups_of_users(run.connection, user_ids, self.group_columns.names) if user_ids else {}
        return render_object(self.fields, page, run)

    def _statements(self, bound: dict[str, Any], request: PageRequest) -> tuple[Any, Any]:
        """The page's statement and the count's, for every request of this shape."""
        table = table_of(models.DirectoryUser if self.of_users else models.DirectoryGroup)
        where = user_filters(**bound) if self.of_users else group_filters(**bound)
        statement = select(*(table.c[name] for name in self.columns.names)).where(*where)
        return keyset_statement(statement, table.c.id, request), count_statement(statement)


_BOUNDS = ("page_after", "page_before")


@dataclass
class TotalCount:
    def render(self, page: Page, run: Run) -> Any:
        if page.total is None:
            page.total = run.connection.execute(page.count, page.parameters).scalar() or 0
        return page.total


@dataclass
class Edges:
    fields: Fields

    def render(self, page: Page, run: Run) -> Any:
        fields = self.fields
        return [render_object(fields, row, run) for row in page.rows]


@dataclass
class Cursor:
    def render(self, row: Any, run: Run) -> Any:
        return encode_cursor(row[0])


@dataclass
class Node:
    fields: Fields

    def render(self, row: Any, run: Run) -> Any:
        return render_object(self.fields, row, run)


@dataclass
class PageInfo:
    fields: Fields

    def render(self, page: Page, run: Run) -> Any:
        return render_object(self.fields, page, run)


@dataclass
class PageInfoValue:
    name: str

    def render(self, page: Page, run: Run) -> Any:
        if self.name == "hasNextPage":
            return page.has_next
        if self.name == "hasPreviousPage":
            return page.has_previous
        return page.cursor(0 if self.name == "startCursor" else -1)


@dataclass
class UserGroups:
    """``DirectoryUser.groups``, read with the page (``Connection.group_columns``); users share their groups."""

    fields: Fields

    def render(self, user: Any, run: Run) -> Any:
        rendered = run.group_objects
        plan = id(self)
        groups = []
        for row in run.groups_of_user.get(user[0], ()):
            key = (plan, row[1])
            group = rendered.get(key)
            if group is None:
                group = rendered[key] = render_object(self.fields, row, run)
            groups.append(group)
        return groups


PAGE_INFO_FIELDS: Sequence[str] = ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor")
