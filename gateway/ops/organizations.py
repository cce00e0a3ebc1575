"""Organizations: the tenants that own directories and organization-scoped API keys."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops.directories import delete_directory
from gateway.ops.inputs import InvalidInput, clean_name, get_or_not_found
from gateway.store.ids import new_id
from gateway.store.models import Directory, Organization, utcnow


def _clean_domains(domains: list[str]) -> list[str]:
    cleaned: list[str] = []
    for domain in domains:
        value = domain.strip().lower()
        if not value or " " in value or "." not in value or value.startswith(".") or value.endswith("."):
            raise InvalidInput(f"invalid domain {domain!r}")
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


def create_organization(session: Session, *, name: str, domains: list[str] | None = None) -> Organization:
    """A new tenant, to create directories and organization API keys in."""
    organization = Organization(
        id=new_id("org"), name=clean_name(name, "organization"), domains=_clean_domains(domains or [])
    )
    session.add(organization)
    session.flush()
    return organization


def get_organization(session: Session, *, organization_id: str) -> Organization:
    """The organization an operator named, or ``NotFound``."""
    return get_or_not_found(session, Organization, organization_id, "organization")


def list_organizations(session: Session) -> list[Organization]:
    """Every organization, oldest first (ids sort by creation time)."""
    return list(session.scalars(select(Organization).order_by(col(Organization.id))).all())


def update_organization(
    session: Session, *, organization_id: str, name: str | None = None, domains: list[str] | None = None
) -> Organization:
    """Rename an organization and/or replace its domains (``None`` leaves a field as it is)."""
    organization = get_organization(session, organization_id=organization_id)
    if name is not None:
        organization.name = clean_name(name, "organization")
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
