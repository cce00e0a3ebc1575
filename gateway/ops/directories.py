"""Directories: each one SCIM endpoint with its bearer token, linked to an identity provider."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, directory_payload
from gateway.ops.inputs import InvalidInput, clean_name, get_or_not_found
from gateway.store.credentials import hash_secret, new_secret
from gateway.store.ids import new_id
from gateway.store.models import DeprovisionPolicy, Directory, DirectoryType, Organization, utcnow

_TYPE_ALIASES: dict[str, DirectoryType] = {
    "jumpcloud": DirectoryType.JUMPCLOUD,
    "okta": DirectoryType.OKTA,
    "azure": DirectoryType.AZURE,
    "entra": DirectoryType.AZURE,
    "onelogin": DirectoryType.ONELOGIN,
    "generic": DirectoryType.GENERIC,
}


@dataclass(frozen=True)
class IssuedDirectory:
    """A directory with its SCIM endpoint and a new bearer token: what the operator pastes into the IdP, once."""

    directory: Directory
    endpoint: str
    bearer_token: str  # shown once; only its hash is stored


def parse_directory_type(value: str) -> DirectoryType:
    """The IdP an operator named, by short alias (``jumpcloud``, ``entra``…) or by WorkOS type string."""
    normalised = " ".join(value.lower().split())
    if normalised in _TYPE_ALIASES:
        return _TYPE_ALIASES[normalised]
    try:
        return DirectoryType(normalised)
    except ValueError:
        choices = ", ".join(sorted(_TYPE_ALIASES))
        raise InvalidInput(f"unknown directory type {value!r}; choose one of {choices}") from None


def directory_endpoint(*, public_url: str, directory_id: str) -> str:
    """The SCIM base URL the IdP is configured with, under the gateway's public URL."""
    return f"{public_url.rstrip('/')}/scim/v2/{directory_id}"


def get_directory(session: Session, *, directory_id: str) -> Directory:
    """The directory an operator named, or ``NotFound``."""
    return get_or_not_found(session, Directory, directory_id, "directory")


def list_directories(session: Session, *, organization_id: str | None = None) -> list[Directory]:
    """Every directory (of one organization, when given; ``NotFound`` if it does not exist), oldest first."""
    statement = select(Directory).order_by(col(Directory.id))
    if organization_id is not None:
        get_or_not_found(session, Organization, organization_id, "organization")
        statement = statement.where(col(Directory.organization_id) == organization_id)
    return list(session.scalars(statement).all())


def parse_deprovision_policy(value: str) -> DeprovisionPolicy:
    """The deprovisioning policy an operator named (``keep_inactive`` or ``delete_inactive``; ``-`` works too)."""
    try:
        return DeprovisionPolicy(value.strip().lower().replace("-", "_"))
    except ValueError:
        choices = ", ".join(p.value for p in DeprovisionPolicy)
        raise InvalidInput(f"unknown deprovisioning policy {value!r}; choose one of {choices}") from None


def create_directory(
    session: Session,
    *,
    organization_id: str,
    name: str,
    type: str,
    public_url: str,
    deprovision_policy: str = DeprovisionPolicy.KEEP_INACTIVE.value,
) -> IssuedDirectory:
    """A new, unlinked directory in an organization, with the endpoint and token to configure the IdP with."""
    get_or_not_found(session, Organization, organization_id, "organization")
    token, token_hash = _new_token()
    directory = Directory(
        id=new_id("directory"),
        organization_id=organization_id,
        name=clean_name(name, "directory"),
        type=parse_directory_type(type).value,
        deprovision_policy=parse_deprovision_policy(deprovision_policy).value,
        token_hash=token_hash,
    )
    session.add(directory)
    session.flush()
    return _issued(directory, token, public_url=public_url)


def rotate_directory_token(session: Session, *, directory_id: str, public_url: str) -> IssuedDirectory:
    """Issue a new bearer token; the old one stops working with the commit."""
    directory = get_directory(session, directory_id=directory_id)
    token, directory.token_hash = _new_token()
    directory.updated_at = utcnow()
    session.flush()
    return _issued(directory, token, public_url=public_url)


def _new_token() -> tuple[str, str]:
    """A new SCIM bearer token and the hash the directory keeps of it."""
    token = new_secret("dsync_scim_")
    return token, hash_secret(token)


def _issued(directory: Directory, token: str, *, public_url: str) -> IssuedDirectory:
    return IssuedDirectory(
        directory=directory,
        endpoint=directory_endpoint(public_url=public_url, directory_id=directory.id),
        bearer_token=token,
    )


def rename_directory(session: Session, *, directory_id: str, name: str) -> Directory:
    """Change the name operators and the API show for a directory."""
    directory = get_directory(session, directory_id=directory_id)
    directory.name = clean_name(name, "directory")
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
    # Its row is locked before the event log, in the order SCIM writes take them (``scim.backend.auth.authenticate``):
    # the other order deadlocks with a write of this directory on PostgreSQL.
    directory = get_or_not_found(session, Directory, directory_id, "directory", lock=True)
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
