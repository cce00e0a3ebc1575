"""Admin operations on organizations, directories and API keys: one implementation for the CLI, GraphQL and tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.credentials import hash_secret, new_secret
from gateway.events import EventName, directory_payload, record_event
from gateway.ids import new_id
from gateway.models import ApiKey, DeprovisionPolicy, Directory, DirectoryType, Organization, utcnow

_TYPE_ALIASES: dict[str, DirectoryType] = {
    "jumpcloud": DirectoryType.JUMPCLOUD,
    "okta": DirectoryType.OKTA,
    "azure": DirectoryType.AZURE,
    "entra": DirectoryType.AZURE,
    "onelogin": DirectoryType.ONELOGIN,
    "generic": DirectoryType.GENERIC,
}


class AdminError(Exception):
    """Invalid input to an admin operation."""


class NotFoundError(AdminError):
    """The object does not exist (or is outside the caller's scope, which must look the same)."""


@dataclass(frozen=True)
class IssuedDirectory:
    directory: Directory
    endpoint: str
    bearer_token: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    key: str  # shown once; only its hash is stored


def parse_directory_type(value: str) -> DirectoryType:
    normalised = " ".join(value.lower().split())
    if normalised in _TYPE_ALIASES:
        return _TYPE_ALIASES[normalised]
    try:
        return DirectoryType(normalised)
    except ValueError:
        choices = ", ".join(sorted(_TYPE_ALIASES))
        raise AdminError(f"unknown directory type {value!r}; choose one of {choices}") from None


def directory_endpoint(*, public_url: str, directory_id: str) -> str:
    return f"{public_url.rstrip('/')}/scim/v2/{directory_id}"


def _clean_name(name: str, what: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise AdminError(f"{what} name must not be empty")
    if len(cleaned) > 255:
        raise AdminError(f"{what} name must be at most 255 characters")
    return cleaned


def _clean_domains(domains: list[str]) -> list[str]:
    cleaned: list[str] = []
    for domain in domains:
        value = domain.strip().lower()
        if not value or " " in value or "." not in value or value.startswith(".") or value.endswith("."):
            raise AdminError(f"invalid domain {domain!r}")
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


def create_organization(session: Session, *, name: str, domains: list[str] | None = None) -> Organization:
    organization = Organization(
        id=new_id("org"), name=_clean_name(name, "organization"), domains=_clean_domains(domains or [])
    )
    session.add(organization)
    session.flush()
    return organization


def get_organization(session: Session, *, organization_id: str) -> Organization:
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise NotFoundError(f"organization {organization_id} not found")
    return organization


def update_organization(
    session: Session, *, organization_id: str, name: str | None = None, domains: list[str] | None = None
) -> Organization:
    organization = get_organization(session, organization_id=organization_id)
    if name is not None:
        organization.name = _clean_name(name, "organization")
    if domains is not None:
        organization.domains = _clean_domains(domains)
    organization.updated_at = utcnow()
    session.flush()
    return organization


def delete_organization(session: Session, *, organization_id: str) -> None:
    """Delete an organization with its directories (each emits ``dsync.deleted``) and its API keys."""
    organization = get_organization(session, organization_id=organization_id)
    # Every directory locked before the first event (see ``delete_directory``).
    directory_ids = session.scalars(
        select(col(Directory.id))
        .where(col(Directory.organization_id) == organization.id)
        .order_by(col(Directory.id))
        .with_for_update()
    ).all()
    for directory_id in directory_ids:
        delete_directory(session, directory_id=directory_id)
    session.execute(delete(Organization).where(col(Organization.id) == organization.id))


def get_directory(session: Session, *, directory_id: str) -> Directory:
    directory = session.get(Directory, directory_id)
    if directory is None:
        raise NotFoundError(f"directory {directory_id} not found")
    return directory


def parse_deprovision_policy(value: str) -> DeprovisionPolicy:
    try:
        return DeprovisionPolicy(value.strip().lower().replace("-", "_"))
    except ValueError:
        choices = ", ".join(p.value for p in DeprovisionPolicy)
        raise AdminError(f"unknown deprovisioning policy {value!r}; choose one of {choices}") from None


def create_directory(
    session: Session,
    *,
    organization_id: str,
    name: str,
    type: str,
    public_url: str,
    deprovision_policy: str = DeprovisionPolicy.KEEP_INACTIVE.value,
) -> IssuedDirectory:
    get_organization(session, organization_id=organization_id)
    token = new_secret("dsync_scim_")
    directory = Directory(
        id=new_id("directory"),
        organization_id=organization_id,
        name=_clean_name(name, "directory"),
        type=parse_directory_type(type).value,
        deprovision_policy=parse_deprovision_policy(deprovision_policy).value,
        token_hash=hash_secret(token),
    )
    session.add(directory)
    session.flush()
    return IssuedDirectory(
        directory=directory,
        endpoint=directory_endpoint(public_url=public_url, directory_id=directory.id),
        bearer_token=token,
    )


def rotate_directory_token(session: Session, *, directory_id: str, public_url: str) -> IssuedDirectory:
    """Issue a new bearer token; the old one stops working with the commit."""
    directory = get_directory(session, directory_id=directory_id)
    token = new_secret("dsync_scim_")
    directory.token_hash = hash_secret(token)
    directory.updated_at = utcnow()
    session.flush()
    return IssuedDirectory(
        directory=directory,
        endpoint=directory_endpoint(public_url=public_url, directory_id=directory.id),
        bearer_token=token,
    )


def rename_directory(session: Session, *, directory_id: str, name: str) -> Directory:
    directory = get_directory(session, directory_id=directory_id)
    directory.name = _clean_name(name, "directory")
    directory.updated_at = utcnow()
    session.flush()
    return directory


def set_deprovision_policy(session: Session, *, directory_id: str, policy: str) -> Directory:
    """``keep_inactive``: a deactivated user stays (``state: inactive``); ``delete_inactive``: deactivation deletes."""
    directory = get_directory(session, directory_id=directory_id)
    directory.deprovision_policy = parse_deprovision_policy(policy).value
    directory.updated_at = utcnow()
    session.flush()
    return directory


def delete_directory(session: Session, *, directory_id: str) -> None:
    """Delete a directory with its users, groups and memberships; only ``dsync.deleted`` is emitted for them all."""
    # Its row is locked before the event log, in the order SCIM writes take them (``scim.auth.authenticate``):
    # the other order deadlocks with a write of this directory on PostgreSQL.
    directory = session.get(Directory, directory_id, with_for_update=True)
    if directory is None:
        raise NotFoundError(f"directory {directory_id} not found")
    payload = directory_payload(directory)
    payload["state"] = "deleting"
    record_event(
        session,
        event=EventName.DELETED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data=payload,
    )
    # Foreign keys cascade to users, groups and memberships.
    session.execute(delete(Directory).where(col(Directory.id) == directory_id))


def create_api_key(session: Session, *, organization_id: str | None = None) -> IssuedApiKey:
    if organization_id is not None:
        get_organization(session, organization_id=organization_id)
    key = new_secret("dsync_key_")
    api_key = ApiKey(id=new_id("api_key"), key_hash=hash_secret(key), organization_id=organization_id)
    session.add(api_key)
    session.flush()
    return IssuedApiKey(api_key=api_key, key=key)


def revoke_api_key(session: Session, *, api_key_id: str) -> ApiKey:
    """Revoke a key: the next request made with it is refused."""
    api_key = session.get(ApiKey, api_key_id)
    if api_key is None:
        raise NotFoundError(f"API key {api_key_id} not found")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.flush()
    return api_key


def ensure_admin_key(session: Session, *, key: str) -> None:
    """Register the bootstrap admin key from ``DSYNC_ADMIN_KEY`` (idempotent)."""
    key_hash = hash_secret(key)
    found = session.scalar(select(col(ApiKey.id)).where(col(ApiKey.key_hash) == key_hash))
    if found is None:
        session.add(ApiKey(id=new_id("api_key"), key_hash=key_hash, organization_id=None))
        session.flush()


def ensure_first_admin_key(session: Session) -> str | None:
    """First run: when no admin key is active, create one and return it (the only time it is seen); else None.

    Two servers starting together may both find none: the unique index on active first-run keys lets one insert
    commit, and the other returns None, so the key is printed once."""
    active = select(col(ApiKey.id)).where(col(ApiKey.organization_id).is_(None), col(ApiKey.revoked_at).is_(None))
    if session.scalar(active.limit(1)) is not None:
        return None
    key = new_secret("dsync_key_")
    try:
        with session.begin_nested():
            session.add(ApiKey(id=new_id("api_key"), key_hash=hash_secret(key), organization_id=None, first_run=True))
    except IntegrityError:
        return None
    return key
