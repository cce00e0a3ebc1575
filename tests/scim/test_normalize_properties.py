"""Property: whatever mix of the IdP shapes we tolerate, the normaliser stores what the canonical RFC form stores."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scim.protocol.normalize import normalize_resource
from scim.protocol.patch import apply_patch, parse_patch

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"

text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
maybe_text = st.one_of(st.none(), text)


@st.composite
def canonical_users(draw: st.DrawFn) -> dict[str, Any]:
    user: dict[str, Any] = {"schemas": [USER], "userName": draw(text) + "@acme.test"}
    for key, value in {
        "externalId": draw(maybe_text),
        "displayName": draw(maybe_text),
        "title": draw(maybe_text),
        "active": draw(st.one_of(st.none(), st.booleans())),
    }.items():
        if value is not None:
            user[key] = value
    name = {k: v for k, v in {"givenName": draw(maybe_text), "familyName": draw(maybe_text)}.items() if v}
    if name:
        user["name"] = name
    emails: list[dict[str, Any]] = draw(
        st.lists(st.fixed_dictionaries({"value": text, "type": st.sampled_from(["work", "home"])}), max_size=2)
    )
    if emails:
        emails[0]["primary"] = True
        user["emails"] = emails
    enterprise: dict[str, Any] = {
        k: v for k, v in {"department": draw(maybe_text), "employeeNumber": draw(maybe_text)}.items() if v
    }
    manager = draw(maybe_text)
    if manager:
        enterprise["manager"] = {"value": manager}
    if enterprise:
        user["schemas"] = [USER, ENTERPRISE]
        user[ENTERPRISE] = enterprise
    return user


def _bool_string(value: bool, style: int) -> str:
    """ "True"/"False" as Entra sends them, or in another case."""
    word = "True" if value else "False"
    return [word, word.lower(), word.upper()][style]


@st.composite
def tolerated_variants(draw: st.DrawFn, user: dict[str, Any]) -> dict[str, Any]:
    """The same user as IdPs really send it: any key case, booleans as strings, a bare manager id, explicit nulls
    and empty strings for absent optional attributes, a URN-qualified core attribute."""

    def recase(key: str) -> str:
        if key.startswith("urn:"):
            return key
        return draw(st.sampled_from([key, key.lower(), key.upper(), key[:1].upper() + key[1:]]))

    def vary(value: Any) -> Any:
        if isinstance(value, bool):
            return draw(st.sampled_from([value, _bool_string(value, draw(st.integers(0, 2)))]))
        if isinstance(value, dict):
            varied = {recase(k): vary(v) for k, v in value.items()}
            if set(value) == {"value"} and draw(st.booleans()):
                return value["value"]  # manager as a plain id
            return varied
        if isinstance(value, list):
            return [vary(v) for v in value]
        return value

    variant = {
        recase(k) if k != "userName" else draw(st.sampled_from(["userName", "username", f"{USER}:userName"])): vary(v)
        for k, v in user.items()
    }
    for absent in ("nickName", "locale", "profileUrl"):
        if draw(st.booleans()):
            variant[absent] = draw(st.sampled_from([None, ""]))
    if draw(st.booleans()):
        variant["password"] = "s3cret!"  # accepted, never stored
    return variant


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_tolerated_shapes_normalise_like_the_canonical_form(data: st.DataObject) -> None:
    canonical = data.draw(canonical_users())
    variant = data.draw(tolerated_variants(canonical))
    assert normalize_resource(variant, resource="User") == normalize_resource(canonical, resource="User")


@settings(max_examples=200, deadline=None)
@given(
    user=canonical_users(),
    given_name=text,
    department=text,
    active=st.booleans(),
    op=st.sampled_from(["replace", "Replace", "REPLACE"]),
)
def test_pathless_dotted_patch_equals_canonical_patch(
    user: dict[str, Any], given_name: str, department: str, active: bool, op: str
) -> None:
    """Entra's path-less replace with dotted and URN keys and string booleans, vs. one canonical op per path."""
    raw = normalize_resource(user, resource="User")
    tolerated = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {
                "op": op,
                "value": {
                    "name.givenName": given_name,
                    f"{ENTERPRISE}:department": department,
                    "active": "True" if active else "False",
                },
            }
        ],
    }
    canonical = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "name.givenName", "value": given_name},
            {"op": "replace", "path": f"{ENTERPRISE}:department", "value": department},
            {"op": "replace", "path": "active", "value": active},
        ],
    }
    left, _ = apply_patch(raw, parse_patch(tolerated), resource="User")
    right, _ = apply_patch(raw, parse_patch(canonical), resource="User")
    assert left == right
    assert left["name"]["givenName"] == given_name and left["active"] is active
    assert "password" not in left
