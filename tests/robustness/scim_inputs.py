"""Hypothesis strategies for what reaches a SCIM endpoint: resource bodies and PATCH operations (valid, near-valid
and mutated), filters and PATCH paths from RFC 7644's grammar (and slightly off it), query parameters, raw bytes."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# -- values -----------------------------------------------------------------------------------------------------


# A draw function: a composite's ``draw`` or a test's ``data.draw``.
Draw = Callable[[st.SearchStrategy[Any]], Any]


def one_in(draw: Draw, n: int) -> bool:
    """True about once in ``n`` draws (the top of the range: hypothesis draws the bottom more than its share)."""
    return bool(draw(st.integers(1, n)) == n)


ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "null",
    "True",
    "false",
    "0",
    "-1",
    "1e400",
    "\u202eevil",
    "\ufeffbom",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "İstanbul",
    "ß",
    "😀",
    "\t\n\r",
    '"quoted"',
    "back\\slash",
    "%00",
    "' OR 1=1 --",
    "Robert'); DROP TABLE directory_users;--",
    "a" * 300,
]


def _repeated(draw: st.DrawFn) -> str:
    piece = draw(st.text(min_size=1, max_size=3))
    return piece * draw(st.integers(100, 20_000))


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Short, unicode, empty, odd and (sometimes) huge strings."""
    kind = draw(st.integers(0, 9))
    if kind < 4:
        return draw(st.text(max_size=16))
    if kind < 6:
        return draw(st.sampled_from(ODD_STRINGS))
    if kind < 9:
        return draw(st.text(alphabet=string.ascii_letters + string.digits + ".-_@", min_size=1, max_size=12))
    return _repeated(draw)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.integers(),  # beyond 64 bits: the JSON codec refuses them
    st.floats(allow_nan=False, allow_infinity=False),
    texts(),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts(), children, max_size=3),
    max_leaves=6,
)


def random_id(prefix: str) -> st.SearchStrategy[str]:
    """A well-formed id of ``prefix`` that (almost surely) names nothing."""
    return st.text(alphabet=ULID_ALPHABET, min_size=26, max_size=26).map(lambda tail: f"{prefix}_{tail}")


garbage_ids = st.one_of(
    random_id("directory_user"),
    random_id("directory_group"),
    random_id("org"),
    st.sampled_from(["", " ", "null", "directory_user_", "directory_user_01", "../Groups", "%2e%2e", "a/b", "x" * 500]),
    st.text(max_size=30),
)


@st.composite
def ids_from(draw: st.DrawFn, known: list[str]) -> str:
    """Mostly ids that exist (when there are any), sometimes not."""
    if not known or one_in(draw, 4):
        return draw(garbage_ids)
    return draw(st.sampled_from(known))


def _recase(draw: st.DrawFn, key: str) -> str:
    if key.startswith("urn:"):
        return key
    return draw(st.sampled_from([key, key, key.lower(), key.upper(), key[:1].upper() + key[1:]]))


@st.composite
def mutated(draw: st.DrawFn, document: Any, depth: int = 0) -> Any:
    """``document`` with a few IdP-style and hostile changes: keys dropped, recased or added, values of another
    type, booleans as strings, nulls and empty strings, a list where an object goes and the other way round."""
    if isinstance(document, dict):
        result: dict[str, Any] = {}
        for key, value in document.items():
            choice = draw(st.integers(0, 19))
            if choice == 0:
                continue  # dropped
            if choice == 1:
                result[_recase(draw, key)] = draw(json_values)
            elif choice == 2:
                result[_recase(draw, key)] = draw(st.sampled_from([None, "", [], {}]))
            elif choice == 3 and isinstance(value, bool):
                result[key] = draw(st.sampled_from([str(value), str(value).lower(), "yes", 1]))
            elif choice == 4:
                result[key] = [value]
            else:
                result[_recase(draw, key) if choice == 5 else key] = draw(mutated(value, depth + 1))
        if one_in(draw, 6):
            result[draw(st.one_of(texts(), st.sampled_from(["id", "meta", "groups", "password", "urn:x:y"])))] = draw(
                json_values
            )
        return result
    if isinstance(document, list):
        items = [draw(mutated(item, depth + 1)) for item in document]
        if one_in(draw, 7):
            items.append(draw(json_values))
        return items
    if one_in(draw, 10):
        return draw(json_values)
    return document


# What a store may choke on, planted at one random string of a hostile body.
POISON = ["\x00", "a\x00b", "\x00" * 3, "x" * 70_000, "\u0085\u2028", "𝔘" * 1000]


@st.composite
def poisoned(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one of its strings (keys included) replaced by a ``POISON`` value."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, str):
            paths.append(path)
        elif isinstance(node, dict):
            for key, value in node.items():
                paths.append((*path, ("key", key)))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(document, ())
    if not paths:
        return document
    target = draw(st.sampled_from(paths))
    poison = draw(st.sampled_from(POISON))

    def rebuild(node: Any, path: tuple[Any, ...]) -> Any:
        if not path:
            return poison
        head, rest = path[0], path[1:]
        if isinstance(head, tuple):  # rename a key
            return {(poison if k == head[1] else k): v for k, v in node.items()}
        if isinstance(node, dict):
            return {k: rebuild(v, rest) if k == head else v for k, v in node.items()}
        return [rebuild(v, rest) if i == head else v for i, v in enumerate(node)]

    return rebuild(document, target)


# -- resources ----------------------------------------------------------------------------------------------------
# Each body is either plausible (values an IdP could send, which mostly succeed) or hostile (any text, mutated
# shapes). Mixing the two within one body would make nearly every body fail validation somewhere.

plain_texts = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " .-_'", min_size=1, max_size=12),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12),
)
# Few names, so that creates collide (uniqueness errors) as often as they succeed.
NAMES = ["ada@acme.test", "ADA@acme.test", "grace@acme.test", "linus", "ken@acme.test", "İda@acme.test", "ß@x.test"]
user_names = st.one_of(st.sampled_from(NAMES), plain_texts.map(lambda t: f"{t.strip() or 'x'}@acme.test"))
external_ids = st.one_of(st.none(), st.sampled_from(["e-1", "e-2", "E-1", "e-3"]), plain_texts)
group_names = st.one_of(st.sampled_from(["Eng", "eng", "Sales", "Ops", "All staff"]), plain_texts)
booleans = st.one_of(st.booleans(), st.sampled_from(["True", "False", "false", "TRUE"]))


def emails(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.fixed_dictionaries(
            {"value": values, "type": st.sampled_from(["work", "home", "other"])}, optional={"primary": booleans}
        ),
        max_size=3,
    )


@st.composite
def user_bodies(draw: st.DrawFn) -> dict[str, Any]:
    hostile = one_in(draw, 3)
    text = texts() if hostile else plain_texts
    body: dict[str, Any] = {"schemas": [USER], "userName": draw(texts() if one_in(draw, 6) else user_names)}
    if (external_id := draw(external_ids)) is not None:
        body["externalId"] = external_id
    if draw(st.booleans()):
        body["name"] = {"givenName": draw(text), "familyName": draw(text), "formatted": draw(text)}
    if draw(st.booleans()):
        body["emails"] = draw(emails(text))
    for key in ("displayName", "title", "nickName", "locale"):
        if one_in(draw, 3):
            body[key] = draw(text)
    if draw(st.booleans()):
        body["active"] = draw(booleans)
    if one_in(draw, 3):
        body["schemas"].append(ENTERPRISE)
        body[ENTERPRISE] = {
            "department": draw(text),
            "employeeNumber": draw(st.one_of(text, st.integers(0, 10**6))),
            "manager": draw(st.one_of(text, st.fixed_dictionaries({"value": text}))),
        }
    if one_in(draw, 5):
        body["password"] = draw(text)
    if hostile:
        mutation: dict[str, Any] = draw(mutated(body))
        return draw(poisoned(mutation)) if draw(st.booleans()) else mutation
    return body


def members(known_users: list[str], *, hostile: bool = True) -> st.SearchStrategy[Any]:
    """A ``members`` value: objects with the ids of known users (of this or another directory) or made-up ones;
    hostile ones also bare ids, odd keys and garbage."""
    member = st.fixed_dictionaries({"value": ids_from(known_users)}, optional={"display": plain_texts})
    if not hostile:
        return st.lists(member, max_size=6)
    garbage = st.one_of(
        st.fixed_dictionaries({"Value": ids_from(known_users)}),
        ids_from(known_users),  # a bare id
        json_values,  # numbers, nulls, objects without value
    )
    return st.one_of(st.lists(st.one_of(member, garbage), max_size=6), st.sampled_from([None, [], ""]), garbage)


@st.composite
def group_bodies(draw: st.DrawFn, known_users: list[str]) -> dict[str, Any]:
    hostile = one_in(draw, 3)
    body: dict[str, Any] = {"schemas": [GROUP], "displayName": draw(texts() if hostile else group_names)}
    if (external_id := draw(external_ids)) is not None:
        body["externalId"] = external_id
    if not one_in(draw, 4):
        body["members"] = draw(members(known_users, hostile=hostile))
    if hostile:
        mutation: dict[str, Any] = draw(mutated(body))
        return draw(poisoned(mutation)) if draw(st.booleans()) else mutation
    return body


def _plausible_patch_values(resource: str, known: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Paths an IdP PATCHes, and values of the kind each takes."""
    if resource == "Group":
        return {
            "displayName": group_names,
            "externalId": external_ids,
            "members": members(known, hostile=False),
        }
    return {
        "title": plain_texts,
        "displayName": plain_texts,
        "name.givenName": plain_texts,
        "name.familyName": plain_texts,
        "name": st.fixed_dictionaries({"givenName": plain_texts, "familyName": plain_texts}),
        "active": booleans,
        "externalId": external_ids,
        "userName": user_names,
        'emails[type eq "work"].value': plain_texts.map(lambda t: f"{t}@acme.test"),
        "emails": emails(plain_texts),
        f"{ENTERPRISE}:department": plain_texts,
        f"{ENTERPRISE}:manager": st.one_of(ids_from(known), st.fixed_dictionaries({"value": ids_from(known)})),
        "urn:example:custom:1.0:User": st.dictionaries(plain_texts, plain_texts, max_size=2),
    }


@st.composite
def plausible_patch_operations(draw: st.DrawFn, resource: str, known: list[str]) -> dict[str, Any]:
    op = draw(st.sampled_from(["replace", "add", "remove", "Replace", "Add", "Remove"]))
    values = _plausible_patch_values(resource, known)
    if op.lower() == "remove":
        paths = [p for p in values if p != ("userName" if resource == "User" else "displayName")]
        if resource == "Group" and known:
            paths += [f'members[value eq "{i}"]' for i in known[:4]]
        operation: dict[str, Any] = {"op": op, "path": draw(st.sampled_from(paths))}
        if operation["path"] == "members" and draw(st.booleans()):
            operation["value"] = draw(members(known, hostile=False))  # remove by value list
        return operation
    if one_in(draw, 3):  # path-less, with dotted and URN keys as Entra sends them
        keys = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3, unique=True))
        return {"op": op, "value": {key: draw(values[key]) for key in keys}}
    path = draw(st.sampled_from(sorted(values)))
    return {"op": op, "path": path, "value": draw(values[path])}


@st.composite
def hostile_patch_operations(draw: st.DrawFn, resource: str, known: list[str]) -> dict[str, Any]:
    op = draw(
        st.one_of(
            st.sampled_from(["add", "replace", "remove", "Add", "REPLACE", "Remove", "rEmOvE"]),
            st.sampled_from(["move", "", "copy", "test"]),
            json_values,
        )
    )
    operation: dict[str, Any] = {"op": op}
    if one_in(draw, 4):
        keys = st.sampled_from(
            ["name.givenName", "title", "active", "displayName", "externalId", "members", "emails", "id", "meta"]
            + [f"{ENTERPRISE}:department", f"{ENTERPRISE}:manager", "urn:x:custom", "userName", "nosuch"]
        )
        operation["value"] = draw(
            st.one_of(st.dictionaries(keys, st.one_of(json_values, members(known)), max_size=4), json_values)
        )
    else:
        operation["path"] = draw(st.one_of(patch_paths(resource, known), st.none(), st.integers()))
        if not one_in(draw, 6):
            operation["value"] = draw(st.one_of(json_values, members(known), booleans, st.none()))
    if one_in(draw, 6):
        operation = {_recase(draw, k): v for k, v in operation.items()}
    return operation


@st.composite
def patch_bodies(draw: st.DrawFn, resource: str, known: list[str]) -> dict[str, Any]:
    """A PatchOp: plausible operations, with (in one body in three) hostile ones among them."""
    operation = plausible_patch_operations(resource, known)
    if one_in(draw, 3):
        operation = st.one_of(operation, hostile_patch_operations(resource, known))
    body: dict[str, Any] = {"schemas": [PATCH], "Operations": draw(st.lists(operation, min_size=1, max_size=4))}
    if one_in(draw, 8):
        body["schemas"] = draw(st.sampled_from([["urn:wrong"], "x", []]))
    if one_in(draw, 8):
        body = draw(st.one_of(mutated(body), st.just({"operations": body["Operations"]})))
    if one_in(draw, 6):
        body = draw(poisoned(body))
    return body


# -- filters and paths --------------------------------------------------------------------------------------------

USER_ATTRIBUTES = [
    "userName",
    "id",
    "externalId",
    "displayName",
    "title",
    "active",
    "name.givenName",
    "name.familyName",
    "name",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    "groups",
    "groups.value",
    "groups.display",
    "meta.created",
    "meta.lastModified",
    "meta.resourceType",
    "meta.location",
    "password",
    "addresses.locality",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager.value",
    f"{ENTERPRISE}:manager",
    f"{USER}:userName",
    "urn:x:custom:attr",
    "nosuch",
    "name.nosuch",
    "a.b.c",
]
GROUP_ATTRIBUTES = [
    "displayName",
    "id",
    "externalId",
    "members",
    "members.value",
    "members.display",
    "members.type",
    "meta.created",
    f"{GROUP}:displayName",
    "userName",
    "nosuch",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Sw", "pr", "xx", ""]
DATES = [
    "2020-01-01T00:00:00Z",
    "2999-01-01T00:00:00+02:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2020-13-45T99:00:00Z",
    "yesterday",
]


@st.composite
def filter_values(draw: st.DrawFn, attribute: str, known: list[str]) -> str:
    """A comparison value, mostly of the attribute's type."""
    if attribute.startswith("meta.") or one_in(draw, 10):
        return json.dumps(draw(st.sampled_from(DATES)))
    if attribute.endswith(("active", "primary")) or one_in(draw, 10):
        return draw(st.sampled_from(["true", "false", "null", "True", "NULL", '"True"']))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from(["1e400", "-0", "01"]))))
    if kind == 1 and known:
        return json.dumps(draw(st.sampled_from(known)))
    if kind == 2:
        # Unquoted, as some IdPs send it; broken quotes and escapes; NUL written as an escape and raw.
        odd = ["ada@acme.test", '"unterminated', '"a\\q"', '"\\ud800"', "'x'", '"\\u0000"', '"a\\u0000b"', "a\x00b"]
        return draw(st.sampled_from(odd))
    return json.dumps(draw(texts() if kind == 3 else plain_texts), ensure_ascii=draw(st.booleans()))


@st.composite
def filters(draw: st.DrawFn, attributes: list[str], known: list[str], depth: int = 0) -> str:
    """A filter from RFC 7644 §3.4.2.2's grammar over real and unknown attributes, sometimes just off it."""
    kind = draw(st.integers(0, 9 if depth < 3 else 3))
    if kind <= 3:
        attribute = draw(st.sampled_from(attributes))
        op = draw(st.sampled_from(OPERATORS))
        value = draw(filter_values(attribute, known))
        text = f"{attribute} {op}" if op.lower() == "pr" else f"{attribute} {op} {value}"
    elif kind <= 5:
        joiner = draw(st.sampled_from([" and ", " or ", " AND ", " Or ", " and", " xor "]))
        text = draw(filters(attributes, known, depth + 1)) + joiner + draw(filters(attributes, known, depth + 1))
    elif kind == 6:
        text = f"not ({draw(filters(attributes, known, depth + 1))})"
    elif kind == 7:
        text = f"({draw(filters(attributes, known, depth + 1))})"
    else:
        attribute = draw(st.sampled_from(["emails", "members", "groups", "addresses", "name", "userName", "x"]))
        inner = draw(filters(["type", "value", "display", "primary", "givenName", "nosuch"], known, depth + 1))
        text = f"{attribute}[{inner}]" + draw(st.sampled_from(["", "", ".value", " and id pr", ".nosuch"]))
    if depth == 0 and one_in(draw, 6):
        return draw(near(text))
    return text


# Attributes a filter may name, by type: a well-formed filter over them reaches the SQL translation, where its
# values (NUL escapes, dates out of range, huge numbers, any text) are what is on trial.
FILTERABLE: dict[str, dict[str, list[str]]] = {
    "User": {
        "string": ["userName", "externalId", "displayName", "title", "name.givenName", "emails.value", "emails.type"]
        + ["id", "groups.value", "groups.display", "addresses.locality", f"{ENTERPRISE}:department"]
        + [f"{ENTERPRISE}:manager.value", f"{USER}:userName"],
        "dateTime": ["meta.created", "meta.lastModified"],
        "boolean": ["active", "emails.primary"],
    },
    "Group": {
        "string": ["displayName", "externalId", "id", "members.value", "members.display", "members.type"],
        "dateTime": ["meta.created", "meta.lastModified"],
        "boolean": [],
    },
}
_TYPED_OPERATORS = {
    "string": ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Co"],
    "dateTime": ["eq", "ne", "gt", "ge", "lt", "le"],
    "boolean": ["eq", "ne"],
}
ODD_FILTER_STRINGS = ['"\\u0000"', '"a\\u0000b"', "a\x00b", '"%"', '"_"', '"\\\\"', '"*"', '"[a]"', '"\\"quoted\\""']


@st.composite
def plausible_filters(draw: st.DrawFn, resource: str, known: list[str], depth: int = 0) -> str:
    """A filter in RFC 7644 §3.4.2.2's grammar over attributes that can be filtered on, with odd values."""
    kind = draw(st.integers(0, 6 if depth < 2 else 2))
    if kind <= 2:
        types = FILTERABLE[resource]
        kind_of_value = draw(st.sampled_from([t for t, names in types.items() if names]))
        attribute = draw(st.sampled_from(types[kind_of_value]))
        if one_in(draw, 8):
            return f"{attribute} pr"
        op = draw(st.sampled_from(_TYPED_OPERATORS[kind_of_value]))
        if kind_of_value == "dateTime":
            value = json.dumps(draw(st.sampled_from(DATES[:4])))
        elif kind_of_value == "boolean":
            value = draw(st.sampled_from(["true", "false", '"True"', "null"]))
        elif one_in(draw, 3):
            value = draw(st.sampled_from(ODD_FILTER_STRINGS))
        elif known and one_in(draw, 3):
            value = json.dumps(draw(st.sampled_from(known)))
        else:  # bounded, so that the percent-encoded query string stays under httpx's 64 KiB
            value = json.dumps(draw(st.one_of(plain_texts, texts()))[:300], ensure_ascii=draw(st.booleans()))
        return f"{attribute} {op} {value}"
    if kind <= 4:
        joiner = draw(st.sampled_from([" and ", " or ", " AND ", " Or "]))
        return (
            draw(plausible_filters(resource, known, depth + 1))
            + joiner
            + draw(plausible_filters(resource, known, depth + 1))
        )
    if kind == 5:
        return f"not ({draw(plausible_filters(resource, known, depth + 1))})"
    parent, subs = ("emails", "emails") if resource == "User" else ("members", "members")
    inner = draw(plausible_filters(resource, known, 2)).replace(f"{subs}.", "")
    if "." in inner.split(" ", 1)[0] or ":" in inner.split(" ", 1)[0]:
        inner = "value pr"
    return f"{parent}[{inner}]"


@st.composite
def near(draw: st.DrawFn, text: str) -> str:
    """``text`` with one small edit: a character dropped, doubled or inserted, or the text cut short."""
    if not text:
        return draw(st.text(max_size=5))
    at = draw(st.integers(0, len(text) - 1))
    edit = draw(st.integers(0, 3))
    if edit == 0:
        return text[:at] + text[at + 1 :]
    if edit == 1:
        return text[:at] + text[at] + text[at:]
    if edit == 2:
        return text[:at] + draw(st.sampled_from(list('()[]"\\ .:\x00\u00e9'))) + text[at:]
    return text[:at]


@st.composite
def patch_paths(draw: st.DrawFn, resource: str, known: list[str]) -> str:
    attributes = USER_ATTRIBUTES if resource == "User" else GROUP_ATTRIBUTES
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        path = draw(st.sampled_from(attributes))
    elif kind == 3:
        attribute = draw(st.sampled_from(["emails", "members", "phoneNumbers", "addresses", "groups", "name"]))
        inner = draw(filters(["type", "value", "display", "primary"], known, depth=2))
        path = f"{attribute}[{inner}]" + draw(st.sampled_from(["", ".value", ".display", ".primary", ".nosuch"]))
    elif kind == 4:
        path = draw(filters(attributes, known))
    else:
        path = draw(texts())
    if one_in(draw, 4):
        path = draw(st.sampled_from([path.upper(), path.lower(), draw(near(path))]))
    return path


# -- query parameters, raw bodies ---------------------------------------------------------------------------------

numbers_as_text = st.one_of(
    st.integers(-5, 120).map(str),
    st.sampled_from(["", " ", "0", "-0", "1e3", "0x10", "1_000", "²", "٣", "NaN", "ten", "1.5", "+7"]),
    st.sampled_from([str(2**31), str(2**63 - 1), str(2**63), str(10**30), str(-(10**30))]),
)


@st.composite
def query_params(draw: st.DrawFn, resource: str, known: list[str]) -> dict[str, str]:
    """List parameters: plausible ones (a well-formed filter, numbers that are numbers, known attribute names) or,
    one set in three, anything."""
    attributes = USER_ATTRIBUTES if resource == "User" else GROUP_ATTRIBUTES
    params: dict[str, str] = {}
    if not one_in(draw, 3):
        if not one_in(draw, 4):
            params["filter"] = draw(plausible_filters(resource, known))
        for name in ("startIndex", "count"):
            if one_in(draw, 3):
                params[name] = str(draw(st.sampled_from([0, 1, 2, 3, 100, 1001, 2**31, 2**63 - 1, 2**63, 10**30, -5])))
        for name in ("attributes", "excludedAttributes"):
            if one_in(draw, 4):
                params[name] = ",".join(draw(st.lists(st.sampled_from(attributes), min_size=1, max_size=3)))
        return params
    names = st.lists(st.one_of(st.sampled_from(attributes), texts()), max_size=4).map(",".join)
    for name, strategy in (
        ("filter", filters(attributes, known)),
        ("startIndex", numbers_as_text),
        ("count", numbers_as_text),
        ("attributes", names),
        ("excludedAttributes", names),
        ("sortBy", st.sampled_from(attributes)),
    ):
        if one_in(draw, 3) or (name == "filter" and draw(st.booleans())):
            # Bounded: percent-encoded, the whole query string must stay under httpx's 64 KiB.
            params[_recase(draw, name) if one_in(draw, 10) else name] = draw(strategy)[:1500]
    if one_in(draw, 31):
        params["filter"] = 'userName eq "' + "a" * 5000 + '"'  # past the filter length limit
    return params


CONTENT_TYPES = [
    "application/scim+json",
    "application/json",
    "application/scim+json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "",
    ";;;",
    "application/json; charset=latin-1",
]


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bytes that are not (quite) a JSON object: garbage, broken JSON, JSON of the wrong shape, deep nesting."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        valid = json.dumps(draw(user_bodies())).encode()
        cut = draw(st.integers(0, len(valid)))
        return valid[:cut]
    if kind == 2:
        return json.dumps(draw(json_values)).encode()
    if kind == 3:
        depth = draw(st.integers(100, 5000))
        return b'{"userName": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 4:
        return draw(
            st.sampled_from(
                [b"", b"null", b"{}", b"[]", b"NaN", b'{"a": NaN}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"a": 1e400}']
                + [b'{"userName": "\\ud800"}', b'{"userName": "a\x00b"}', b'{"userName": "\xc3\x28"}']
            )
        )
    if kind == 5:
        return json.dumps({"userName": draw(texts())}).encode("utf-16")
    return b'{"userName": "dup@acme.test", "userName": ' + json.dumps(draw(json_values)).encode() + b"}"
