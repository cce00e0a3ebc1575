"""The one inbound normaliser: every SCIM resource body passes through here before it touches the store.

It canonicalises attribute names (case-insensitive, RFC 7643 §2.1), coerces IdP quirks ("True"/"False" strings for
booleans, numbers for strings other than the identifying ones, a bare id for ``manager``), drops what a client may
not set (id, meta, groups, the write-only password) and treats ``null`` / ``""`` / ``[]`` as "no value" (RFC 7644
§3.5.1). It is strict where no identity provider needs tolerance (README "SCIM conformance"): ``schemas`` must be a
list naming no other resource type, ``userName`` / ``displayName`` strings, a multi-valued attribute a list.
"""

from __future__ import annotations

from typing import Any

from scim.protocol.errors import ScimError
from scim.protocol.render import Member
from scim.protocol.schemas import COMMON_ATTRIBUTES, RESOURCE_SCHEMAS, Attribute, Resource, Schema

_REQUIRED: dict[Resource, str] = {"User": "userName", "Group": "displayName"}
# Never stored from a request: server-assigned, computed, write-only or kept as membership rows.
_NOT_STORED = frozenset({"id", "meta", "groups", "password", "members"})
_EMPTY: tuple[Any, ...] = (None, "", [], {})
# What a resource is known by: a JSON number there is a client's mistake, not a quirk to coerce.
_IDENTIFYING = frozenset({"userName", "displayName"})
# SCIM's own schema URNs: a body naming one that is not of its resource type is another kind of body.
_SCIM_URN_PREFIXES = ("urn:ietf:params:scim:schemas:core:", "urn:ietf:params:scim:api:messages:")


def _invalid(path: str, expected: str) -> ScimError:
    return ScimError(400, f"Attribute '{path}' must be {expected}", "invalidValue")


def coerce_boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(path, "a boolean")


def _scalar(value: Any, attribute: Attribute, path: str) -> Any:
    kind = attribute.type
    if kind == "boolean":
        return coerce_boolean(value, path)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise _invalid(path, "an integer")
    if kind == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise _invalid(path, "a number")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and path not in _IDENTIFYING:
        return str(value)  # e.g. employeeNumber sent as a JSON number
    raise _invalid(path, "a string")


def _complex(value: Any, attribute: Attribute, path: str, *, element: bool) -> dict[str, Any] | None:
    if isinstance(value, str) and not element and attribute.sub_attribute("value") is not None:
        value = {"value": value}  # `manager: "id"` instead of `manager: {"value": "id"}`
    if not isinstance(value, dict):
        raise _invalid(path, "an object")
    result: dict[str, Any] = {}
    for key, item in value.items():
        sub = attribute.sub_attribute(key)
        if sub is None:
            if item not in _EMPTY:
                result[key] = item  # unknown sub-attributes are kept as sent
            continue
        if sub.mutability == "readOnly":
            continue
        normalised = normalise_value(item, sub, f"{path}.{sub.name}")
        if normalised is not None:
            result[sub.name] = normalised
    return result or None


def normalise_value(value: Any, attribute: Attribute, path: str, *, element: bool = False) -> Any:
    """One attribute's value in canonical form, or None for "no value"; ``element`` for one entry of a
    multi-valued attribute."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if attribute.multi_valued and not element:
        if not isinstance(value, list):
            raise _invalid(path, "a list (it is multi-valued)")
        result = [v for v in (normalise_value(item, attribute, path, element=True) for item in value) if v is not None]
        return result or None
    if attribute.type == "complex":
        return _complex(value, attribute, path, element=element)
    return _scalar(value, attribute, path)


# Per resource type: its extensions by lowercased URN, and its core schema's URN prefix in lower case (each key of
# every body is compared with them).
_EXTENSIONS: dict[Resource, dict[str, Schema]] = {
    resource: {extension.id.lower(): extension for extension in schemas[1:]}
    for resource, schemas in RESOURCE_SCHEMAS.items()
}
_CORE_PREFIX: dict[Resource, str] = {
    resource: schemas[0].id.lower() + ":" for resource, schemas in RESOURCE_SCHEMAS.items()
}


def _top_level(resource: Resource, key: str) -> tuple[Schema | None, Attribute | None]:
    """The schema and attribute a top-level key names: core or common attribute, or a whole extension."""
    lowered = key.lower()
    extension = _EXTENSIONS[resource].get(lowered)
    if extension is not None:
        return extension, extension.as_attribute()
    core = RESOURCE_SCHEMAS[resource][0]
    if lowered.startswith(_CORE_PREFIX[resource]):
        key = key[len(core.id) + 1 :]
        lowered = key.lower()
    attribute = core.attribute(key) or next((a for a in COMMON_ATTRIBUTES if a.name.lower() == lowered), None)
    return (core, attribute) if attribute else (None, None)


def check_schemas(schemas: Any, *, resource: Resource) -> None:
    """A body's ``schemas`` (RFC 7643 §3): a list of URNs naming no other resource type or message (a Group's
    body posted to ``/Users`` is refused, not stored as a user). Absent or null is tolerated."""
    if schemas is None:
        return
    if not isinstance(schemas, list) or not all(isinstance(urn, str) for urn in schemas):
        raise ScimError(400, "'schemas' must be a list of schema URNs", "invalidSyntax")
    for urn in schemas:
        _check_foreign(urn, resource=resource)


def _check_foreign(urn: str, *, resource: Resource) -> None:
    lowered = urn.lower()
    if lowered.startswith(_SCIM_URN_PREFIXES) and lowered not in {s.id.lower() for s in RESOURCE_SCHEMAS[resource]}:
        raise ScimError(400, f"A {resource} body cannot declare the schema {urn}", "invalidValue")


def normalize_resource(document: dict[str, Any], *, resource: Resource) -> dict[str, Any]:
    """A request body as the canonical attributes we store (``raw_attributes``)."""
    raw: dict[str, Any] = {}
    extra_schemas: list[str] = []
    for key, value in document.items():
        if key.lower() == "schemas":
            check_schemas(value, resource=resource)
            continue
        schema, attribute = _top_level(resource, key)
        if attribute is None:
            if value not in _EMPTY:
                _check_foreign(key, resource=resource)  # e.g. a Group's attributes under its URN in a User
                raw[key] = value  # e.g. a vendor extension URN: kept as sent
                if key.lower().startswith("urn:"):
                    extra_schemas.append(key)
            continue
        if attribute.name in _NOT_STORED or attribute.mutability == "readOnly":
            continue
        normalised = normalise_value(value, attribute, attribute.name)
        if normalised is not None:
            raw[attribute.name] = normalised
    required = _REQUIRED[resource]
    if not isinstance(raw.get(required), str) or not raw[required].strip():
        raise ScimError(400, f"'{required}' is required", "invalidValue")
    schemas = RESOURCE_SCHEMAS[resource]
    raw["schemas"] = [schemas[0].id] + [s.id for s in schemas[1:] if s.id in raw] + extra_schemas
    return raw


def member_values(members: Any, *, lone: bool = False) -> list[Member]:
    """The members named by a ``members`` value: ``[{"value": id, "display": …}, …]`` (a bare id string is
    tolerated; a lone member outside a list only with ``lone``, as a PATCH value). ``display`` is immutable
    (RFC 7643 §2.4): kept as the client set it when the edge was added."""
    if members in _EMPTY:
        return []
    if not isinstance(members, list) and not lone:
        raise _invalid("members", "a list (it is multi-valued)")
    items = members if isinstance(members, list) else [members]
    values: list[Member] = []
    for item in items:
        fields = {k.lower(): v for k, v in item.items()} if isinstance(item, dict) else {"value": item}
        value, display = fields.get("value"), fields.get("display")
        if not isinstance(value, str) or not value:
            raise ScimError(400, "Each member must be an object with a string 'value'", "invalidValue")
        if display is not None and not isinstance(display, str):
            raise ScimError(400, "A member's 'display' must be a string", "invalidValue")
        values.append(Member(id=value, display=display or None))
    return values
