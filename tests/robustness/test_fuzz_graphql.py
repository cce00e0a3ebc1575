"""Fuzzing GraphQL: generated documents and variables (``graphql_inputs.py``) and malformed HTTP requests, sent to
``/graphql`` with an admin key, organization keys, a revoked key and none. No answer is a 5xx; every answer carries
data or errors with a message; an error raised while resolving a field carries a stable ``extensions.code`` and no
internals; afterwards the store's invariants hold."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from gateway.graphql.pagination import encode_cursor
from gateway.ops import api_keys
from gateway.store.models import Event
from tests.robustness.fuzzing import TALLY, LiveApp, fuzz_settings
from tests.robustness.graphql_inputs import Pools, operations
from tests.robustness.invariants import check_invariants
from tests.robustness.scim_inputs import json_values, texts

CODES = {"BAD_USER_INPUT", "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED", "TIMEOUT"}
LEAKS = re.compile(
    r"internal server error|unexpected error|traceback|sqlalchemy|asyncpg|sqlite|\[SQL|psycopg|exception|"
    r"object has no attribute|NoneType|KeyError|ValueError|TypeError|OverflowError|invalid literal for int",
    re.IGNORECASE,
)


def _short(text: str) -> str:
    return re.sub(r"(.)\1{19,}", lambda run: f"{run[1] * 3}…({len(run[0])})", text)[:1500]


def assert_graphql_answer(response: httpx.Response, sent: Any) -> None:
    where = _short(repr(sent))
    assert response.status_code < 500, f"{where}: {response.status_code} {_short(response.text)}"
    assert not LEAKS.search(response.text), f"{where}: {_short(response.text)}"
    if response.status_code != 200:
        return
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), f"{where}: {body}"
    for error in body.get("errors") or []:
        assert isinstance(error.get("message"), str) and error["message"], f"{where}: {error}"
        # A sentence, not the bare str() of an exception (a KeyError's is just the key: "'F'").
        assert " " in error["message"].strip(), f"{where}: {error}"
        if error.get("path"):  # raised while resolving a field: one of ours, with its code
            assert (error.get("extensions") or {}).get("code") in CODES, f"{where}: {error}"


def _seed(live: LiveApp) -> tuple[dict[str, str], Pools, dict[str, str]]:
    """Two tenants with users, groups and memberships made through SCIM, and keys of every kind."""
    database, client = live.database, live.client
    tokens: dict[str, str] = {}
    ids: list[str] = []
    for name in ("Acme", "Globex"):
        directory = live.directory(name=name)
        tokens[directory.id] = directory.token
        ids += [directory.id, directory.organization_id]
        users = []
        for body in (
            {"userName": f"ada@{name}.test", "name": {"givenName": "Ada"}},
            {"userName": f"bob@{name}.test", "active": False},
        ):
            response = live.run(client.post(f"{directory.path}/Users", json=body, headers=directory.headers))
            users.append(response.json()["id"])
        group = live.run(
            client.post(
                f"{directory.path}/Groups",
                json={"displayName": "Eng", "members": [{"value": u} for u in users]},
                headers=directory.headers,
            )
        )
        ids += [*users, group.json()["id"]]
    organizations = ids[1::5]

    def keys(session: Any) -> dict[str, str]:
        issued = {
            "admin": api_keys.create_api_key(session).key,
            "acme": api_keys.create_api_key(session, organization_id=organizations[0]).key,
            "globex": api_keys.create_api_key(session, organization_id=organizations[1]).key,
        }
        revoked = api_keys.create_api_key(session, organization_id=organizations[0])
        api_keys.revoke_api_key(session, api_key_id=revoked.api_key.id)
        issued["revoked"] = revoked.key
        ids.append(revoked.api_key.id)
        return issued

    issued = live.run(database.transaction(keys))
    events = live.run(database.query(lambda session: list(session.execute(select(col(Event.id), col(Event.cursor))))))
    ids += [event_id for event_id, _ in events]
    cursors = [encode_cursor(i) for i in ids] + [encode_cursor(cursor) for _, cursor in events if cursor is not None]
    return issued, Pools(ids=ids, cursors=cursors), tokens


@st.composite
def _malformed(draw: st.DrawFn) -> dict[str, Any]:
    """HTTP requests that are not a well-formed GraphQL request."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return {"method": "POST", "content": draw(st.binary(max_size=40)), "content_type": "application/json"}
    if kind == 1:
        body = {"query": draw(st.one_of(json_values, texts())), "variables": draw(json_values)}
        return {"method": "POST", "content": json.dumps(body).encode(), "content_type": "application/json"}
    if kind == 2:
        batch = [{"query": "{ organizations { totalCount } }"}]
        return {"method": "POST", "content": json.dumps(batch).encode(), "content_type": "application/json"}
    if kind == 3:
        content_type = draw(st.sampled_from(["text/plain", "application/graphql", "multipart/form-data", ""]))
        return {"method": "POST", "content": b"{ organizations { totalCount } }", "content_type": content_type}
    if kind == 4:
        query = draw(st.sampled_from(["{ organizations { totalCount } }", 'mutation { revokeApiKey(id: "x") { id } }']))
        return {"method": "GET", "params": {"query": query, "variables": draw(texts())}}
    body = {"query": "query Q { organizations { totalCount } }", "operationName": draw(texts())}
    return {"method": "POST", "content": json.dumps(body).encode(), "content_type": "application/json"}


def test_graphql_documents(live_app: LiveApp) -> None:
    keys, pools, tokens = _seed(live_app)
    client = live_app.client
    valid = st.sampled_from([keys["admin"], keys["acme"], keys["globex"]])
    credentials = st.one_of(valid, valid, valid, st.sampled_from([keys["revoked"], "nope", None]))

    @fuzz_settings(350)
    @given(
        operation=operations(pools),
        key=credentials,
        malformed=st.one_of(st.none(), st.none(), st.none(), st.none(), _malformed()),
    )
    def send(operation: tuple[str, dict[str, Any]], key: str | None, malformed: dict[str, Any] | None) -> None:
        TALLY.cases += 1
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if malformed is None:
            document, variables = operation
            sent: Any = {"query": document, "variables": variables}
            response = live_app.run(client.post("/graphql", json=sent, headers=headers))
        else:
            sent = malformed
            if "content_type" in malformed:
                headers["Content-Type"] = malformed["content_type"]
            request = client.request(
                malformed["method"],
                "/graphql",
                content=malformed.get("content"),
                params=malformed.get("params"),
                headers=headers,
            )
            response = live_app.run(request)
        assert_graphql_answer(response, sent)

    send()
    live_app.run(check_invariants(live_app.database, client, tokens=tokens))
    TALLY.checks += 1
