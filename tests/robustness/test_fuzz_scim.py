"""Fuzzing SCIM: generated and mutated bodies, PATCH operations, filters, paths, query parameters and raw bytes,
sent through the ASGI app. No answer is a 5xx, every error is in SCIM's error shape, a refused write changes
nothing, and afterwards the store's invariants (``invariants.py``) hold."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.ops import directories
from gateway.store.models import DirectoryGroup, DirectoryUser, Event, GroupMembership
from tests.conftest import DirectoryFixture
from tests.robustness import scim_inputs as inputs
from tests.robustness.fuzzing import TALLY, LiveApp, fuzz_settings
from tests.robustness.invariants import ERROR_SCHEMA, check_invariants

# RFC 7644 §3.12's scimType values, written out here on purpose: an oracle independent of scim.protocol.errors.ScimType.
SCIM_TYPES = {
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
}


def assert_scim_answer(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url}"
    # 501 is the documented answer to a search across resource types (RFC 7644 §3.4.3 makes it optional).
    if response.status_code != 501 or not re.search(r"/scim/v2/[^/]+/\.search$", response.request.url.path):
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:1000]}"
    if response.status_code in (204, 304):
        return
    assert response.headers.get("content-type", "").startswith("application/scim+json"), where
    body = response.json()
    assert isinstance(body, dict), where
    if response.status_code >= 400:
        assert body.get("schemas") == [ERROR_SCHEMA], f"{where}: {body}"
        assert body.get("status") == str(response.status_code), f"{where}: {body}"
        assert isinstance(body.get("detail"), str) and body["detail"], f"{where}: {body}"
        assert body.get("scimType", "invalidValue") in SCIM_TYPES, f"{where}: {body}"
    elif response.status_code == 201:
        assert isinstance(body.get("id"), str) and response.headers.get("location"), where


def _fingerprint(session: Session, directory_id: str) -> tuple[Any, ...]:
    """Everything a write to the directory could change: rows with their versions, edges, the last event."""
    return (
        sorted(
            session.execute(
                select(col(DirectoryUser.id), col(DirectoryUser.version)).where(
                    col(DirectoryUser.directory_id) == directory_id
                )
            ).all()
        ),
        sorted(
            session.execute(
                select(col(DirectoryGroup.id), col(DirectoryGroup.version)).where(
                    col(DirectoryGroup.directory_id) == directory_id
                )
            ).all()
        ),
        sorted(
            session.execute(
                select(col(GroupMembership.group_id), col(GroupMembership.user_id)).where(
                    col(GroupMembership.directory_id) == directory_id
                )
            ).all()
        ),
        session.scalar(select(func.max(Event.cursor)).where(col(Event.directory_id) == directory_id)),
    )


def send(
    live: LiveApp,
    directory: DirectoryFixture,
    draw: inputs.Draw,
    method: str,
    path: str,
    *,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one fuzz case (sometimes with an odd media type or an ``If-Match``) and check the answer; a refused
    write must leave the directory exactly as it was."""
    headers = dict(directory.headers)
    if content is not None:
        headers["Content-Type"] = "application/scim+json"
        if inputs.one_in(draw, 8):
            headers["Content-Type"] = draw(st.sampled_from(inputs.CONTENT_TYPES))
        if inputs.one_in(draw, 6):
            headers["If-Match"] = draw(st.sampled_from(['W/"1"', 'W/"2"', "*", '"1"', "garbage", ""]))
    TALLY.cases += 1
    url = directory.path + quote(path, safe="/")  # httpx refuses control characters in a URL
    request = live.client.request(method, url, content=content, params=params, headers=headers)
    if method == "GET":
        response = live.run(request)
        assert_scim_answer(response)
        return response

    def fingerprint() -> tuple[Any, ...]:
        return live.run(live.database.query(lambda session: _fingerprint(session, directory.id)))

    before = fingerprint()
    response = live.run(request)
    assert_scim_answer(response)
    if response.status_code >= 400:
        assert fingerprint() == before, f"{method} {path} failed ({response.text[:300]}) but wrote"
    return response


def _body(draw: inputs.Draw, document: Any) -> bytes:
    """JSON as IdPs encode it, mostly; sometimes with raw non-ASCII or a UTF-8 BOM."""
    if inputs.one_in(draw, 12):
        return b"\xef\xbb\xbf" + json.dumps(document).encode()
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


class ScimSession(RuleBasedStateMachine):
    """One directory per example, under a sequence of mixed valid and invalid SCIM requests."""

    live: ClassVar[LiveApp]
    other: ClassVar[DirectoryFixture]  # another tenant: its ids are tried here, its token is not ours
    other_ids: ClassVar[list[str]]

    def __init__(self) -> None:
        super().__init__()
        self.directory: DirectoryFixture | None = None
        self.users: list[str] = []
        self.groups: list[str] = []
        self.names: list[str] = []

    @initialize(type=st.sampled_from(["jumpcloud", "okta", "azure", "onelogin", "generic"]), delete=st.booleans())
    def create_directory(self, type: str, delete: bool) -> None:
        self.directory = directory = self.live.directory(type=type)
        if delete:
            self.live.run(
                self.live.database.transaction(
                    lambda s: directories.set_deprovision_policy(s, directory_id=directory.id, policy="delete_inactive")
                )
            )
        # The first authorized request links the directory in a commit of its own, whatever the request.
        self.live.run(self.live.client.get(f"{directory.path}/Users", headers=directory.headers))

    # -- sending ------------------------------------------------------------------------------------------------

    def send(
        self,
        data: st.DataObject,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        assert self.directory is not None
        return send(self.live, self.directory, data.draw, method, path, content=content, params=params)

    def created(self, response: httpx.Response, into: list[str]) -> None:
        if response.status_code == 201:
            into.append(response.json()["id"])

    @property
    def known_users(self) -> list[str]:
        return self.users + self.other_ids

    # -- rules ----------------------------------------------------------------------------------------------------

    @rule(data=st.data())
    def create_user(self, data: st.DataObject) -> None:
        body = data.draw(inputs.user_bodies())
        self.created(self.send(data, "POST", "/Users", content=_body(data.draw, body)), self.users)
        if isinstance(body.get("userName"), str):
            self.names.append(body["userName"])

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def replace_user(self, data: st.DataObject) -> None:
        user_id = data.draw(inputs.ids_from(self.users))
        body = _body(data.draw, data.draw(inputs.user_bodies()))
        self.send(data, "PUT", f"/Users/{user_id}", content=body)

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def patch_user(self, data: st.DataObject) -> None:
        user_id = data.draw(inputs.ids_from(self.users))
        body = data.draw(inputs.patch_bodies("User", self.known_users + self.names))
        self.send(data, "PATCH", f"/Users/{user_id}", content=_body(data.draw, body))

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def delete_user(self, data: st.DataObject) -> None:
        self.send(data, "DELETE", f"/Users/{data.draw(inputs.ids_from(self.users))}")

    @rule(data=st.data())
    def create_group(self, data: st.DataObject) -> None:
        body = data.draw(inputs.group_bodies(self.known_users))
        self.created(self.send(data, "POST", "/Groups", content=_body(data.draw, body)), self.groups)

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def replace_group(self, data: st.DataObject) -> None:
        group_id = data.draw(inputs.ids_from(self.groups))
        body = _body(data.draw, data.draw(inputs.group_bodies(self.known_users)))
        self.send(data, "PUT", f"/Groups/{group_id}", content=body)

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def patch_group(self, data: st.DataObject) -> None:
        group_id = data.draw(inputs.ids_from(self.groups))
        body = data.draw(inputs.patch_bodies("Group", self.known_users))
        self.send(data, "PATCH", f"/Groups/{group_id}", content=_body(data.draw, body))

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def delete_group(self, data: st.DataObject) -> None:
        self.send(data, "DELETE", f"/Groups/{data.draw(inputs.ids_from(self.groups))}")

    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        resource = data.draw(st.sampled_from(["User", "Group"]))
        params = data.draw(inputs.query_params(resource, self.users + self.groups + self.names))
        if data.draw(st.booleans()):
            self.send(data, "GET", f"/{resource}s", params=params)
        else:
            self.send(data, "POST", f"/{resource}s/.search", content=_body(data.draw, params))

    @rule(data=st.data())
    def raw(self, data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(["POST", "PUT", "PATCH"]))
        target = data.draw(
            st.sampled_from(["/Users", "/Groups", "/Users/.search", "/.search", "/Bulk"])
            | inputs.ids_from(self.users).map(lambda i: f"/Users/{i}")
            | inputs.ids_from(self.groups).map(lambda i: f"/Groups/{i}")
        )
        self.send(data, method, target, content=data.draw(inputs.raw_bodies()))

    def teardown(self) -> None:
        if self.directory is None:
            return
        tokens = {self.directory.id: self.directory.token}
        self.live.run(
            check_invariants(
                self.live.database, self.live.client, tokens=tokens, directory_ids=[self.directory.id, self.other.id]
            )
        )
        TALLY.checks += 1


def _other_tenant(live: LiveApp) -> tuple[DirectoryFixture, list[str]]:
    other = live.directory(name="Other tenant")
    ids = []
    for body in ({"userName": "ada@acme.test"}, {"userName": "grace@acme.test", "externalId": "e-1"}):
        response = live.run(live.client.post(f"{other.path}/Users", json=body, headers=other.headers))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    group = live.run(
        live.client.post(
            f"{other.path}/Groups", json={"displayName": "Eng", "members": [{"value": ids[0]}]}, headers=other.headers
        )
    )
    assert group.status_code == 201, group.text
    return other, [*ids, group.json()["id"]]


def test_scim_request_sequences(live_app: LiveApp) -> None:
    """Sequences of creates, replaces, patches, deletes, queries and raw requests, one directory per example."""
    other, other_ids = _other_tenant(live_app)

    def other_tenant() -> tuple[Any, ...]:
        return live_app.run(live_app.database.query(lambda session: _fingerprint(session, other.id)))

    before = other_tenant()
    machine = type("Session", (ScimSession,), {"live": live_app, "other": other, "other_ids": other_ids})
    run_state_machine_as_test(machine, settings=fuzz_settings(40, stateful_step_count=12))
    # Its ids were sent through the other directories' URLs (as members, managers, items): it is untouched.
    assert other_tenant() == before
    live_app.run(check_invariants(live_app.database, live_app.client, tokens={other.id: other.token}))
    TALLY.checks += 1


@st.composite
def _seeded_queries(draw: st.DrawFn, known: list[str]) -> tuple[str, str, dict[str, str], bytes | None]:
    resource = draw(st.sampled_from(["User", "Group"]))
    kind = draw(st.integers(0, 3))
    if kind <= 1:
        return "GET", f"/{resource}s", draw(inputs.query_params(resource, known)), None
    if kind == 2:
        body = json.dumps(draw(inputs.mutated(draw(inputs.query_params(resource, known))))).encode()
        return "POST", f"/{resource}s/.search", {}, body
    item = quote(draw(inputs.ids_from(known)), safe="")
    return "GET", f"/{resource}s/{item}", draw(inputs.query_params(resource, known)), None


def _seeded(live: LiveApp) -> tuple[DirectoryFixture, list[str], list[str]]:
    """A directory with four users (one inactive, one with the enterprise extension) and a group of two: the
    directory, the user ids, and every id and name worth naming in a filter."""
    directory = live.directory()
    users: list[str] = []
    known: list[str] = []
    bodies: list[dict[str, Any]] = [
        {"userName": "ada@acme.test", "name": {"givenName": "Ada"}, "emails": [{"value": "ada@acme.test"}]},
        {"userName": "grace@acme.test", "active": False, "title": "Admiral", "externalId": "e-2"},
        {"userName": "İda", inputs.ENTERPRISE: {"department": "R&D", "manager": {"value": "x"}}},
        {"userName": "ken", "emails": [{"value": "k@x", "type": "work", "primary": "True"}, {"value": "y"}]},
    ]
    for body in bodies:
        response = live.run(live.client.post(f"{directory.path}/Users", json=body, headers=directory.headers))
        assert response.status_code == 201, response.text
        users.append(response.json()["id"])
        known += [users[-1], body["userName"]]
    group = {"displayName": "Eng", "members": [{"value": users[0]}, {"value": users[1]}]}
    response = live.run(live.client.post(f"{directory.path}/Groups", json=group, headers=directory.headers))
    assert response.status_code == 201, response.text
    known += [response.json()["id"], "Eng"]
    return directory, users, known


def test_scim_queries(live_app: LiveApp) -> None:
    """Filters, paging and projections over a seeded directory: reads never fail with a 5xx and never write."""
    directory, _users, known = _seeded(live_app)
    client, headers = live_app.client, directory.headers
    before = live_app.run(live_app.database.query(lambda session: _fingerprint(session, directory.id)))

    @fuzz_settings(150)
    @given(query=_seeded_queries(known))
    def read(query: tuple[str, str, dict[str, str], bytes | None]) -> None:
        method, path, params, body = query
        TALLY.cases += 1
        response = live_app.run(
            client.request(method, directory.path + path, params=params, content=body, headers=headers)
        )
        assert_scim_answer(response)

    read()
    after = live_app.run(live_app.database.query(lambda session: _fingerprint(session, directory.id)))
    assert after == before, "a read wrote"
    live_app.run(check_invariants(live_app.database, live_app.client, tokens={directory.id: directory.token}))
    TALLY.checks += 1


@st.composite
def _writes(draw: st.DrawFn, users: list[str], groups: list[str]) -> tuple[str, str, bytes]:
    resource = draw(st.sampled_from(["User", "Group"]))
    method = draw(st.sampled_from(["POST", "PUT", "PATCH"]))
    path = f"/{resource}s"
    if method != "POST":
        path += f"/{draw(inputs.ids_from(users if resource == 'User' else groups))}"
    if method == "PATCH":
        document = draw(inputs.patch_bodies(resource, users))
    elif resource == "User":
        document = draw(inputs.user_bodies())
    else:
        document = draw(inputs.group_bodies(users))
    return method, path, _body(draw, document)


def test_scim_writes(live_app: LiveApp) -> None:
    """One write at a time, plausible or hostile, to a seeded directory: no 5xx, and a refused one writes nothing."""
    directory, users, known = _seeded(live_app)
    groups = [k for k in known if k.startswith("directory_group_")]

    @fuzz_settings(250)
    @given(data=st.data())
    def write(data: st.DataObject) -> None:
        method, path, body = data.draw(_writes(users, groups))
        send(live_app, directory, data.draw, method, path, content=body)

    write()
    live_app.run(check_invariants(live_app.database, live_app.client, tokens={directory.id: directory.token}))
    TALLY.checks += 1


@st.composite
def _stray_requests(draw: st.DrawFn, directory: DirectoryFixture, other: DirectoryFixture) -> dict[str, Any]:
    """Requests off the beaten track: other or no credentials, odd paths, methods, media types and bodies."""
    authorization = draw(
        st.sampled_from(
            [
                f"Bearer {directory.token}",
                f"Bearer {directory.token}",
                f"bearer  {directory.token} ",
                f"Bearer {other.token}",
                f"Basic {directory.token}",
                "Bearer",
                "Bearer \x7f",
                "",
            ]
        )
    )
    base = draw(st.sampled_from([directory.path, directory.path, other.path, "/scim/v2/directory_nope", "/scim/v2"]))
    tail = draw(
        st.one_of(
            st.sampled_from(
                ["/Users", "/Groups", "/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/User", "/Schemas"]
                + [f"/Schemas/{inputs.USER}", "/Schemas/urn:nope", "/Users/.search", "/.search", "/Me", "/Bulk", "/"]
                + ["/Users/%00", "/Users/%2e%2e/Groups", "/Users/a%2Fb", "/Groups/%C3%A9", "/USERS", "//Users", ""]
            ),
            inputs.texts().map(lambda t: "/Users/" + quote(t[:2000], safe="")),
        )
    )
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]))
    headers = {"Authorization": authorization}
    content = None
    if method in ("POST", "PUT", "PATCH"):
        headers["Content-Type"] = draw(st.sampled_from(inputs.CONTENT_TYPES))
        content = draw(st.one_of(inputs.raw_bodies(), inputs.user_bodies().map(lambda b: json.dumps(b).encode())))
    return {"method": method, "url": base + tail, "headers": headers, "content": content}


def test_scim_stray_requests(live_app: LiveApp) -> None:
    directory, other = live_app.directory(), live_app.directory(name="Other tenant")

    @fuzz_settings(120)
    @given(request=_stray_requests(directory, other))
    def send(request: dict[str, Any]) -> None:
        TALLY.cases += 1
        response = live_app.run(live_app.client.request(**request))
        if request["method"] == "HEAD":
            assert response.status_code < 500
        else:
            assert_scim_answer(response)

    send()
    tokens = {directory.id: directory.token, other.id: other.token}
    live_app.run(check_invariants(live_app.database, live_app.client, tokens=tokens))
    TALLY.checks += 1
