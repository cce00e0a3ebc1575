"""Mutations: thin wrappers over ``gateway.ops``, the same operations the CLI runs, behind the API key's scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import strawberry
from sqlalchemy.orm import Session

from gateway.graphql.context import Info
from gateway.graphql.errors import ApiError, bad_input, not_found
from gateway.graphql.queries import visible_directory
from gateway.graphql.setup_links import SetupLink, create_setup_link
from gateway.graphql.types import ApiKey, DeprovisionPolicy, Directory, DirectoryType, Organization
from gateway.ops import api_keys, directories, inputs, organizations
from gateway.store import models

T = TypeVar("T")


@strawberry.type
class DirectoryWithToken:
    directory: Directory
    endpoint: str
    bearer_token: str = strawberry.field(description="Shown once: only its hash is stored.")


@strawberry.type
class ApiKeyWithSecret:
    api_key: ApiKey
    key: str = strawberry.field(description="Shown once: only its hash is stored.")


@strawberry.type
class Deleted:
    id: strawberry.ID


async def _run(info: Info, operation: Callable[[Session], T]) -> T:
    try:
        return await info.context.database.transaction(operation)
    except inputs.NotFound as exc:
        raise ApiError(str(exc), "NOT_FOUND") from None
    except inputs.InvalidInput as exc:
        raise bad_input(str(exc)) from None


def _own_organization(info: Info, organization_id: str) -> str:
    if not info.context.can_see(organization_id):
        raise not_found("Organization", organization_id)
    return organization_id


def _issued(issued: directories.IssuedDirectory) -> DirectoryWithToken:
    return DirectoryWithToken(
        directory=Directory.from_row(issued.directory), endpoint=issued.endpoint, bearer_token=issued.bearer_token
    )


@strawberry.type
class Mutation:
    create_setup_link: SetupLink = strawberry.mutation(
        resolver=create_setup_link,
        description="A one-time, expiring link for the customer's IT admin to connect the directory (no API key).",
    )

    @strawberry.mutation
    async def create_organization(self, info: Info, name: str, domains: list[str] | None = None) -> Organization:
        info.context.require_admin()
        row = await _run(info, lambda s: organizations.create_organization(s, name=name, domains=domains or []))
        return Organization.from_row(row)

    @strawberry.mutation
    async def update_organization(
        self, info: Info, id: strawberry.ID, name: str | None = None, domains: list[str] | None = None
    ) -> Organization:
        organization_id = _own_organization(info, str(id))
        row = await _run(
            info,
            lambda s: organizations.update_organization(s, organization_id=organization_id, name=name, domains=domains),
        )
        return Organization.from_row(row)

    @strawberry.mutation
    async def delete_organization(self, info: Info, id: strawberry.ID) -> Deleted:
        info.context.require_admin()
        await _run(info, lambda s: organizations.delete_organization(s, organization_id=str(id)))
        return Deleted(id=id)

    @strawberry.mutation
    async def create_directory(
        self,
        info: Info,
        organization_id: strawberry.ID,
        name: str,
        type: DirectoryType = DirectoryType.GENERIC,
        deprovision_policy: DeprovisionPolicy = DeprovisionPolicy.KEEP_INACTIVE,
    ) -> DirectoryWithToken:
        owner = _own_organization(info, str(organization_id))
        public_url = info.context.settings.public_url
        issued = await _run(
            info,
            lambda s: directories.create_directory(
                s,
                organization_id=owner,
                name=name,
                type=type.value,
                public_url=public_url,
                deprovision_policy=deprovision_policy.value,
            ),
        )
        return _issued(issued)

    @strawberry.mutation
    async def rename_directory(self, info: Info, id: strawberry.ID, name: str) -> Directory:
        await visible_directory(info, str(id))
        row = await _run(info, lambda s: directories.rename_directory(s, directory_id=str(id), name=name))
        return Directory.from_row(row)

    @strawberry.mutation(description="A new bearer token; the old one stops working at once.")
    async def rotate_directory_token(self, info: Info, id: strawberry.ID) -> DirectoryWithToken:
        await visible_directory(info, str(id))
        public_url = info.context.settings.public_url
        issued = await _run(
            info, lambda s: directories.rotate_directory_token(s, directory_id=str(id), public_url=public_url)
        )
        return _issued(issued)

    @strawberry.mutation
    async def set_directory_deprovision_policy(
        self, info: Info, id: strawberry.ID, policy: DeprovisionPolicy
    ) -> Directory:
        await visible_directory(info, str(id))
        row = await _run(
            info, lambda s: directories.set_deprovision_policy(s, directory_id=str(id), policy=policy.value)
        )
        return Directory.from_row(row)

    @strawberry.mutation(description="Deletes the directory with its users and groups (one dsync.deleted event).")
    async def delete_directory(self, info: Info, id: strawberry.ID) -> Deleted:
        await visible_directory(info, str(id))
        await _run(info, lambda s: directories.delete_directory(s, directory_id=str(id)))
        return Deleted(id=id)

    @strawberry.mutation(description="Without organizationId (admins only) the key sees every organization.")
    async def create_api_key(self, info: Info, organization_id: strawberry.ID | None = None) -> ApiKeyWithSecret:
        if organization_id is None:
            info.context.require_admin()
            scope = None
        else:
            scope = _own_organization(info, str(organization_id))
        issued = await _run(info, lambda s: api_keys.create_api_key(s, organization_id=scope))
        return ApiKeyWithSecret(api_key=ApiKey.from_row(issued.api_key), key=issued.key)

    @strawberry.mutation
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> ApiKey:
        key_id = str(id)
        principal = info.context.principal

        def revoke(session: Session) -> models.ApiKey:
            api_keys.check_api_key_id(key_id)
            row = session.get(models.ApiKey, key_id)
            if row is None or not (principal.is_admin or row.organization_id == principal.organization_id):
                raise inputs.NotFound(f"API key {key_id} not found")
            return api_keys.revoke_api_key(session, api_key_id=key_id)

        revoked = ApiKey.from_row(await _run(info, revoke))
        info.context.hub.revoke_key(key_id)  # close its open WebSocket connections, in every process
        return revoked
