"""SCIM filters and PATCH paths: the parser, in-memory matching, and SQL run on real databases.

SQLite always; PostgreSQL too when DSYNC_TEST_POSTGRES_URL is set (each run uses a schema of its own).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel, col

from gateway.store.models import Directory, DirectoryGroup, DirectoryUser, GroupMembership, Organization
from scim.backend.columns import user_columns
from scim.protocol import urns
from scim.protocol.errors import ScimError
from scim.protocol.filter_sql import translate_filter
from scim.protocol.filters import (
    And,
    AttrPath,
    Compare,
    Not,
    Or,
    PatchPath,
    Present,
    ValuePath,
    matches,
    parse_filter,
    parse_path,
)
from scim.protocol.schemas import GROUP_SCHEMA, boolean_paths, find_attribute, schema_resource

ENTERPRISE = urns.ENTERPRISE_USER
DIRECTORY = "directory_1"
OTHER_DIRECTORY = "directory_2"


def when(month: int, day: int = 1) -> datetime:
    return datetime(2024, month, day, tzinfo=UTC)


def user(
    id: str,
    user_name: str,
    *,
    created: datetime,
    updated: datetime,
    directory: str = DIRECTORY,
    raw: dict[str, Any] | None = None,
    **columns: Any,
) -> DirectoryUser:
    raw_attributes = {"userName": user_name, **(raw or {})}
    return DirectoryUser(
        id=id,
        directory_id=directory,
        user_name=user_name,
        created_at=created,
        updated_at=updated,
        raw_attributes=raw_attributes,
        # The emails column as the store derives it (its addresses feed the email index filters start from).
        emails=user_columns(raw_attributes)["emails"],
        **columns,
    )


USERS = [
    user(
        "u1",
        "Alice@Example.com",
        idp_id="EXT-1",
        display_name="Alice Liddell",
        first_name="Alice",
        last_name="Liddell",
        job_title="Engineer",
        created=when(1),
        updated=when(3),
        raw={
            "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Ms. Alice Liddell"},
            "nickName": "Al",
            "emails": [
                {"value": "alice@acme.com", "type": "work", "primary": True},
                {"value": "alice@home.org", "type": "home"},
            ],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
            "addresses": [{"type": "work", "locality": "Berlin", "primary": True}],
            ENTERPRISE: {"employeeNumber": "1001", "department": "Sales", "manager": {"value": "u3"}},
        },
    ),
    user(
        "u2",
        "bob",
        idp_id="ext-2",
        display_name="Bob Stone",
        last_name="Stone",
        job_title="engineer",
        state="inactive",
        created=when(2),
        updated=when(6),
        raw={
            "nickName": "50%_off",
            # Azure AD sends booleans as strings.
            "emails": [{"value": "bob@acme.com", "type": "home", "primary": "False"}],
            ENTERPRISE: {"employeeNumber": "100%", "department": "Engineering"},
        },
    ),
    user(
        "u3",
        "carol_x",
        idp_id="ext-3",
        created=when(3),
        updated=when(9),
        raw={"nickName": "50 off", "emails": [], ENTERPRISE: {"manager": {"value": "u1", "displayName": "Alice"}}},
    ),
    # Sparse and untidy: a non-object email entry must not break queries.
    user("u4", "carolXx", created=when(4), updated=when(1), raw={"nickName": "50/off", "emails": ["junk"]}),
    # Same userName in another directory: the directory condition must keep it out.
    user("u5", "alice@example.com", directory=OTHER_DIRECTORY, created=when(1), updated=when(1)),
]
ALL_USERS = {"u1", "u2", "u3", "u4"}

GROUPS = [
    DirectoryGroup(
        id="g1",
        directory_id=DIRECTORY,
        idp_id="G-ENG",
        external_id="G-ENG",
        name="Engineering",
        created_at=when(1, 5),
        updated_at=when(2),
    ),
    DirectoryGroup(
        id="g2",
        directory_id=DIRECTORY,
        idp_id="g-[sales]*",
        external_id="g-[sales]*",
        name="Sales",
        created_at=when(1, 6),
        updated_at=when(5),
    ),
    DirectoryGroup(
        id="g3", directory_id=DIRECTORY, idp_id="Empty_Set", name="Empty_Set", created_at=when(1, 7), updated_at=when(7)
    ),
]
MEMBERSHIPS = [("g1", "u1"), ("g1", "u2"), ("g2", "u1")]


@dataclass
class Database:
    engine: AsyncEngine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def user_ids(self, filter_text: str) -> set[str]:
        condition = translate_filter(parse_filter(filter_text), resource="User", dialect=self.dialect)
        query = select(col(DirectoryUser.id)).where(col(DirectoryUser.directory_id) == DIRECTORY, condition)
        async with self.engine.connect() as connection:
            return set((await connection.execute(query)).scalars())

    async def group_ids(self, filter_text: str) -> set[str]:
        condition = translate_filter(parse_filter(filter_text), resource="Group", dialect=self.dialect)
        query = select(col(DirectoryGroup.id)).where(col(DirectoryGroup.directory_id) == DIRECTORY, condition)
        async with self.engine.connect() as connection:
            return set((await connection.execute(query)).scalars())


async def _seed(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)
        organization = Organization(id="org_1", name="Acme")
        directories = [
            Directory(id=d, organization_id="org_1", name=d, type="okta scim v2.0", token_hash=d)
            for d in (DIRECTORY, OTHER_DIRECTORY)
        ]
        # Core inserts rather than a Session: the same model instances seed both databases.
        await connection.execute(insert(Organization), [organization.model_dump()])
        await connection.execute(insert(Directory), [d.model_dump() for d in directories])
        await connection.execute(insert(DirectoryUser), [u.model_dump() for u in USERS])
        await connection.execute(insert(DirectoryGroup), [g.model_dump() for g in GROUPS])
        await connection.execute(
            insert(GroupMembership),
            [{"group_id": g, "user_id": u, "directory_id": DIRECTORY, "created_at": when(1)} for g, u in MEMBERSHIPS],
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('filters') / 'filters.db'}")
        await _seed(engine)
        yield Database(engine)
        await engine.dispose()
        return
    url = os.environ.get("DSYNC_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("DSYNC_TEST_POSTGRES_URL is not set")
    schema = f"test_filters_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await _seed(engine)
        yield Database(engine)
    finally:
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


USER_CASES: list[tuple[str, set[str]]] = [
    # userName: caseExact false, on both sides; operator and attribute names are case-insensitive too.
    ('userName eq "alice@example.com"', {"u1"}),
    ('USERNAME Eq "ALICE@EXAMPLE.COM"', {"u1"}),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "BOB"', {"u2"}),
    ('userName ne "bob"', {"u1", "u3", "u4"}),
    ('userName co "EXAMPLE"', {"u1"}),
    ('userName sw "CAROL"', {"u3", "u4"}),
    ('userName ew ".COM"', {"u1"}),
    ('userName gt "bob"', {"u3", "u4"}),
    ('userName ge "bob"', {"u2", "u3", "u4"}),
    ('userName lt "bob"', {"u1"}),
    ('userName le "BOB"', {"u1", "u2"}),
    # externalId: caseExact true.
    ('externalId eq "EXT-1"', {"u1"}),
    ('externalId eq "ext-1"', set()),
    ('externalId co "XT"', {"u1"}),
    ('externalId sw "ext"', {"u2", "u3"}),
    ("externalId eq null", {"u4"}),
    ("externalId ne null", {"u1", "u2", "u3"}),
    # Other columns; absent values never equal anything, so ne and not() include them.
    ('title eq "ENGINEER"', {"u1", "u2"}),
    ('title ne "engineer"', {"u3", "u4"}),
    ("title pr", {"u1", "u2"}),
    ("not (title pr)", {"u3", "u4"}),
    ('displayName co "li"', {"u1"}),
    ('displayName ew "STONE"', {"u2"}),
    ('name.givenName eq "alice"', {"u1"}),
    ("name.familyName pr", {"u1", "u2"}),
    ('name.formatted co "ms."', {"u1"}),
    ("name pr", {"u1", "u2"}),
    ('name[givenName sw "al" and familyName eq "LIDDELL"]', {"u1"}),
    ('nickName eq "al"', {"u1"}),
    # active is state == 'active'.
    ("active eq true", {"u1", "u3", "u4"}),
    ("active eq FALSE", {"u2"}),
    ("active ne true", {"u2"}),
    ('active eq "False"', {"u2"}),
    ("active pr", ALL_USERS),
    # LIKE wildcards in values are literal.
    ('userName sw "carol_"', {"u3"}),
    ('nickName co "%_"', {"u2"}),
    ('nickName co "0%"', {"u2"}),
    ('nickName co "0/o"', {"u4"}),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ew "%"', {"u2"}),
    # Multi-valued attributes: any element, or one element satisfying the whole value filter.
    ("emails pr", {"u1", "u2", "u4"}),
    ('emails eq "BOB@acme.com"', {"u2"}),
    ('emails.value co "@ACME.com"', {"u1", "u2"}),
    ('emails.type eq "work"', {"u1"}),
    ('emails[type eq "work" and value co "@acme"]', {"u1"}),
    ('emails[type eq "home" and value co "@acme"]', {"u2"}),
    ('emails[type eq "work" or value ew ".org"]', {"u1"}),
    ('emails[not (type eq "work")]', {"u1", "u2", "u4"}),
    ("emails.primary eq true", {"u1"}),
    ("emails[primary eq false]", {"u2"}),
    ('emails[value eq "x" or (type eq "home" and not (value ew ".org"))]', {"u2"}),
    ('phoneNumbers[type eq "mobile"]', {"u1"}),
    ('addresses[locality eq "berlin" and primary eq true]', {"u1"}),
    ('title eq "engineer" and emails[type eq "work"]', {"u1"}),
    # Enterprise extension: URN-qualified, stored under its URN.
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales"', {"u1"}),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department ne "sales"', {"u2", "u3", "u4"}),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "u3"', {"u1"}),
    ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager pr", {"u1", "u3"}),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq "u1"]', {"u3"}),
    ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName pr", {"u3"}),
    # meta: datetimes compared as datetimes, offsets honoured.
    ('meta.lastModified gt "2024-05-01T00:00:00Z"', {"u2", "u3"}),
    ('meta.created ge "2024-02-01T00:00:00+00:00"', {"u2", "u3", "u4"}),
    ('meta.created lt "2024-02-01T01:00:00+02:00"', {"u1"}),
    ('meta.created eq "2024-03-01T00:00:00Z"', {"u3"}),
    ('meta.lastModified le "2024-03-01T00:00:00"', {"u1", "u4"}),
    ('meta.resourceType eq "User"', ALL_USERS),
    ("meta pr", ALL_USERS),
    ('id eq "u2"', {"u2"}),
    # groups: EXISTS over group_memberships.
    ('groups eq "g2"', {"u1"}),
    ('groups.value eq "g1"', {"u1", "u2"}),
    ("groups pr", {"u1", "u2"}),
    ("not (groups pr)", {"u3", "u4"}),
    ('groups.display eq "sales"', {"u1"}),
    ('groups[display sw "Eng" and value eq "g1"]', {"u1", "u2"}),
    # Precedence: and binds tighter than or; parentheses and not() override.
    ('userName eq "bob" or userName eq "carol_x" and active eq false', {"u2"}),
    ('(userName eq "bob" or userName eq "carol_x") and active eq true', {"u3"}),
    ('userName eq "bob" or (userName eq "carol_x" and active eq true)', {"u2", "u3"}),
    ('not (userName eq "bob" or title pr)', {"u3", "u4"}),
    ('not (not (userName eq "bob"))', {"u2"}),
    ('title pr and not (active eq true) or userName sw "carolx"', {"u2", "u4"}),
    ('  userName\teq    "bob"\n ', {"u2"}),
    ('((userName eq "bob"))and(title pr)', {"u2"}),
]

GROUP_CASES: list[tuple[str, set[str]]] = [
    ('displayName eq "engineering"', {"g1"}),
    ('displayName co "_"', {"g3"}),
    ('displayName sw "e"', {"g1", "g3"}),
    ('externalId eq "G-ENG"', {"g1"}),
    ('externalId eq "g-eng"', set()),
    ("externalId pr", {"g1", "g2"}),
    # caseExact LIKE: SQLite needs GLOB, whose wildcards must be escaped too.
    ('externalId co "ENG"', {"g1"}),
    ('externalId co "eng"', set()),
    ('externalId co "[s"', {"g2"}),
    ('externalId ew "]*"', {"g2"}),
    ('externalId co "?"', set()),
    ('externalId sw "*"', set()),
    ('members eq "u2"', {"g1"}),
    ('members.value eq "u1"', {"g1", "g2"}),
    ("members pr", {"g1", "g2"}),
    ("not (members pr)", {"g3"}),
    ('members[value eq "u1" and display co "ALICE"]', {"g1", "g2"}),
    ('members[value eq "u2"] or displayName sw "emp"', {"g1", "g3"}),
    ('members.type eq "User"', {"g1", "g2"}),
    ('meta.lastModified ge "2024-05-01T00:00:00Z"', {"g2", "g3"}),
    ('urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "SALES"', {"g2"}),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("filter_text", "expected"), USER_CASES)
async def test_user_filters(db: Database, filter_text: str, expected: set[str]) -> None:
    assert await db.user_ids(filter_text) == expected


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("filter_text", "expected"), GROUP_CASES)
async def test_group_filters(db: Database, filter_text: str, expected: set[str]) -> None:
    assert await db.group_ids(filter_text) == expected


@pytest.mark.parametrize(
    ("resource", "filter_text"),
    [
        ("User", 'nosuch eq "x"'),
        ("User", 'name eq "x"'),
        ("User", 'active co "t"'),
        ("User", "active gt true"),
        ("User", 'active eq "maybe"'),
        ("User", 'meta.lastModified gt "yesterday"'),
        ("User", "meta.created gt 5"),
        ("User", 'meta.created co "2024"'),
        ("User", 'meta.location eq "x"'),
        ("User", 'password eq "secret"'),
        ("User", 'emails[nosuch eq "x"]'),
        ("User", "userName eq true"),
        ("User", "userName gt null"),
        ("User", 'title[value eq "x"]'),
        ("User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User pr"),
        ("User", 'urn:example:custom:1.0:User:badge eq "x"'),
        ("User", 'employeeNumber eq "1"'),  # extension attributes need their URN (RFC 7644 §3.10)
        ("User", 'members eq "u1"'),
        ("Group", 'userName eq "x"'),
        ("Group", 'members.$ref eq "x"'),
    ],
)
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_translation_rejects_meaningless_filters(resource: Any, filter_text: str, dialect: str) -> None:
    with pytest.raises(ScimError) as caught:
        translate_filter(parse_filter(filter_text), resource=resource, dialect=dialect)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidFilter")


def test_user_name_equality_uses_the_lower_index() -> None:
    condition = translate_filter(parse_filter('userName eq "X"'), resource="User", dialect="sqlite")
    for dialect in (make_url("sqlite://").get_dialect()(), make_url("postgresql+asyncpg://").get_dialect()()):
        sql = str(condition.compile(dialect=dialect))
        assert sql.startswith("lower(directory_users.user_name) = lower(")
        assert "IS NOT NULL" not in sql


# --- parser ---------------------------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (AttrPath(None, name) for name in "abc")
    assert parse_filter("a pr or b pr and c pr") == Or((Present(a), And((Present(b), Present(c)))))
    assert parse_filter("(a pr or b pr) and c pr") == And((Or((Present(a), Present(b))), Present(c)))
    assert parse_filter("a pr and b pr and c pr") == And((Present(a), Present(b), Present(c)))
    assert parse_filter("NOT (a pr)") == Not(Present(a))


@pytest.mark.parametrize(
    ("filter_text", "value"),
    [
        ('a eq "q\\"uote \\u00e9\\n"', 'q"uote é\n'),
        ("a eq TRUE", True),
        ("a eq False", False),
        ("a eq null", None),
        ("a eq -3", -3),
        ("a eq 1.5e2", 150.0),
        ('a eq ""', ""),
    ],
)
def test_comparison_values_are_json(filter_text: str, value: Any) -> None:
    parsed = parse_filter(filter_text)
    assert isinstance(parsed, Compare) and parsed.value == value and type(parsed.value) is type(value)


def test_paths_and_value_paths() -> None:
    assert parse_filter(f'{ENTERPRISE}:manager.value eq "x"') == Compare(
        AttrPath(ENTERPRISE, "manager", "value"), "eq", "x"
    )
    assert parse_filter('members[value eq "u1"]') == ValuePath(
        AttrPath(None, "members"), Compare(AttrPath(None, "value"), "eq", "u1")
    )
    assert parse_filter('emails[type eq "work" and not (value sw "x")]') == ValuePath(
        AttrPath(None, "emails"),
        And((Compare(AttrPath(None, "type"), "eq", "work"), Not(Compare(AttrPath(None, "value"), "sw", "x")))),
    )
    assert parse_filter("groups.$ref pr") == Present(AttrPath(None, "groups", "$ref"))


@pytest.mark.parametrize(
    "filter_text",
    [
        "",
        "   ",
        '(userName eq "a"',
        'userName eq "a")',
        '((userName eq "a") or (title pr)',
        "userName eq",
        "userName",
        'userName xx "a"',
        'userName eq "a" garbage',
        'userName eq "a" and',
        'or userName eq "a"',
        'userName eq "unterminated',
        'userName eq "bad \\x escape"',
        'userName eq "a" && title pr',
        '1userName eq "x"',
        '"userName" eq "x"',
        "userName pr pr",
        'emails[type eq "work"',
        "emails[]",
        "emails[phoneNumbers[type pr]]",
        'emails[emails.type eq "work"]',
        "name.givenName[value pr]",
        'not userName eq "x"',
        "not ()",
        "urn:bad path eq 1",
        "x" * 5000,
        "(" * 40 + "a pr" + ")" * 40,
        "not (" * 40 + "a pr" + ")" * 40,
    ],
)
def test_malformed_filters_are_invalid_filter(filter_text: str) -> None:
    with pytest.raises(ScimError) as caught:
        parse_filter(filter_text)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidFilter")


def test_errors_say_where() -> None:
    with pytest.raises(ScimError, match="position 17"):
        parse_filter('userName eq "a" john')
    with pytest.raises(ScimError, match="end of filter"):
        parse_filter("userName eq")
    with pytest.raises(ScimError, match="longer than 4096"):
        parse_filter("a pr and " * 500 + "a pr")


def test_deep_but_allowed_nesting_parses() -> None:
    assert parse_filter("(" * 30 + "a pr" + ")" * 30) == Present(AttrPath(None, "a"))
    long_chain = " and ".join(["a pr"] * 400)  # n-ary, so no recursion per operand
    assert isinstance(parse_filter(long_chain), And)


# --- PATCH paths -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path_text", "expected", "target"),
    [
        ("members", PatchPath(AttrPath(None, "members")), "members"),
        ("name.givenName", PatchPath(AttrPath(None, "name"), sub="givenName"), "name.givenName"),
        (f"{ENTERPRISE}:department", PatchPath(AttrPath(ENTERPRISE, "department")), f"{ENTERPRISE}:department"),
        (
            f"{ENTERPRISE}:manager.value",
            PatchPath(AttrPath(ENTERPRISE, "manager"), sub="value"),
            f"{ENTERPRISE}:manager.value",
        ),
        (
            'members[value eq "u1"]',
            PatchPath(AttrPath(None, "members"), Compare(AttrPath(None, "value"), "eq", "u1")),
            "members",
        ),
        (
            'emails[type eq "work"].value',
            PatchPath(AttrPath(None, "emails"), Compare(AttrPath(None, "type"), "eq", "work"), "value"),
            "emails.value",
        ),
        (
            'emails[type eq "work" and primary eq true].display',
            PatchPath(
                AttrPath(None, "emails"),
                And((Compare(AttrPath(None, "type"), "eq", "work"), Compare(AttrPath(None, "primary"), "eq", True))),
                "display",
            ),
            "emails.display",
        ),
    ],
)
def test_parse_path(path_text: str, expected: PatchPath, target: str) -> None:
    parsed = parse_path(path_text)
    assert parsed == expected
    assert parsed.target == target
    assert find_attribute("User" if "members" not in target else "Group", parsed.target) is not None


def test_path_naming_a_whole_extension() -> None:
    parsed = parse_path(ENTERPRISE)
    attribute = find_attribute("User", parsed.target)
    assert attribute is not None and attribute.type == "complex" and attribute.sub_attribute("manager") is not None


@pytest.mark.parametrize(
    "path_text",
    [
        "",
        'emails[type eq "work"',
        'emails[type eq "work"]value',
        'emails[type eq "work"].',
        'emails[type eq "work"].value.display',
        "name.givenName[value pr]",
        "userName extra",
        "emails[]",
        "a.b.c",
    ],
)
def test_malformed_paths_are_invalid_path(path_text: str) -> None:
    with pytest.raises(ScimError) as caught:
        parse_path(path_text)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidPath")


# --- matching JSON elements -------------------------------------------------------------------------------------

ALICE: dict[str, Any] = {
    "userName": "Alice@Example.com",
    "active": "True",
    "emails": [
        {"value": "alice@acme.com", "type": "work", "primary": True},
        {"value": "alice@home.org", "type": "home"},
    ],
    ENTERPRISE: {"department": "Sales", "manager": {"value": "u3"}},
    "meta": {"lastModified": "2024-03-01T00:00:00Z"},
}


@pytest.mark.parametrize(
    ("filter_text", "element", "parent", "expected"),
    [
        ('type eq "work"', {"type": "Work", "value": "a"}, "emails", True),
        ('value eq "A@X.COM"', {"value": "a@x.com"}, "emails", True),
        ('type eq "work" and value co "@acme"', {"type": "work", "value": "x@ACME.com"}, "emails", True),
        ('type eq "work" and value co "@acme"', {"type": "home", "value": "x@acme.com"}, "emails", False),
        ('not (type eq "work")', {"value": "x"}, "emails", True),
        ("primary eq true", {"primary": "True"}, "emails", True),
        ("primary eq false", {"primary": "False"}, "emails", True),
        ("primary eq false", {}, "emails", False),
        ("primary eq false", {"primary": "maybe"}, "emails", False),
        ("primary ne true", {}, "emails", True),
        ("display pr", {"display": ""}, "emails", False),
        ("display pr", {"display": "Work"}, "emails", True),
        ('value gt "b"', {"value": "C"}, "emails", True),
        ('value eq "u1"', {"value": "u1", "display": "Alice"}, "members", True),
        ('value eq "u1" or value eq "u2"', {"value": "u2"}, "members", True),
        ('value eq "u1"', {"value": "u9"}, "members", False),
        ('VALUE sw "u"', {"Value": "u9"}, "members", True),
        # Whole resources (parent None).
        ('emails[type eq "work" and value co "acme"]', ALICE, None, True),
        ('emails[type eq "home" and value co "acme"]', ALICE, None, False),
        ('emails.value ew ".org"', ALICE, None, True),
        ('emails eq "ALICE@home.org"', ALICE, None, True),
        ('userName eq "alice@example.com"', ALICE, None, True),
        ("active eq true", ALICE, None, True),
        (f'{ENTERPRISE}:department eq "sales"', ALICE, None, True),
        (f'{ENTERPRISE}:manager.value eq "u3"', ALICE, None, True),
        ('meta.lastModified gt "2024-01-01T00:00:00+01:00"', ALICE, None, True),
        ('meta.lastModified lt "2024-01-01T00:00:00Z"', ALICE, None, False),
        ("phoneNumbers pr", ALICE, None, False),
        ('phoneNumbers.value ne "x"', ALICE, None, False),  # no entries, nothing to differ
        ('title ne "x"', ALICE, None, True),
    ],
)
def test_matches(filter_text: str, element: dict[str, Any], parent: str | None, expected: bool) -> None:
    resource: Any = "Group" if parent == "members" else "User"
    assert matches(parse_filter(filter_text), element, resource=resource, parent=parent) is expected


def test_matches_rejects_meaningless_comparisons() -> None:
    for filter_text in ('primary co "t"', 'primary eq "maybe"', "value eq true", "value co null"):
        with pytest.raises(ScimError) as caught:
            matches(parse_filter(filter_text), {"primary": True, "value": "x"}, resource="User", parent="emails")
        assert caught.value.scim_type == "invalidFilter"


# --- the schema lookups the filters rely on ---------------------------------------------------------------------


def test_find_attribute() -> None:
    assert find_attribute("User", "USERNAME") is not None
    assert find_attribute("User", "name.GIVENNAME") == find_attribute("User", "name.givenName")
    assert find_attribute("User", "urn:ietf:params:scim:schemas:core:2.0:User:userName") is not None
    employee = find_attribute("User", f"{ENTERPRISE.upper()}:employeeNumber")
    assert employee is not None and employee.name == "employeeNumber"
    manager_name = find_attribute("User", f"{ENTERPRISE}:manager.displayName")
    assert manager_name is not None and manager_name.mutability == "readOnly"
    password = find_attribute("User", "password")
    assert password is not None and (password.mutability, password.returned) == ("writeOnly", "never")
    groups = find_attribute("User", "groups")
    assert groups is not None and groups.mutability == "readOnly"
    meta = find_attribute("Group", "meta.lastModified")
    assert meta is not None and meta.type == "dateTime"
    assert find_attribute("Group", "userName") is None
    assert find_attribute("User", "name.givenName.x") is None
    assert find_attribute("User", "employeeNumber") is None


def test_boolean_paths_and_schema_resource() -> None:
    assert {"active", "emails.primary", "addresses.primary"} <= boolean_paths("User")
    assert boolean_paths("Group") == frozenset()
    rendered = schema_resource(GROUP_SCHEMA, "https://dsync.example/scim/v2/")
    assert rendered["meta"] == {
        "resourceType": "Schema",
        "location": "https://dsync.example/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
    }
    members = next(a for a in rendered["attributes"] if a["name"] == "members")
    assert {s["name"] for s in members["subAttributes"]} >= {"value", "$ref", "type"}


@pytest.mark.parametrize(
    ("filter_text", "value"),
    [
        ("userName eq john", "john"),
        ("userName eq john@acme.com", "john@acme.com"),
        ("userName   eq\tjohn@acme.com ", "john@acme.com"),
        ("externalId eq 1abc", "1abc"),
        ("externalId eq 00u1a2b3", "00u1a2b3"),
    ],
)
def test_unquoted_values_are_strings_where_unambiguous(filter_text: str, value: str) -> None:
    parsed = parse_filter(filter_text)
    assert isinstance(parsed, Compare) and parsed.value == value


def test_unquoted_literals_and_numbers_keep_their_meaning() -> None:
    assert parse_filter("active eq true") == parse_filter("active eq TRUE")
    parsed = parse_filter("x eq 12")
    assert isinstance(parsed, Compare) and parsed.value == 12
    combined = parse_filter("userName eq john and active eq false")
    assert isinstance(combined, And) and len(combined.operands) == 2


def test_sub_attribute_after_a_value_filter_means_the_same_element() -> None:
    """Entra ID's ``emails[type eq "work"].value eq "x"`` reads as ``emails[type eq "work" and value eq "x"]``."""
    assert parse_filter('emails[type eq "work"].value eq "x"') == parse_filter(
        'emails[type eq "work" and value eq "x"]'
    )
