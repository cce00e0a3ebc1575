"""A compiled filter (scim.protocol.filter_predicates) answers exactly what ``filters.matches`` answers, on entries
of a multi-valued attribute (a PATCH value path) and on whole resources, errors included."""

from __future__ import annotations

from typing import Any

import pytest

from scim.protocol.errors import ScimError
from scim.protocol.filter_predicates import compile_filter
from scim.protocol.filters import matches, parse_filter

ENTRIES: list[dict[str, Any]] = [
    {"value": "Ada@Example.com", "type": "work", "primary": True},
    {"value": "ada@home.example", "type": "home"},
    {"value": "x", "type": None},
    {"value": 42, "type": "other"},
    {"Value": "ADA@example.com", "TYPE": "Work"},
    {"display": "no value"},
    {},
]
ENTRY_FILTERS = [
    'value eq "ada@example.com"',
    'value co "@example"',
    'value sw "ADA"',
    'value ew ".example"',
    'value ne "x"',
    "value eq null",
    "value ne null",
    "value pr",
    'type eq "work" and value co "ada"',
    'type eq "home" or primary eq true',
    'not (type eq "work")',
    "primary eq true",
    'value gt "b"',
    'value le "b"',
    "value eq 42",
]
USERS: list[dict[str, Any]] = [
    {
        "userName": "Ada",
        "active": True,
        "emails": [{"value": "ada@example.com", "type": "work"}, {"value": "a@b.c", "type": "home"}],
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "meta": {"lastModified": "2024-05-01T10:00:00Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
    },
    {"userName": "grace", "active": "False", "emails": "grace@example.com"},
    {"userName": "nobody"},
]
USER_FILTERS = [
    'userName eq "ADA"',
    'emails eq "ada@example.com"',
    'emails[type eq "work" and value co "example"]',
    'emails.value co "example"',
    'name.familyName sw "Love"',
    "active eq true",
    "emails pr",
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d"',
    'meta.lastModified gt "2024-01-01T00:00:00Z"',
    'title eq "x" or not (userName ew "e")',
]


def _answer(test: Any, element: dict[str, Any]) -> Any:
    try:
        return test(element)
    except ScimError as error:
        return ("refused", error.status, error.scim_type)


@pytest.mark.parametrize("text", ENTRY_FILTERS)
def test_entry_filters_answer_like_matches(text: str) -> None:
    where = parse_filter(text)
    predicate = compile_filter(where, resource="User", parent="emails")
    for entry in ENTRIES:
        expected = _answer(lambda e: matches(where, e, resource="User", parent="emails"), entry)
        assert _answer(predicate, entry) == expected, (text, entry)


@pytest.mark.parametrize("text", USER_FILTERS)
def test_resource_filters_answer_like_matches(text: str) -> None:
    where = parse_filter(text)
    predicate = compile_filter(where, resource="User")
    for user in USERS:
        expected = _answer(lambda e: matches(where, e, resource="User"), user)
        assert _answer(predicate, user) == expected, (text, user)


def test_an_operator_the_attribute_refuses_is_refused_when_applied() -> None:
    where = parse_filter("primary co true")
    predicate = compile_filter(where, resource="User", parent="emails")  # compiling does not raise
    with pytest.raises(ScimError) as refused:
        predicate(ENTRIES[0])
    with pytest.raises(ScimError) as expected:
        matches(where, ENTRIES[0], resource="User", parent="emails")
    assert (refused.value.status, refused.value.scim_type) == (expected.value.status, expected.value.scim_type)
