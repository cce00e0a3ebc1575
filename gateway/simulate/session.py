"""One provisioning session as an identity provider plays it, planned as a list of steps.

The plan is made up front (so progress is exact); each step builds its request only when it runs, from the ids the
server has answered so far, and is skipped when something it needs was never created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.simulate.providers import Json, Provider, Request
from gateway.simulate.roster import Person, Roster, Team

Kind = Literal["users", "groups", "probes"]


@dataclass
class State:
    """The ids the server answered: person index -> user id, team index -> group id, and Test Connection's own."""

    users: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)
    group_names: dict[int, str] = field(default_factory=dict)  # after a rename

    def ids(self, kind: Kind) -> dict[Any, str]:
        ids: dict[Any, str] = self.users if kind == "users" else self.groups if kind == "groups" else self.probes
        return ids


@dataclass(frozen=True)
class Step:
    phase: str
    build: Callable[[State], Request | None]
    remember: Callable[[State, Json], None] | None = None
    # A create answered 409 (the resource exists, e.g. from an earlier run with the same seed): look it up by this
    # request and link to it, as Okta's create-or-link flow does.
    resolve: Step | None = None


def plan(*, provider: Provider, roster: Roster) -> list[Step]:
    return [
        *_connection_test(provider, roster),
        *_users(provider, roster),
        *_groups(provider, roster),
        *_memberships(provider, roster),
        *_updates(provider, roster),
        *_deactivation(provider, roster),
        *_removal(provider, roster),
    ]


def _connection_test(provider: Provider, roster: Roster) -> Iterator[Step]:
    phase = "test connection"
    for request in provider.connection_test(roster):
        yield Step(phase, _const(request))
    if provider.creates_test_objects:
        yield Step(
            phase, _const(Request("POST", "Users", body=provider.user_body(roster.test_person))), _probe("Users")
        )
        yield Step(
            phase, _const(Request("POST", "Groups", body=provider.group_body(roster.test_team))), _probe("Groups")
        )
        yield Step(phase, _on("probes", "Users", "DELETE", "Users"))
        yield Step(phase, _on("probes", "Groups", "DELETE", "Groups"))


def _users(provider: Provider, roster: Roster) -> Iterator[Step]:
    for person in roster.people:
        lookup = Request("GET", "Users", provider.user_lookup(person))
        yield Step("users", _const(lookup), _link("users", person.index))
        yield _create_step("users", person.index, "Users", provider.user_body(person))
    if provider.link_manager is not None:
        for person, manager in zip(roster.people, roster.managers, strict=True):
            if manager is not None:
                yield Step("managers", _link_manager(person.index, manager, provider.link_manager))


def _groups(provider: Provider, roster: Roster) -> Iterator[Step]:
    for team in roster.teams:
        lookup = Request("GET", "Groups", provider.group_lookup(team))
        yield Step("groups", _const(lookup), _link("groups", team.index))
        yield _create_step("groups", team.index, "Groups", provider.group_body(team))


def _memberships(provider: Provider, roster: Roster) -> Iterator[Step]:
    size = provider.members_per_request
    for team_index, people in roster.memberships:
        team = roster.teams[team_index]
        for start in range(0, len(people), size):
            chunk = [roster.people[i] for i in people[start : start + size]]
            yield Step("memberships", _add_members(provider, team, chunk))


def _updates(provider: Provider, roster: Roster) -> Iterator[Step]:
    for person in roster.people:
        after = roster.updated(person)
        if after is None:
            continue
        if provider.reads_before_update:
            yield Step("updates", _on("users", person.index, "GET", "Users"))
        yield Step("updates", _update(provider, person, after))
    if roster.teams:
        team = roster.teams[0]
        new_name = roster.renamed(team)
        rename = _on("groups", team.index, "PATCH", "Groups", lambda gid: provider.rename_group(gid, new_name))
        yield Step("updates", rename, _renamed(team.index, new_name))


def _deactivation(provider: Provider, roster: Roster) -> Iterator[Step]:
    deactivate = provider.deactivate
    yield Step("deactivation", _on("users", roster.deactivated.index, "PATCH", "Users", lambda _id: deactivate))


def _removal(provider: Provider, roster: Roster) -> Iterator[Step]:
    if roster.unassigned is not None:
        yield Step("removal", _remove_member(provider, *roster.unassigned))
    person = roster.removed
    if person is not None:
        deactivate = provider.deactivate
        for action in provider.removal:
            if action == "deactivate":
                yield Step("removal", _on("users", person.index, "PATCH", "Users", lambda _id: deactivate))
            else:
                yield Step("removal", _on("users", person.index, "DELETE", "Users"))
    if provider.unpushes_group and len(roster.teams) > 1:
        yield Step("removal", _on("groups", roster.teams[-1].index, "DELETE", "Groups"))


# Request builders and response handlers. Each is made by a function, so it captures its own arguments.

Build = Callable[[State], Request | None]
Remember = Callable[[State, Json], None]


def _const(request: Request) -> Build:
    return lambda _state: request


def _create_step(kind: Kind, index: int, resource: str, body: Json) -> Step:
    """POST, unless the lookup before it found the resource; on a conflict, find it by its externalId and link."""
    phase = kind
    attribute = next(a for a in ("externalId", "userName", "displayName") if a in body)
    lookup = Request("GET", resource, {"filter": f'{attribute} eq "{body[attribute]}"'})
    return Step(
        phase,
        lambda state: None if index in state.ids(kind) else Request("POST", resource, body=body),
        _keep(kind, index),
        resolve=Step(phase, _const(lookup), _link(kind, index)),
    )


def _on(kind: Kind, key: int | str, method: str, resource: str, body: Callable[[str], Json] | None = None) -> Build:
    """A request on one resource the session knows the id of (skipped if it never got one)."""

    def build(state: State) -> Request | None:
        resource_id = state.ids(kind).get(key)
        if resource_id is None:
            return None
        return Request(method, f"{resource}/{resource_id}", body=body(resource_id) if body else None)

    return build


def _link_manager(index: int, manager: int, body: Callable[[str], Json]) -> Build:
    def build(state: State) -> Request | None:
        user_id, manager_id = state.users.get(index), state.users.get(manager)
        if user_id is None or manager_id is None:
            return None
        return Request("PATCH", f"Users/{user_id}", body=body(manager_id))

    return build


def _add_members(provider: Provider, team: Team, chunk: list[Person]) -> Build:
    def build(state: State) -> Request | None:
        gid = state.groups.get(team.index)
        members = [(state.users[p.index], p) for p in chunk if p.index in state.users]
        if gid is None or not members:
            return None
        return Request("PATCH", f"Groups/{gid}", body=provider.add_members(gid, team.name, members))

    return build


def _update(provider: Provider, before: Person, after: Person) -> Build:
    def build(state: State) -> Request | None:
        user_id = state.users.get(before.index)
        if user_id is None:
            return None
        method, body = provider.update_user(user_id, before, after)
        return Request(method, f"Users/{user_id}", body=body)

    return build


def _remove_member(provider: Provider, team: Team, member: Person) -> Build:
    def build(state: State) -> Request | None:
        gid, user_id = state.groups.get(team.index), state.users.get(member.index)
        if gid is None or user_id is None:
            return None
        name = state.group_names.get(team.index, team.name)
        return Request("PATCH", f"Groups/{gid}", body=provider.remove_member(gid, name, user_id))

    return build


def _keep(kind: Kind, key: int | str) -> Remember:
    def remember(state: State, body: Json) -> None:
        state.ids(kind)[key] = str(body["id"])

    return remember


def _probe(resource: str) -> Remember:
    return _keep("probes", resource)


def _link(kind: Kind, index: int) -> Remember:
    """An identity provider whose lookup finds the resource links to it instead of creating it again."""

    def remember(state: State, listing: Json) -> None:
        resources = listing.get("Resources") or []
        if listing.get("totalResults") and resources and isinstance(resources[0], dict) and "id" in resources[0]:
            state.ids(kind)[index] = str(resources[0]["id"])

    return remember


def _renamed(index: int, name: str) -> Remember:
    return lambda state, _body: state.group_names.__setitem__(index, name)
