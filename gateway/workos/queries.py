"""What each WorkOS endpoint reads: plain functions over a ``Session`` (run with ``Database.query``) that check the
caller's organization, page through the store by keyset and return WorkOS objects ready to send."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.filter import EventFilter
from gateway.ops.principals import Principal
from gateway.store import models
from gateway.workos.errors import invalid, not_found
from gateway.workos.objects import (
    directory_object,
    event_object,
    group_object,
    user_object,
    webhook_endpoint_object,
)
from gateway.workos.pagination import requested_page
from gateway.workos.params import PageRequest

_DIRECTORIES = models.Directory.__table__  # type: ignore[attr-defined]
_USERS = models.DirectoryUser.__table__  # type: ignore[attr-defined]
_GROUPS = models.DirectoryGroup.__table__  # type: ignore[attr-defined]
_MEMBERSHIPS = models.GroupMembership.__table__  # type: ignore[attr-defined]
_EVENTS = models.Event.__table__  # type: ignore[attr-defined]
_WEBHOOK_ENDPOINTS = models.WebhookEndpoint.__table__  # type: ignore[attr-defined]


def _contains(term: str) -> str:
    """A LIKE pattern for ``term`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = term.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def visible_directory(session: Session, *, principal: Principal, directory_id: str) -> Any:
    """The directory row, or 404 when it is missing or another organization's."""
    row = session.execute(select(_DIRECTORIES).where(_DIRECTORIES.c.id == directory_id)).first()
    if row is None or not principal.can_see(row.organization_id):
        raise not_found("Directory", directory_id)
    return row


def get_directory(session: Session, *, principal: Principal, directory_id: str) -> dict[str, Any]:
    """``GET /directories/{id}``."""
    return directory_object(visible_directory(session, principal=principal, directory_id=directory_id))


def list_directories(
    session: Session,
    *,
    principal: Principal,
    page: PageRequest,
    organization_id: str | None,
    search: str | None,
    domain: str | None,
) -> dict[str, Any]:
    """``GET /directories``: the caller's directories, by organization, name or organization domain."""
    statement = select(_DIRECTORIES)
    if principal.organization_id is not None:
        statement = statement.where(_DIRECTORIES.c.organization_id == principal.organization_id)
    if organization_id is not None:
        statement = statement.where(_DIRECTORIES.c.organization_id == organization_id)
    if search is not None:
        statement = statement.where(func.lower(_DIRECTORIES.c.name).like(_contains(search), escape="\\"))
    if domain is not None:
        # Organizations are few and their domains a short JSON list: matched here, the same on every store.
        wanted = domain.strip().lower()
        organizations = session.execute(select(col(models.Organization.id), col(models.Organization.domains))).all()
        statement = statement.where(
            _DIRECTORIES.c.organization_id.in_([org_id for org_id, domains in organizations if wanted in domains])
        )
    return requested_page(session, statement, key=_DIRECTORIES.c.id, request=page).envelope(directory_object)


def _visible_user(session: Session, *, principal: Principal, user_id: str) -> tuple[Any, str]:
    row = session.execute(
        select(_USERS, _DIRECTORIES.c.organization_id.label("organization_id"))
        .join(_DIRECTORIES, _DIRECTORIES.c.id == _USERS.c.directory_id)
        .where(_USERS.c.id == user_id)
    ).first()
    if row is None or not principal.can_see(row.organization_id):
        raise not_found("DirectoryUser", user_id)
    return row, row.organization_id


def _visible_group(session: Session, *, principal: Principal, group_id: str) -> tuple[Any, str]:
    row = session.execute(
        select(_GROUPS, _DIRECTORIES.c.organization_id.label("organization_id"))
        .join(_DIRECTORIES, _DIRECTORIES.c.id == _GROUPS.c.directory_id)
        .where(_GROUPS.c.id == group_id)
    ).first()
    if row is None or not principal.can_see(row.organization_id):
        raise not_found("DirectoryGroup", group_id)
    return row, row.organization_id


def _groups_of(session: Session, user_ids: list[str], *, organization_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each user's groups as WorkOS objects: one query for a whole page of users."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not user_ids:
        return groups
    rows = session.execute(
        select(_GROUPS, _MEMBERSHIPS.c.user_id.label("member_id"))
        .join(_MEMBERSHIPS, _MEMBERSHIPS.c.group_id == _GROUPS.c.id)
        .where(_MEMBERSHIPS.c.user_id.in_(user_ids))
        .order_by(_GROUPS.c.id)
    ).all()
    for row in rows:
        groups[row.member_id].append(group_object(row, organization_id=organization_id))
    return groups


def get_user(session: Session, *, principal: Principal, user_id: str) -> dict[str, Any]:
    """``GET /directory_users/{id}``, with the user's groups."""
    user, organization_id = _visible_user(session, principal=principal, user_id=user_id)
    groups = _groups_of(session, [user.id], organization_id=organization_id)
    return user_object(user, organization_id=organization_id, groups=groups[user.id])


def get_group(session: Session, *, principal: Principal, group_id: str) -> dict[str, Any]:
    """``GET /directory_groups/{id}``."""
    group, organization_id = _visible_group(session, principal=principal, group_id=group_id)
    return group_object(group, organization_id=organization_id)


def list_users(
    session: Session,
    *,
    principal: Principal,
    page: PageRequest,
    directory_id: str | None,
    group_id: str | None,
    idp_id: str | None,
    email: str | None,
) -> dict[str, Any]:
    """``GET /directory_users``: a directory's users (``directory`` or ``group`` required), filtered by group
    membership, ``idp_id`` or email (case-insensitively)."""
    if group_id is not None:
        group, _ = _visible_group(session, principal=principal, group_id=group_id)
        directory_id = directory_id or group.directory_id
    if directory_id is None:
        raise invalid("directory", "directory or group is required")
    directory = visible_directory(session, principal=principal, directory_id=directory_id)
    statement: Select[Any] = select(_USERS).where(_USERS.c.directory_id == directory.id)
    if group_id is not None:
        members = select(_MEMBERSHIPS.c.user_id).where(_MEMBERSHIPS.c.group_id == group_id)
        statement = statement.where(_USERS.c.id.in_(members))
    if idp_id is not None:
        statement = statement.where(_USERS.c.idp_id == idp_id)
    if email is not None:
        statement = statement.where(func.lower(_USERS.c.email) == email.strip().lower())
    page_ = requested_page(session, statement, key=_USERS.c.id, request=page)
    organization_id = directory.organization_id
    groups = _groups_of(session, [row.id for row in page_.rows], organization_id=organization_id)
    return page_.envelope(lambda row: user_object(row, organization_id=organization_id, groups=groups[row.id]))


def list_groups(
    session: Session,
    *,
    principal: Principal,
    page: PageRequest,
    directory_id: str | None,
    user_id: str | None,
) -> dict[str, Any]:
    """``GET /directory_groups``: a directory's groups (``directory`` or ``user`` required), or a user's."""
    if user_id is not None:
        user, _ = _visible_user(session, principal=principal, user_id=user_id)
        directory_id = directory_id or user.directory_id
    if directory_id is None:
        raise invalid("directory", "directory or user is required")
    directory = visible_directory(session, principal=principal, directory_id=directory_id)
    statement: Select[Any] = select(_GROUPS).where(_GROUPS.c.directory_id == directory.id)
    if user_id is not None:
        groups = select(_MEMBERSHIPS.c.group_id).where(_MEMBERSHIPS.c.user_id == user_id)
        statement = statement.where(_GROUPS.c.id.in_(groups))
    organization_id = directory.organization_id
    return requested_page(session, statement, key=_GROUPS.c.id, request=page).envelope(
        lambda row: group_object(row, organization_id=organization_id)
    )


def list_events(
    session: Session,
    *,
    principal: Principal,
    page: PageRequest,
    events: list[str] | None,
    organization_id: str | None,
    range_start: datetime | None,
    range_end: datetime | None,
) -> dict[str, Any]:
    """``GET /events``: the caller's event log in log order (oldest first unless ``order=desc``); ``after`` and
    ``before`` are event ids. Names the gateway never emits simply match nothing."""
    scope = principal.organization_id
    if organization_id is not None:
        if not principal.can_see(organization_id):
            raise not_found("Organization", organization_id)
        scope = organization_id
    in_scope = EventFilter(organization_id=scope).where()
    conditions = EventFilter(organization_id=scope, names=frozenset(events) if events else None).where()
    if range_start is not None:
        conditions.append(_EVENTS.c.created_at >= range_start)
    if range_end is not None:
        conditions.append(_EVENTS.c.created_at <= range_end)
    statement = select(_EVENTS).where(*conditions)

    def log_cursor(event_id: str) -> int:
        found = session.scalar(select(_EVENTS.c.cursor).where(_EVENTS.c.id == event_id, *in_scope))
        if found is None:
            field = "after" if event_id == page.after else "before"
            raise invalid(field, f"{field} must be the id of an event in the list")
        return int(found)

    return requested_page(session, statement, key=_EVENTS.c.cursor, request=page, key_of=log_cursor).envelope(
        event_object
    )


def list_webhook_endpoints(
    session: Session, *, principal: Principal, page: PageRequest, organization_id: str | None
) -> dict[str, Any]:
    """``GET /webhook_endpoints``: the caller's endpoints (an admin's: all, or one organization's), no secrets."""
    statement = select(_WEBHOOK_ENDPOINTS)
    if principal.organization_id is not None:
        statement = statement.where(_WEBHOOK_ENDPOINTS.c.organization_id == principal.organization_id)
    if organization_id is not None:
        statement = statement.where(_WEBHOOK_ENDPOINTS.c.organization_id == organization_id)
    page_ = requested_page(session, statement, key=_WEBHOOK_ENDPOINTS.c.id, request=page)
    return page_.envelope(webhook_endpoint_object)
