"""Attribute metadata for the resources we serve: RFC 7643 §8.7.1 as Python data.

Everything that needs to know an attribute's type, case sensitivity or mutability (filters, PATCH, the
``/Schemas`` endpoint, the inbound normaliser) asks this module, so the answers cannot drift apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from scim.protocol import urns

Resource = Literal["User", "Group"]
AttributeType = Literal["string", "boolean", "decimal", "integer", "dateTime", "binary", "reference", "complex"]
Mutability = Literal["readOnly", "readWrite", "immutable", "writeOnly"]
Returned = Literal["always", "never", "default", "request"]
Uniqueness = Literal["none", "server", "global"]


@dataclass(frozen=True)
class Attribute:
    """One attribute definition (RFC 7643 §7). Defaults are the §2.2 defaults."""

    name: str
    type: AttributeType = "string"
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: Mutability = "readWrite"
    returned: Returned = "default"
    uniqueness: Uniqueness = "none"
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    description: str = ""

    def sub_attribute(self, name: str) -> Attribute | None:
        """Attribute names are case-insensitive (RFC 7643 §2.1)."""
        return self._sub_by_name.get(name.lower())

    @cached_property
    def _sub_by_name(self) -> dict[str, Attribute]:
        # Every inbound attribute is looked up here: a dict, not a scan.
        return {a.name.lower(): a for a in self.sub_attributes}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.sub_attributes:
            body["subAttributes"] = [a.to_json() for a in self.sub_attributes]
        if self.canonical_values:
            body["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            body["referenceTypes"] = list(self.reference_types)
        return body


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...] = field(repr=False)  # keeps ResolvedPath reprs readable

    def attribute(self, name: str) -> Attribute | None:
        return self._by_name.get(name.lower())

    @cached_property
    def _by_name(self) -> dict[str, Attribute]:
        return {a.name.lower(): a for a in self.attributes}

    def as_attribute(self) -> Attribute:
        """The extension seen as one complex attribute keyed by its URN, as it appears in a resource (§3.3)."""
        return self._as_attribute

    @cached_property
    def _as_attribute(self) -> Attribute:
        # Made once: a new one per request also rebuilt its sub-attribute index (``Attribute._sub_by_name``).
        return Attribute(self.id, "complex", sub_attributes=self.attributes, description=self.description)


def _multi(
    name: str,
    description: str,
    *,
    types: tuple[str, ...] = (),
    value: Attribute | None = None,
    mutability: Mutability = "readWrite",
) -> Attribute:
    """The usual multi-valued shape of §2.4: value, display, type, primary."""
    subs = (
        value or Attribute("value", description=f"The value of the {name} entry."),
        Attribute("display", description="A human-readable name, primarily used for display purposes."),
        Attribute("type", canonical_values=types, description="A label indicating the attribute's function."),
        Attribute("primary", "boolean", description="Indicates the 'primary' or preferred value."),
    )
    return Attribute(
        name, "complex", multi_valued=True, mutability=mutability, sub_attributes=subs, description=description
    )


# RFC 7643 §3.1: common attributes. They belong to every resource but are not part of any schema representation.
COMMON_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "id",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
        description="A unique identifier for a SCIM resource as defined by the service provider.",
    ),
    Attribute(
        "externalId",
        case_exact=True,
        description="A String that is an identifier for the resource as defined by the provisioning client.",
    ),
    Attribute(
        "meta",
        "complex",
        mutability="readOnly",
        description="Resource metadata.",
        sub_attributes=(
            Attribute(
                "resourceType",
                case_exact=True,
                mutability="readOnly",
                description="The name of the resource type of the resource.",
            ),
            Attribute(
                "created",
                "dateTime",
                mutability="readOnly",
                description="The DateTime that the resource was added to the service provider.",
            ),
            Attribute(
                "lastModified",
                "dateTime",
                mutability="readOnly",
                description="The most recent DateTime that the details of this resource were updated.",
            ),
            Attribute(
                "location",
                "reference",
                case_exact=True,
                mutability="readOnly",
                reference_types=("uri",),
                description="The URI of the resource being returned.",
            ),
            Attribute(
                "version",
                case_exact=True,
                mutability="readOnly",
                description="The version (ETag) of the resource being returned.",
            ),
        ),
    ),
)

_NAME = Attribute(
    "name",
    "complex",
    description="The components of the user's real name.",
    sub_attributes=(
        Attribute("formatted", description="The full name, including all middle names, titles, and suffixes."),
        Attribute("familyName", description="The family name of the User, or last name."),
        Attribute("givenName", description="The given name of the User, or first name."),
        Attribute("middleName", description="The middle name(s) of the User."),
        Attribute("honorificPrefix", description="The honorific prefix(es) of the User, e.g. 'Ms.'."),
        Attribute("honorificSuffix", description="The honorific suffix(es) of the User, e.g. 'III'."),
    ),
)

_ADDRESSES = Attribute(
    "addresses",
    "complex",
    multi_valued=True,
    description="A physical mailing address for this User.",
    sub_attributes=(
        Attribute("formatted", description="The full mailing address, formatted for display."),
        Attribute("streetAddress", description="The full street address component."),
        Attribute("locality", description="The city or locality component."),
        Attribute("region", description="The state or region component."),
        Attribute("postalCode", description="The zip code or postal code component."),
        Attribute("country", description="The country name component (ISO 3166-1 alpha-2)."),
        Attribute("type", canonical_values=("work", "home", "other"), description="A label indicating the function."),
        # §8.7.1 omits it but §4.1.2 defines "primary" for addresses too, and IdPs send it.
        Attribute("primary", "boolean", description="Indicates the 'primary' or preferred address."),
    ),
)

# §4.1.2 / §8.7.1: the service provider computes group membership; clients can only read it.
_GROUPS = Attribute(
    "groups",
    "complex",
    multi_valued=True,
    mutability="readOnly",
    description="A list of groups to which the user belongs, either direct or indirect.",
    sub_attributes=(
        Attribute("value", mutability="readOnly", description="The identifier of the User's group."),
        Attribute(
            "$ref",
            "reference",
            mutability="readOnly",
            reference_types=("User", "Group"),
            description="The URI of the corresponding 'Group' resource.",
        ),
        Attribute("display", mutability="readOnly", description="A human-readable name for the group."),
        Attribute(
            "type",
            mutability="readOnly",
            canonical_values=("direct", "indirect"),
            description="A label indicating the attribute's function, e.g. 'direct' or 'indirect'.",
        ),
    ),
)

USER_SCHEMA = Schema(
    urns.USER,
    "User",
    "User Account",
    (
        Attribute(
            "userName",
            required=True,
            uniqueness="server",
            description="Unique identifier for the User, typically used to directly authenticate to the service.",
        ),
        _NAME,
        Attribute("displayName", description="The name of the User, suitable for display to end-users."),
        Attribute("nickName", description="The casual way to address the user in real life."),
        Attribute(
            "profileUrl",
            "reference",
            reference_types=("external",),
            description="A fully qualified URL pointing to a page representing the User's online profile.",
        ),
        Attribute("title", description="The user's title, such as 'Vice President'."),
        Attribute("userType", description="Identifies the relationship between the organization and the user."),
        Attribute("preferredLanguage", description="The User's preferred written or spoken language (RFC 7231)."),
        Attribute("locale", description="The User's default location for localizing, e.g. 'en-US'."),
        Attribute("timezone", description="The User's time zone in the 'Olson' time zone database format."),
        Attribute("active", "boolean", description="A Boolean value indicating the User's administrative status."),
        # §4.1.1: never returned, and a client can only set it.
        Attribute(
            "password",
            mutability="writeOnly",
            returned="never",
            description="The User's cleartext password, used to set or compare a password.",
        ),
        _multi("emails", "Email addresses for the user.", types=("work", "home", "other")),
        _multi(
            "phoneNumbers", "Phone numbers for the User.", types=("work", "home", "mobile", "fax", "pager", "other")
        ),
        _multi(
            "ims",
            "Instant messaging addresses for the User.",
            types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        _multi(
            "photos",
            "URLs of photos of the User.",
            types=("photo", "thumbnail"),
            value=Attribute("value", "reference", reference_types=("external",), description="URL of a photo."),
        ),
        _ADDRESSES,
        _GROUPS,
        _multi("entitlements", "A list of entitlements for the User that represent a thing the User has."),
        _multi("roles", "A list of roles for the User that collectively represent who the User is."),
        _multi(
            "x509Certificates",
            "A list of certificates issued to the User.",
            value=Attribute("value", "binary", description="The value of an X.509 certificate (DER, base64)."),
        ),
    ),
)

ENTERPRISE_USER_SCHEMA = Schema(
    urns.ENTERPRISE_USER,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber", description="Numeric or alphanumeric identifier assigned to a person."),
        Attribute("costCenter", description="Identifies the name of a cost center."),
        Attribute("organization", description="Identifies the name of an organization."),
        Attribute("division", description="Identifies the name of a division."),
        Attribute("department", description="Identifies the name of a department."),
        Attribute(
            "manager",
            "complex",
            description="The User's manager.",
            sub_attributes=(
                Attribute("value", description="The id of the SCIM resource representing the User's manager."),
                Attribute(
                    "$ref",
                    "reference",
                    reference_types=("User",),
                    description="The URI of the SCIM resource representing the User's manager.",
                ),
                Attribute("displayName", mutability="readOnly", description="The displayName of the User's manager."),
            ),
        ),
    ),
)

GROUP_SCHEMA = Schema(
    urns.GROUP,
    "Group",
    "Group",
    (
        # §8.7.1 says required false, but §4.2 makes displayName REQUIRED; we enforce the prose.
        Attribute("displayName", required=True, description="A human-readable name for the Group."),
        Attribute(
            "members",
            "complex",
            multi_valued=True,
            description="A list of members of the Group.",
            sub_attributes=(
                Attribute("value", mutability="immutable", description="Identifier of the member of this Group."),
                Attribute(
                    "$ref",
                    "reference",
                    mutability="immutable",
                    reference_types=("User", "Group"),
                    description="The URI corresponding to a SCIM resource that is a member of this Group.",
                ),
                Attribute(
                    "type",
                    mutability="immutable",
                    canonical_values=("User", "Group"),
                    description="A label indicating the type of resource, e.g. 'User' or 'Group'.",
                ),
                # Not in §8.7.1, but §4.2's examples and every major IdP send it.
                Attribute("display", mutability="immutable", description="A human-readable name for the member."),
            ),
        ),
    ),
)

SCHEMAS: dict[str, Schema] = {s.id: s for s in (USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA)}
# Core schema first: unqualified names resolve against it only (RFC 7644 §3.10).
RESOURCE_SCHEMAS: dict[Resource, tuple[Schema, ...]] = {
    "User": (USER_SCHEMA, ENTERPRISE_USER_SCHEMA),
    "Group": (GROUP_SCHEMA,),
}


@dataclass(frozen=True)
class ResolvedPath:
    """An attribute path pinned to its schema: ``attribute`` is top-level, ``sub`` its sub-attribute if any."""

    schema: Schema
    attribute: Attribute
    sub: Attribute | None = None

    @property
    def target(self) -> Attribute:
        return self.sub or self.attribute

    @property
    def is_core(self) -> bool:
        return self.schema.id in (urns.USER, urns.GROUP)

    @property
    def is_extension_root(self) -> bool:
        """The path named a whole extension (``urn:…:enterprise:2.0:User``), as PATCH paths may."""
        return self.attribute.name == self.schema.id


@functools.lru_cache(maxsize=1024)  # pure, and called per entry when a filter is matched
def resolve_path(resource: Resource, path: str) -> ResolvedPath | None:
    """Resolve ``attr``, ``attr.sub`` or ``urn:…:attr[.sub]`` (RFC 7644 §3.10), ignoring case (RFC 7643 §2.1).

    Unqualified names only find core-schema and common attributes; extension attributes need their URN.
    """
    lowered = path.lower()
    schemas = RESOURCE_SCHEMAS[resource]
    core = schemas[0]
    for schema in schemas:
        urn = schema.id.lower()
        if lowered == urn and schema is not core:
            return ResolvedPath(schema, schema.as_attribute())
        if lowered.startswith(urn + ":"):
            return _resolve_in(schema, path[len(urn) + 1 :], common=schema is core)
    if lowered.startswith("urn:"):
        return None
    return _resolve_in(core, path, common=True)


def _resolve_in(schema: Schema, path: str, *, common: bool) -> ResolvedPath | None:
    name, _, sub_name = path.partition(".")
    attribute = schema.attribute(name)
    if attribute is None and common:
        wanted = name.lower()
        attribute = next((a for a in COMMON_ATTRIBUTES if a.name.lower() == wanted), None)
    if attribute is None or "." in sub_name:
        return None
    if not sub_name:
        return ResolvedPath(schema, attribute)
    sub = attribute.sub_attribute(sub_name)
    return ResolvedPath(schema, attribute, sub) if sub else None


def find_attribute(resource: Resource, path: str) -> Attribute | None:
    """The definition of ``path`` (see :func:`resolve_path`), or None when the resource has no such attribute."""
    resolved = resolve_path(resource, path)
    return resolved.target if resolved else None


def boolean_paths(resource: Resource) -> frozenset[str]:
    """Canonically spelled paths of boolean attributes (``active``, ``emails.primary``, ``urn:…:attr``).

    IdPs such as Azure AD send booleans as the strings "True"/"False"; a normaliser uses this to coerce them.
    """
    paths: set[str] = set()
    for schema in RESOURCE_SCHEMAS[resource]:
        prefix = "" if schema is RESOURCE_SCHEMAS[resource][0] else schema.id + ":"
        for attribute in schema.attributes:
            if attribute.type == "boolean":
                paths.add(prefix + attribute.name)
            paths.update(f"{prefix}{attribute.name}.{s.name}" for s in attribute.sub_attributes if s.type == "boolean")
    return frozenset(paths)


def schema_resource(schema: Schema, base_url: str) -> dict[str, Any]:
    """``schema`` as a ``Schema`` resource (RFC 7643 §7, served at ``/Schemas/{id}`` per RFC 7644 §4)."""
    return {
        "schemas": [urns.SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": [a.to_json() for a in schema.attributes],
        "meta": {"resourceType": "Schema", "location": f"{base_url.rstrip('/')}/Schemas/{schema.id}"},
    }
