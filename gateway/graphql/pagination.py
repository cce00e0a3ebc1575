"""Relay-style connections over keyset pagination: ``WHERE key > cursor ORDER BY key LIMIT n``, never OFFSET, so a
deep page costs what the first one does.

Every connection field is written the same way: its resolver takes a ``page: PageRequest`` parameter, which
:class:`PageArguments` turns into the GraphQL arguments ``first, after, last, before`` (in its place, so the schema's
argument order is the signature's), and returns :func:`resolve_connection` of its filtered statement.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session
from strawberry.annotation import StrawberryAnnotation
from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver
from strawberry.types.arguments import StrawberryArgument

from gateway.graphql.errors import bad_input

if TYPE_CHECKING:
    from strawberry.types.field import StrawberryField

    from gateway.graphql.context import Info

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def encode_cursor(key: str | int) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, numeric: bool = False) -> str | int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_input(f"invalid cursor {cursor!r}") from None
    # No key holds a NUL character (PostgreSQL could not even be asked about one).
    if not raw.startswith("k:") or "\x00" in raw:
        raise bad_input(f"invalid cursor {cursor!r}")
    key = raw[2:]
    if numeric:
        # ASCII digits (str.isdigit also takes "²") of a number that fits the BIGINT cursor column.
        if not (key.isascii() and key.isdigit()) or int(key) >= 2**63:
            raise bad_input(f"invalid cursor {cursor!r}")
        return int(key)
    return key


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def validated(self) -> PageRequest:
        if self.first is not None and self.last is not None:
            raise bad_input("pass either first or last, not both")
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise bad_input(f"{name} must be between 0 and {MAX_PAGE_SIZE}")
        return self


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="All items matching the filters, across pages (one COUNT query when asked for).")
    async def total_count(self) -> int:
        return await self._count()


@dataclass
class Page:
    rows: list[Any]
    has_next: bool
    has_previous: bool


def keyset_statement(statement: Select[Any], key: Any, request: PageRequest) -> Select[Any]:
    """``statement`` (already filtered) as the page ``request`` asks for, ordered by the unique ``key``; the
    cursors and the size are parameters (``keyset_parameters``), so one statement serves every request of its shape.

    Statements select table columns, not ORM entities: plain rows cost no identity map or instance state, and
    leave nothing for the garbage collector to chase."""
    if request.after is not None:
        statement = statement.where(key > bindparam("page_after"))
    if request.before is not None:
        statement = statement.where(key < bindparam("page_before"))
    return statement.order_by(key if request.last is None else key.desc()).limit(bindparam("page_limit"))


def keyset_parameters(request: PageRequest, *, numeric: bool = False) -> dict[str, Any]:
    """The parameters of ``keyset_statement`` for ``request`` (checked: BAD_USER_INPUT for a bad size or cursor)."""
    request = request.validated()
    size = request.last if request.last is not None else DEFAULT_PAGE_SIZE if request.first is None else request.first
    parameters: dict[str, Any] = {"page_limit": size + 1}  # one more: is there a next (or previous) page?
    if request.after is not None:
        parameters["page_after"] = decode_cursor(request.after, numeric=numeric)
    if request.before is not None:
        parameters["page_before"] = decode_cursor(request.before, numeric=numeric)
    return parameters


def keyset_result(rows: list[Any], request: PageRequest) -> Page:
    """The page of the rows ``keyset_statement`` read (one more than the page, if there is more)."""
    if request.last is not None:
        has_more = len(rows) > request.last
        return Page(
            rows=list(reversed(rows[: request.last])), has_next=request.before is not None, has_previous=has_more
        )
    size = DEFAULT_PAGE_SIZE if request.first is None else request.first
    return Page(rows=rows[:size], has_next=len(rows) > size, has_previous=request.after is not None)


def keyset_page(
    session: Session, statement: Select[Any], key: Any, request: PageRequest, *, numeric: bool = False
) -> Page:
    """One page of ``statement`` (already filtered) ordered by the unique ``key``."""
    parameters = keyset_parameters(request, numeric=numeric)
    rows = list(session.execute(keyset_statement(statement, key, request), parameters).all())
    return keyset_result(rows, request)


def count_statement(statement: Select[Any]) -> Select[Any]:
    return select(func.count()).select_from(statement.order_by(None).subquery())


def count_rows(session: Session, statement: Select[Any]) -> int:
    return session.scalar(count_statement(statement)) or 0


def connection(
    page: Page,
    *,
    node: Callable[[Any], T],
    key: Callable[[Any], str | int],
    count: Callable[[], Awaitable[int]],
) -> Connection[T]:
    edges = [Edge(cursor=encode_cursor(key(row)), node=node(row)) for row in page.rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        _count=count,
    )


async def resolve_connection(
    info: Info,
    statement: Select[Any],
    *,
    key: Any,
    page: PageRequest,
    node: Callable[[Any], T],
    numeric: bool = False,
    with_rows: Callable[[Session, list[Any]], None] | None = None,
) -> Connection[T]:
    """The one resolver of every connection field: the page ``page`` asks for of ``statement`` (filtered, unordered),
    ordered by the unique column ``key`` (its rows' attribute of the same name; ``numeric`` for an integer one), each
    row shown as ``node(row)``. One statement for the page, one more only if ``totalCount`` is asked for;
    ``with_rows(session, rows)`` runs in the same store job (to read what the page's nodes are asked for)."""
    database, slots = info.context.database, info.context.loaders.slots

    def read(session: Session) -> Page:
        found = keyset_page(session, statement, key, page, numeric=numeric)
        if with_rows is not None:
            with_rows(session, found.rows)
        return found

    async with slots:
        rows = await database.query(read)

    async def count() -> int:
        async with slots:
            return await database.query(lambda session: count_rows(session, statement))

    return connection(rows, node=node, key=lambda row: getattr(row, key.key), count=count)


def selects_on_nodes(info: Info, name: str) -> bool:
    """Whether the connection field being resolved asks for ``edges { node { <name> } }`` (fragments included)."""
    raw = info._raw_info
    fragments = raw.fragments
    selections = [node.selection_set for node in raw.field_nodes]
    for step in ("edges", "node", name):
        selections = [child for selection in selections for child in _fields_named(selection, step, fragments)]
        if not selections and step != name:
            return False
    return bool(selections)


def _fields_named(selection_set: Any, name: str, fragments: dict[str, Any], depth: int = 0) -> list[Any]:
    """The selection sets (or, for a leaf, the field nodes) of the fields called ``name`` in ``selection_set``."""
    found: list[Any] = []
    if selection_set is None or depth > 10:  # validation bounds fragment nesting; never loop here
        return found
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            if node.name.value == name:
                found.append(node.selection_set if node.selection_set is not None else node)
        elif isinstance(node, InlineFragmentNode):
            found += _fields_named(node.selection_set, name, fragments, depth + 1)
        elif isinstance(node, FragmentSpreadNode) and node.name.value in fragments:
            found += _fields_named(fragments[node.name.value].selection_set, name, fragments, depth + 1)
    return found


# Declared once, for every connection field (the schema shows them as `first: Int = null`, ...).
_PAGE_ARGUMENTS = (("first", int | None), ("after", str | None), ("last", int | None), ("before", str | None))


class PageArguments(FieldExtension):
    """Puts ``first, after, last, before`` where the resolver has its ``page: PageRequest`` parameter, and calls the
    resolver with them as that one ``PageRequest``."""

    def apply(self, field: StrawberryField) -> None:
        arguments = field.arguments
        at = next((i for i, argument in enumerate(arguments) if argument.python_name == "page"), None)
        if at is None:
            raise TypeError(f"{field.python_name}: a paginated resolver takes a `page: PageRequest` parameter")
        page_arguments = [
            StrawberryArgument(
                python_name=name, graphql_name=None, type_annotation=StrawberryAnnotation(annotation), default=None
            )
            for name, annotation in _PAGE_ARGUMENTS
        ]
        field.arguments = [*arguments[:at], *page_arguments, *arguments[at + 1 :]]

    async def resolve_async(
        self,
        next_: AsyncExtensionResolver,
        source: Any,
        info: Info,
        *,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        **kwargs: Any,
    ) -> Any:
        page = PageRequest(first=first, after=after, last=last, before=before)
        return await next_(source, info, page=page, **kwargs)


def connection_field(*, description: str | None = None) -> Callable[[F], F]:
    """``@strawberry.field`` for a connection: the resolver's ``page: PageRequest`` becomes the page arguments."""
    # Typed as Strawberry types a field given its resolver: the class body sees the function it wrote.
    return cast(Callable[[F], F], strawberry.field(description=description, extensions=[PageArguments()]))
