"""The store side every SCIM resource type shares: how a type is kept (``ResourceKind``) and the skeleton Users and
Groups both follow: a page of them, one or 404, a change saved with its ``previous_attributes`` event, a deletion
that touches the other side of its memberships, and the rendered ``Outcome`` a request's database job answers."""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import (
    LABEL_STYLE_NONE,
    ColumnElement,
    Delete,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, GroupData, UserData, previous_attributes
from gateway.ops.rule_evaluation import members_to_regroup, reevaluate_users
from gateway.store.batch_driver import AsyncpgStatements, Later
from gateway.store.grouped_writer import direct_statements, postgres_statements
from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership, utcnow
from scim.protocol.errors import ScimError
from scim.protocol.render import Member, etag, location, mentions, project, related_attribute, render_resource
from scim.protocol.schemas import Resource

R = TypeVar("R", DirectoryUser, DirectoryGroup)


@dataclass(frozen=True, eq=False)
class ResourceKind(Generic[R]):
    """One SCIM resource type as the store keeps it: what differs between Users and Groups, and nothing else."""

    name: Resource
    model: type[R]
    payload: Callable[..., UserData | GroupData]  # ``user_payload`` / ``group_payload``
    updated: EventName
    deleted: EventName
    # The memberships seen from this side: its own key in them, the other side's key and table (``groups`` of a
    # user, ``members`` of a group are computed from them).
    own_key: Mapped[str]
    related_key: Mapped[str]
    related_model: type[DirectoryUser] | type[DirectoryGroup]
    related_display: ColumnElement[Any] | Mapped[str]  # how a membership shows the other side
    # Prebuilt (see ``scim.backend.groups``): executed with parameters it hits SQLAlchemy's compiled cache.
    _snapshot: Select[Any] = field(init=False, repr=False)
    _touch_related: Update = field(init=False, repr=False)
    _delete: Delete = field(init=False, repr=False)
    _update: Update = field(init=False, repr=False)
    _related: Select[Any] = field(init=False, repr=False)
    # For ``scim.backend.lookups``: the directory's row and the resource's (NULLs when the directory has no such
    # resource) in one statement, the table's column names in its order, the related side of one resource.
    with_directory: Select[Any] = field(init=False, repr=False)
    columns: tuple[str, ...] = field(init=False, repr=False)
    related_one: Select[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        model = self.model
        # Core, not ORM-enabled: a write's statements cost their SQL, not the ORM's loading, flushing and bulk-update
        # bookkeeping.
        table: Table = model.__table__  # type: ignore[attr-defined]
        snapshot = select(table).where(
            table.c.id == bindparam("resource_id"), table.c.directory_id == bindparam("directory_id")
        )
        object.__setattr__(self, "_snapshot", snapshot)
        related: Table = self.related_model.__table__  # type: ignore[union-attr]
        own_ids = select(self.related_key).where(self.own_key == bindparam("resource_id"))
        touch = (
            update(related)
            .where(related.c.id.in_(own_ids))
            .values(version=related.c.version + 1, updated_at=bindparam("now"))
        )
        object.__setattr__(self, "_touch_related", touch)
        object.__setattr__(self, "_delete", delete(table).where(table.c.id == bindparam("resource_id")))
        # SET takes the columns named by the parameters (the id travels as ``b_id``, not a column to set).
        object.__setattr__(self, "_update", update(table).where(table.c.id == bindparam("b_id")))
        directories: Table = Directory.__table__  # type: ignore[attr-defined]
        joined = directories.outerjoin(
            table, and_(table.c.id == bindparam("resource_id"), table.c.directory_id == directories.c.id)
        )
        with_directory = (
            select(*directories.c, *table.c).select_from(joined).where(directories.c.id == bindparam("directory_id"))
        )
        # Both tables have an ``id``: read by position, not by name.
        object.__setattr__(self, "with_directory", with_directory.set_label_style(LABEL_STYLE_NONE))
        object.__setattr__(self, "columns", tuple(column.name for column in table.c))
        related_model = self.related_model
        page_related = select(self.own_key, col(related_model.id), self.related_display).join(
            related_model, col(related_model.id) == self.related_key
        )
        object.__setattr__(
            self,
            "_related",
            page_related.where(self.own_key.in_(bindparam("ids", expanding=True))).order_by(col(related_model.id)),
        )
        one = (
            select(col(related_model.id), self.related_display)
            .select_from(GroupMembership)
            .join(related_model, col(related_model.id) == self.related_key)
        )
        object.__setattr__(
            self, "related_one", one.where(self.own_key == bindparam("resource_id")).order_by(col(related_model.id))
        )


class View(Protocol):
    """What the client asked to see: where its resources live, and which attributes (RFC 7644 §3.4.2.5)."""

    @property
    def base_url(self) -> str: ...
    @property
    def attributes(self) -> list[str] | None: ...
    @property
    def excluded(self) -> list[str] | None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request's database job answers, as data: the api layer makes the HTTP response after the commit."""

    body: dict[str, Any] | None
    status: int = 200
    etag: str | None = None
    location: str | None = None


NO_CONTENT = Outcome(None, 204)


def uniqueness_error(exc: Exception, resource: Resource) -> ScimError:
    """The 409 for a UNIQUE index's refusal: a User's userName (case-insensitive) is the only unique attribute;
    externalId is not unique (RFC 7643 §3.1), neither for users nor for groups."""
    if resource == "User":
        return ScimError(409, "A User with this userName already exists in this directory", "uniqueness")
    return ScimError(409, f"{resource} conflicts with an existing one", "uniqueness")


def new_row(*, directory: Directory, resource_id: str, columns: dict[str, Any]) -> dict[str, Any]:
    """A new resource's row: its id, directory, first version, and the columns derived from its attributes."""
    now = utcnow()
    return {
        "id": resource_id,
        "directory_id": directory.id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **columns,
    }


@functools.cache
def related_json(kind: ResourceKind[Any]) -> Any:
    """PostgreSQL: a resource's ``groups`` / ``members`` as one JSON array of ``[id, display]``, in id order, as a
    column of a statement that reads the resource (``json_agg``: SQLite has no ordered aggregate to match)."""
    table: Table = kind.model.__table__
    related = kind.related_model
    pair = func.json_build_array(col(related.id), kind.related_display)
    return (
        select(func.json_agg(aggregate_order_by(pair, col(related.id))).label("related"))
        .select_from(GroupMembership)
        .join(related, col(related.id) == kind.related_key)
        .where(kind.own_key == table.c.id)
        .scalar_subquery()
    )


def members_of_json(pairs: list[list[Any]] | None) -> list[Member]:
    """What ``related_json`` read (NULL: none)."""
    return [Member(id=i, display=d) for i, d in pairs or ()]


# A user's snapshot on PostgreSQL carries its groups, read in the same statement, under this key of its
# ``__dict__``: no job that writes a user changes its groups, so they are still the ones to answer (``rendered``).
_GROUPS_SEEN = "dsync_groups_seen"


@functools.cache
def _user_snapshot_with_groups(kind: ResourceKind[Any]) -> Select[Any]:
    return kind._snapshot.add_columns(related_json(kind).label(_GROUPS_SEEN))


def read_resource(session: Session, kind: ResourceKind[R], *, directory_id: str, resource_id: str) -> R:
    """One resource as a snapshot: a Core row made into the model without the ORM's loading (no ORM state, not in
    the session). A write changes it with Core statements and records what they wrote with ``written``."""
    parameters = {"resource_id": resource_id, "directory_id": directory_id}
    direct = direct_statements(session)
    if direct is not None:
        found_rows = direct.rows(kind._snapshot, parameters)
        if not found_rows:
            raise ScimError(404, f"{kind.name} {resource_id} not found")
        return kind.model.model_construct(**dict(zip(kind.columns, found_rows[0], strict=True)))
    postgres = postgres_statements(session)
    if postgres is not None:
        with_groups = kind.model is DirectoryUser
        statement = _user_snapshot_with_groups(kind) if with_groups else kind._snapshot
        # A user's row and its groups (whose updates never wait: ``save_resource``).
        found_rows = postgres.rows(statement, parameters, reads=resource_id if with_groups else None)
        if not found_rows:
            raise ScimError(404, f"{kind.name} {resource_id} not found")
        if not with_groups:
            return kind.model.model_construct(**dict(zip(kind.columns, found_rows[0], strict=True)))
        return _user_with_groups(kind, found_rows[0])
    connection = session.connection()
    if kind.model is DirectoryUser and connection.dialect.name == "postgresql":
        found = connection.execute(_user_snapshot_with_groups(kind), parameters).mappings().first()
        if found is None:
            raise ScimError(404, f"{kind.name} {resource_id} not found")
        values = dict(found)
        groups = members_of_json(values.pop(_GROUPS_SEEN))
        snapshot = kind.model.model_construct(**values)
        snapshot.__dict__[_GROUPS_SEEN] = groups
        return snapshot
    row = connection.execute(kind._snapshot, parameters).mappings().first()
    if row is None:
        raise ScimError(404, f"{kind.name} {resource_id} not found")
    return kind.model.model_construct(**row)


def read_resource_together(
    session: Session, kind: ResourceKind[R], *, directory_id: str, resource_id: str
) -> R | ScimError | Later[R | ScimError]:
    """``read_resource`` with its refusal returned (not raised); a user's, on PostgreSQL in a batch, read together
    with the batch's next such reads (``rows_together``: a ``Later``)."""
    postgres = postgres_statements(session)
    if postgres is None or kind.model is not DirectoryUser:
        try:
            return read_resource(session, kind, directory_id=directory_id, resource_id=resource_id)
        except ScimError as refusal:
            return refusal

    def snapshot(found_rows: list[Any]) -> R | ScimError:
        if not found_rows:
            return ScimError(404, f"{kind.name} {resource_id} not found")
        return _user_with_groups(kind, found_rows[0])

    parameters = {"resource_id": resource_id, "directory_id": directory_id}
    statement = _user_snapshot_with_groups(kind)
    # (Not a ``LockFirst`` run: its gated variant, this read in a MATERIALIZED CTE, was planned again at every
    # execution, PostgreSQL never taking its generic plan: more of the database's CPU than the round trip it saves.)
    return postgres.rows_together(statement, parameters, key=resource_id, key_column=0, then=snapshot, key_rows=True)


def _user_with_groups(kind: ResourceKind[R], row: Any) -> R:
    """A user's snapshot from a row of ``_user_snapshot_with_groups``: its columns, then its groups (JSON)."""
    *columns, seen = row
    user = kind.model.model_construct(**dict(zip(kind.columns, columns, strict=True)))
    user.__dict__[_GROUPS_SEEN] = members_of_json(seen)
    return user


def written(row: R, values: dict[str, Any]) -> None:
    """Record on a snapshot (``read_resource``) what a Core statement wrote to its row, for the payloads and the
    answer made from it afterwards; the values are already stored, so nothing must (or could) flush them."""
    row.__dict__.update(values)


def list_resources(
    session: Session, kind: ResourceKind[R], *, directory_id: str, where: Any | None, start_index: int, count: int
) -> tuple[int, list[R]]:
    """``totalResults`` and one page, in id order (RFC 7644 §3.4.2.4), for reading only."""
    model = kind.model
    conditions = [col(model.directory_id) == directory_id]
    if where is not None:
        conditions.append(where)
    rows: list[R] = []
    if count > 0:
        table: Table = model.__table__  # type: ignore[attr-defined]
        page = select(table).where(*conditions).order_by(table.c.id).offset(start_index - 1).limit(count)
        # Read only (rendered): Core rows made into models, without the ORM's loading.
        rows = [model.model_construct(**row) for row in session.connection().execute(page).mappings()]
    if 0 < len(rows) < count or (start_index == 1 and len(rows) < count):
        # The page ends before ``count``: it holds the last results, so their number says the total. A lookup by
        # userName or externalId (an IdP's check before most writes) costs one query, not two.
        return start_index - 1 + len(rows), rows
    total = session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    return total, rows


def save_resource(
    session: Session, kind: ResourceKind[R], *, directory: Directory, row: R, columns: dict[str, Any]
) -> bool:
    """Store the new ``columns``; the ``updated`` event (with ``previous_attributes``) only when something changed."""
    if all(getattr(row, key) == value for key, value in columns.items()):
        return False
    organization_id = directory.organization_id
    before = kind.payload(row, organization_id=organization_id)
    values = {**columns, "version": row.version + 1, "updated_at": utcnow()}
    direct = direct_statements(session) or postgres_statements(session)
    try:
        # One prebuilt UPDATE by id. No lost update: the write job read ``row`` in this very transaction, which
        # SQLite's single writer (or the directory's row lock on PostgreSQL, ``scim.backend.auth``) keeps exclusive
        # until the commit. On PostgreSQL a user's update may wait for the batch's others (``update_later``): one
        # round trip for all; a conflict there runs the batch again with savepoints, where it is raised here.
        if direct is not None:
            update = _update_of(kind, tuple(values))
            parameters = {"b_id": row.id, **{f"v_{k}": v for k, v in values.items()}}
            user = kind.model is DirectoryUser
            if not (
                user and isinstance(direct, AsyncpgStatements) and direct.update_later(update, parameters, row=row.id)
            ):
                direct.rows(update, parameters)
        else:
            session.connection().execute(kind._update, {"b_id": row.id, **values})
    except (IntegrityError, sqlite3.IntegrityError) as exc:
        raise uniqueness_error(exc, kind.name) from None
    written(row, values)
    after = kind.payload(row, organization_id=organization_id)
    after["previous_attributes"] = previous_attributes(before, after)
    record_event(session, event=kind.updated, organization_id=organization_id, directory_id=directory.id, data=after)
    return True


@functools.cache
def _update_of(kind: ResourceKind[Any], columns: tuple[str, ...]) -> Update:
    """``kind._update`` setting exactly ``columns`` (their parameters named ``v_<column>``), for the batch's DBAPI
    connection (``direct_statements``): one statement per set of columns a save writes (a handful)."""
    table: Table = kind.model.__table__
    return kind._update.values({name: bindparam(f"v_{name}", type_=table.c[name].type) for name in columns})


def delete_resource(session: Session, kind: ResourceKind[R], *, directory: Directory, row: R) -> None:
    """Delete it; its memberships go with it (``ON DELETE CASCADE``), so the other side of each one changed."""
    payload = kind.payload(row, organization_id=directory.organization_id)
    row.__dict__.pop(_GROUPS_SEEN, None)  # its memberships go
    # A mapped group's members lose its role: read them before the cascade forgets them.
    regrouped = (
        members_to_regroup(session, directory=directory, group_id=row.id) if kind.model is DirectoryGroup else []
    )
    parameters = {"resource_id": row.id, "now": utcnow()}
    postgres = postgres_statements(session)
    if postgres is not None:
        postgres.rows(_touch_and_delete(kind), parameters)  # one round trip
    elif (connection := session.connection()).dialect.name == "postgresql":
        connection.execute(_touch_and_delete(kind), parameters)
    else:
        # Before the delete, while its memberships still name them.
        connection.execute(kind._touch_related, parameters)
        connection.execute(kind._delete, parameters)
    record_event(
        session, event=kind.deleted, organization_id=directory.organization_id, directory_id=directory.id, data=payload
    )
    reevaluate_users(session, directory=directory, user_ids=regrouped, attributes=False)


@functools.cache
def _touch_and_delete(kind: ResourceKind[Any]) -> Delete:
    """PostgreSQL: the other side of the memberships touched and the resource deleted in one statement. Both parts
    see the same snapshot, so the touch finds the memberships the delete's cascade removes."""
    return kind._delete.add_cte(kind._touch_related.cte("touched"))


def related_members(session: Session, kind: ResourceKind[R], ids: Sequence[str]) -> dict[str, list[Member]]:
    """The computed, read-only ``groups`` of a page of users, or ``members`` of a page of groups, in one query."""
    result: dict[str, list[Member]] = defaultdict(list)
    if not ids:
        return result
    if len(ids) == 1:  # one resource (a write's answer): a plain equality, no IN list to expand per execution
        [own] = ids
        direct = direct_statements(session) or postgres_statements(session)
        parameters = {"resource_id": own}
        if direct is not None:
            pairs: Any = direct.rows(kind.related_one, parameters)
        else:
            pairs = session.connection().execute(kind.related_one, parameters)
        result[own] = [Member(id=i, display=d) for i, d in pairs]
        return result
    connection = session.connection()
    for own_id, related_id, display in connection.execute(kind._related, {"ids": list(ids)}):
        result[own_id].append(Member(id=related_id, display=display))
    return result


def render_resources(
    session: Session,
    kind: ResourceKind[R],
    rows: Sequence[R],
    *,
    base_url: str,
    attributes: list[str] | None,
    excluded: list[str] | None,
) -> list[dict[str, Any]]:
    """Rows as SCIM shows them, reading their ``groups`` / ``members`` in one query, and only when asked for."""
    name = related_attribute(kind.name)
    wanted = (not attributes or mentions(attributes, name)) and not mentions(excluded, name, whole=True)
    related = related_members(session, kind, [r.id for r in rows]) if wanted else {}
    return [
        project(
            render_resource(
                r, resource=kind.name, base_url=base_url, related=related.get(r.id, []) if wanted else None
            ),
            resource=kind.name,
            attributes=attributes,
            excluded=excluded,
        )
        for r in rows
    ]


def rendered(
    session: Session,
    kind: ResourceKind[R],
    row: R,
    *,
    view: View,
    status: int = 200,
    related: list[Member] | None = None,
) -> Outcome:
    """One resource as answered; ``related`` when already known (a new user is in no group, a snapshot may carry
    its groups), else read. A 201 carries its ``Location``."""
    if related is None:
        related = row.__dict__.get(_GROUPS_SEEN)
    if related is not None:
        body = render_resource(row, resource=kind.name, base_url=view.base_url, related=related)
        body = project(body, resource=kind.name, attributes=view.attributes, excluded=view.excluded)
    else:
        [body] = render_resources(
            session, kind, [row], base_url=view.base_url, attributes=view.attributes, excluded=view.excluded
        )
    where = location(kind.name, view.base_url, row.id) if status == 201 else None
    return Outcome(body, status, etag(row.version), where)
