"""SQLModel tables: the store. Alembic migrations in ``migrations/`` own the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import configure_mappers
from sqlmodel import Field, SQLModel

from gateway.store.email_index import install_on_create

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The store's clock: every timestamp it writes is timezone-aware UTC."""
    return datetime.now(UTC)


def _timestamp(*, index: bool = False) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=index))


def _version() -> Any:
    # Bumped on every change of the row: the SCIM resource's ETag (``meta.version``).
    return Field(default=1, sa_column=Column(Integer, nullable=False, default=1))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSONType, nullable=False))


def _fk(target: str, *, nullable: bool = False, index: bool = True) -> Any:
    return Field(
        sa_column=Column(String, ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=index),
        default=None if nullable else ...,
    )


class DirectoryType(StrEnum):
    """The identity provider a directory is linked to (WorkOS's type strings): it selects that IdP's SCIM quirks."""

    JUMPCLOUD = "jumpcloud scim v2.0"
    OKTA = "okta scim v2.0"
    AZURE = "azure scim v2.0"
    ONELOGIN = "onelogin scim v2.0"
    GENERIC = "generic scim v2.0"


class DirectoryState(StrEnum):
    """Whether the IdP has reached the directory yet: its first authenticated SCIM request links it."""

    UNLINKED = "unlinked"
    LINKED = "linked"


class DeprovisionPolicy(StrEnum):
    """What a directory does with a user the IdP deactivates: keep it as inactive, or delete it."""

    KEEP_INACTIVE = "keep_inactive"
    DELETE_INACTIVE = "delete_inactive"


class UserState(StrEnum):
    """A directory user's state as the API shows it (SCIM ``active``)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class Organization(SQLModel, table=True):
    """A tenant: it owns directories and organization-scoped API keys."""

    __tablename__ = "organizations"

    id: str = Field(primary_key=True)
    name: str
    domains: list[str] = _json(list)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Directory(SQLModel, table=True):
    """One SCIM endpoint that an identity provider provisions users and groups into."""

    __tablename__ = "directories"

    id: str = Field(primary_key=True)
    organization_id: str = _fk("organizations.id")
    name: str
    type: str
    state: str = Field(default=DirectoryState.UNLINKED.value)
    deprovision_policy: str = Field(default=DeprovisionPolicy.KEEP_INACTIVE.value)
    # SHA-256 of the bearer token: tokens carry 256 random bits, so a fast hash is enough and lookups stay cheap.
    token_hash: str
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    # When a request last came to this directory's URL with a wrong token (kept, never answered to the caller).
    last_rejected_token_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # Bumped whenever the directory's role or attribute rules change: a process's cached rules are stale then.
    rules_version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))


# PostgreSQL: the share of each page of ``directory_users`` and ``directory_groups`` that inserts fill, leaving room
# for updated versions of their rows (migration 0011). A JumpCloud-shaped user row is ~1.3 kB, a page 8 kB.
UPDATED_TABLES_FILLFACTOR = 75


class DirectoryUser(SQLModel, table=True):
    """A user as the IdP provisioned it, with the columns the API filters and shows taken out of the SCIM resource."""

    __tablename__ = "directory_users"
    __table_args__ = (
        # userName is caseExact=false (RFC 7643 §4.1.1): uniqueness ignores case.
        Index("uq_directory_users_user_name", "directory_id", func.lower(Column("user_name")), unique=True),
        # externalId is not unique (RFC 7643 §3.1): this index serves `externalId eq …` lookups.
        Index("ix_directory_users_idp_id", "directory_id", "idp_id"),
        Index("ix_directory_users_directory_id_id", "directory_id", "id"),
        Index("ix_directory_users_directory_id_state", "directory_id", "state"),
        Index("ix_directory_users_directory_id_role", "directory_id", "role"),
        {"postgresql_with": {"fillfactor": UPDATED_TABLES_FILLFACTOR}},
    )

    id: str = Field(primary_key=True)
    directory_id: str = _fk("directories.id", index=False)
    idp_id: str | None = None
    user_name: str
    email: str | None = None
    emails: list[dict[str, Any]] = _json(list)
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    job_title: str | None = None
    state: str = Field(default=UserState.ACTIVE.value)
    # Computed from the directory's rules (gateway.ops.rule_evaluation): the highest-priority role's slug, and
    # every role the user's groups map to (else the organization's default role).
    role: str | None = None
    roles: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False, server_default=text("'[]'"))
    )
    custom_attributes: dict[str, Any] = _json(dict)
    # The SCIM resource as the IdP last described it (without id, meta, password and the computed groups).
    raw_attributes: dict[str, Any] = _json(dict)
    version: int = _version()
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class DirectoryUserEmail(SQLModel, table=True):
    """One row per distinct address (lowercased) in a user's ``emails``: the index behind ``emails eq "…"``
    filters, which would otherwise walk every user's JSON. Triggers in the database keep it
    (``gateway.store.email_index``), so every write path, ORM, Core or SQL, keeps it current."""

    __tablename__ = "directory_user_emails"
    __table_args__ = (Index("ix_directory_user_emails_directory_value", "directory_id", "value"),)

    user_id: str = Field(
        sa_column=Column(String, ForeignKey("directory_users.id", ondelete="CASCADE"), primary_key=True)
    )
    value: str = Field(sa_column=Column(String, primary_key=True))
    directory_id: str = Field(sa_column=Column(String, nullable=False))


class DirectoryGroup(SQLModel, table=True):
    """A group as the IdP provisioned it; its members are ``GroupMembership`` rows."""

    __tablename__ = "directory_groups"
    __table_args__ = (
        Index("ix_directory_groups_external_id", "directory_id", "external_id"),
        Index("ix_directory_groups_directory_id_id", "directory_id", "id"),
        {"postgresql_with": {"fillfactor": UPDATED_TABLES_FILLFACTOR}},
    )

    id: str = Field(primary_key=True)
    directory_id: str = _fk("directories.id", index=False)
    # The IdP's identity for the group: externalId when sent, else displayName.
    idp_id: str
    external_id: str | None = None
    name: str
    raw_attributes: dict[str, Any] = _json(dict)
    version: int = _version()
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class GroupMembership(SQLModel, table=True):
    """One row per (group, user) edge, so adding or removing a member is O(1) whatever the group's size."""

    __tablename__ = "group_memberships"
    __table_args__ = (Index("ix_group_memberships_user_id", "user_id"),)

    group_id: str = Field(
        sa_column=Column(String, ForeignKey("directory_groups.id", ondelete="CASCADE"), primary_key=True)
    )
    user_id: str = Field(
        sa_column=Column(String, ForeignKey("directory_users.id", ondelete="CASCADE"), primary_key=True)
    )
    directory_id: str = _fk("directories.id")
    # `members[].display` as the client set it when adding the member (immutable, RFC 7643 §2.4); None: the
    # user's own name is shown.
    display: str | None = None
    created_at: datetime = _timestamp()


class Event(SQLModel, table=True):
    """The durable change log. ``cursor`` orders it; ``id`` is the public, WorkOS-style identifier."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_organization_cursor", "organization_id", "cursor"),
        Index("ix_events_directory_cursor", "directory_id", "cursor"),
    )

    cursor: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    event: str = Field(index=True)
    organization_id: str
    # No foreign key: a directory's events (dsync.deleted above all) outlive it.
    directory_id: str | None = None
    data: dict[str, Any] = _json(dict)
    created_at: datetime = _timestamp()


_ACTIVE_FIRST_RUN = text("first_run AND revoked_at IS NULL")


class ApiKey(SQLModel, table=True):
    """A key for the GraphQL API and the dashboard; only its hash is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # At most one active first-run key: of two servers starting together on an empty database, one creates it.
        Index(
            "uq_api_keys_first_run",
            "first_run",
            unique=True,
            sqlite_where=_ACTIVE_FIRST_RUN,
            postgresql_where=_ACTIVE_FIRST_RUN,
        ),
    )

    id: str = Field(primary_key=True)
    key_hash: str = Field(sa_column=Column(String, unique=True, nullable=False))
    # None: an admin key that sees every organization.
    organization_id: str | None = _fk("organizations.id", nullable=True)
    # Created (and printed once) by `dsync serve` because the database held no active admin key.
    first_run: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    created_at: datetime = _timestamp()
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # Updated at most once a minute per key (gateway.graphql.context), so reads do not turn into writes.
    last_used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class ServerSetting(SQLModel, table=True):
    """A value the server keeps for the processes that share its database (e.g. the public URL it announced)."""

    __tablename__ = "server_settings"

    name: str = Field(primary_key=True)
    value: str
    updated_at: datetime = _timestamp()


class ScimRequest(SQLModel, table=True):
    """One SCIM request a directory received: what it asked and how it was answered (no bodies, no tokens).
    Only the last ``gateway.observe.request_log.KEEP`` of each directory are kept."""

    __tablename__ = "scim_requests"
    __table_args__ = (Index("ix_scim_requests_directory_id_id", "directory_id", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    directory_id: str = _fk("directories.id", index=False)
    at: datetime = _timestamp()
    method: str
    path: str
    filter: str | None = None
    status: int
    scim_type: str | None = None
    detail: str | None = None
    duration_ms: float = Field(sa_column=Column(Float, nullable=False))
    resource_id: str | None = None


class ScimErrorCount(SQLModel, table=True):
    """Error answers (status 400 and up) a directory gave in one minute: its health counts "errors in the last hour"
    from these, whatever the request log kept. Rows older than an hour are pruned."""

    __tablename__ = "scim_error_counts"

    directory_id: str = Field(
        sa_column=Column(String, ForeignKey("directories.id", ondelete="CASCADE"), primary_key=True)
    )
    minute: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    count: int = Field(sa_column=Column(Integer, nullable=False))


class SetupLink(SQLModel, table=True):
    """A one-time, expiring link that lets a customer's IT admin set up one directory without an API key."""

    __tablename__ = "setup_links"

    id: str = Field(primary_key=True)
    directory_id: str = _fk("directories.id")
    token_hash: str = Field(sa_column=Column(String, unique=True, nullable=False))
    created_at: datetime = _timestamp()
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Set when the IT admin revealed the directory's (new) bearer token: the link is used up.
    revealed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class WebhookEndpointState(StrEnum):
    """Whether an endpoint's deliveries go on (``active``) or gave up after the retry window (``failed``)."""

    ACTIVE = "active"
    FAILED = "failed"


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives the event log as signed WorkOS-style webhooks, in cursor order, from its own position.

    ``secret`` signs every delivery (HMAC-SHA256), so unlike tokens it is kept as is: a secret at rest, as WorkOS
    keeps its webhook secrets. The lease columns let one of several instances deliver an endpoint at a time."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True)
    # None: an admin's endpoint for every organization's events.
    organization_id: str | None = _fk("organizations.id", nullable=True)
    url: str
    # Event names to deliver; empty: all of them.
    events: list[str] = _json(list)
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    secret: str
    # Created with an admin key: may target loopback and private networks.
    allow_private: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    state: str = Field(default=WebhookEndpointState.ACTIVE.value)
    # The cursor of the last event delivered (or skipped by the filter); the next delivery is the first after it.
    cursor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    lease_owner: str | None = None
    lease_expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # Failed attempts at the event after ``cursor`` since it last succeeded, and when the first of them was made.
    failed_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    failing_since: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    last_error: str | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt to deliver one event to one endpoint; a bounded history is kept per endpoint."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_id_id", "endpoint_id", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    endpoint_id: str = _fk("webhook_endpoints.id", index=False)
    event_id: str
    event_cursor: int = Field(sa_column=Column(BigInteger, nullable=False))
    # None: no HTTP answer (connection refused, timeout, refused address).
    status_code: int | None = None
    duration_ms: float
    error: str | None = None
    # When the event will be tried again after this failure (None: it succeeded, or the endpoint gave up).
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = _timestamp()


class Role(SQLModel, table=True):
    """A role an organization's applications know (``admin``, ``member``…); at most one is its default."""

    __tablename__ = "roles"
    __table_args__ = (Index("uq_roles_organization_slug", "organization_id", "slug", unique=True),)

    id: str = Field(primary_key=True)
    organization_id: str = _fk("organizations.id", index=False)
    slug: str
    name: str
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class RoleMapping(SQLModel, table=True):
    """One directory group's members get one role; of several, the highest ``priority`` is the user's ``role``."""

    __tablename__ = "role_mappings"
    __table_args__ = (Index("uq_role_mappings_group_id", "group_id", unique=True),)

    id: str = Field(primary_key=True)
    directory_id: str = _fk("directories.id")
    # Deleting the group deletes its mapping (its members' roles are recomputed first).
    group_id: str = _fk("directory_groups.id", index=False)
    role_id: str = _fk("roles.id")
    priority: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class AttributeDefinition(SQLModel, table=True):
    """A custom attribute an organization defines beyond the standard set (``gateway.ops.custom_attributes``)."""

    __tablename__ = "attribute_definitions"
    __table_args__ = (Index("uq_attribute_definitions_organization_name", "organization_id", "name", unique=True),)

    id: str = Field(primary_key=True)
    organization_id: str = _fk("organizations.id", index=False)
    name: str
    created_at: datetime = _timestamp()


class AttributeMapping(SQLModel, table=True):
    """Where a directory reads one custom attribute from: a SCIM attribute path, overriding its provider's default
    (``path`` None: not read at all, even if the provider has a default)."""

    __tablename__ = "attribute_mappings"
    __table_args__ = (Index("uq_attribute_mappings_directory_name", "directory_id", "name", unique=True),)

    id: str = Field(primary_key=True)
    directory_id: str = _fk("directories.id", index=False)
    name: str
    path: str | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class RuleEvaluation(SQLModel, table=True):
    """A pending background re-evaluation after a rule changed: the members of one group (``group_id``), or every
    user of the directory (None). ``after_user_id`` is its progress, so a restart resumes where it stopped."""

    __tablename__ = "rule_evaluations"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    directory_id: str = _fk("directories.id")
    # No foreign key: the evaluation outlives a group deleted meanwhile (its members were recomputed then).
    group_id: str | None = None
    after_user_id: str = Field(default="", sa_column=Column(String, nullable=False, server_default=text("''")))
    created_at: datetime = _timestamp()


install_on_create(SQLModel.metadata.tables[DirectoryUserEmail.__tablename__])

# Configure the mappers now, not on first query: read-only snapshots built with ``model_construct`` (the hot SCIM
# paths use them) read their attributes through the instrumented descriptors, which need configured mappers.
configure_mappers()
