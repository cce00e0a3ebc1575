"""Statements with their values written in as constants, for a PostgreSQL batch's COMMIT query: each value becomes the
constant PostgreSQL reads back as that value, or the statement is refused (it then goes with parameters)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from gateway.store.batch_driver import inlined, inlined_insert, literal


@pytest.mark.parametrize(
    ("value", "constant"),
    [
        (None, "NULL"),
        (True, "true"),
        (False, "false"),
        (0, "(0)"),
        (-7, "(-7)"),
        (2.5, "(2.5)"),
        ("plain", "'plain'"),
        ("O'Brien", "'O''Brien'"),
        ("back\\slash", "'back\\slash'"),
        ("$1 $$x$$", "'$1 $$x$$'"),
        (datetime.datetime(2026, 12, 4, 9, 30, 1, 5, tzinfo=datetime.UTC), "'2026-12-04T09:30:01.000005+00:00'"),
        (datetime.date(2026, 12, 4), "'2026-12-04'"),
    ],
)
def test_a_value_becomes_its_constant(value: Any, constant: str) -> None:
    assert literal(value) == constant


@pytest.mark.parametrize(
    "value",
    [
        "nul\x00inside",  # PostgreSQL's text holds none, and a simple query would end there
        float("nan"),
        float("inf"),
        datetime.datetime(2026, 12, 4, 9, 30),  # naive: read in the session's time zone, where asyncpg takes UTC
        b"bytes",
        ["an", "array"],
    ],
)
def test_a_value_without_a_constant_refuses_the_statement(value: Any) -> None:
    assert literal(value) is None
    assert inlined("UPDATE t SET a = $1::VARCHAR WHERE id = $2::VARCHAR", [value, "x"]) is None


def test_placeholders_are_replaced_but_not_inside_constants_or_quoted_names() -> None:
    sql = "UPDATE t SET a = $1::VARCHAR, \"odd$2\" = '$2', b = $10::INTEGER WHERE id = $2::VARCHAR"
    values = ["it's", "id-1", None, None, None, None, None, None, None, 12]
    assert inlined(sql, values) == (
        "UPDATE t SET a = 'it''s'::VARCHAR, \"odd$2\" = '$2', b = (12)::INTEGER WHERE id = 'id-1'::VARCHAR"
    )


def test_rows_of_an_insert_become_one_statement() -> None:
    sql = "INSERT INTO t (id, n, at) VALUES ($1::VARCHAR, $2::INTEGER, $3::TIMESTAMP WITH TIME ZONE)"
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert inlined_insert(sql, [("a", 1, at), ("b'", None, at)]) == (
        "INSERT INTO t (id, n, at) VALUES ('a'::VARCHAR, (1)::INTEGER, '2026-01-02T03:04:05+00:00'::TIMESTAMP WITH "
        "TIME ZONE), ('b'''::VARCHAR, NULL::INTEGER, '2026-01-02T03:04:05+00:00'::TIMESTAMP WITH TIME ZONE)"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (id) VALUES ($1::VARCHAR) RETURNING t.id",
        "INSERT INTO t (id) VALUES ($1::VARCHAR) ON CONFLICT (id) DO NOTHING",
        "INSERT INTO t (id) SELECT $1::VARCHAR",
        "INSERT INTO t (id) VALUES (lower($1::VARCHAR))",
    ],
)
def test_an_insert_of_another_shape_is_not_rewritten(sql: str) -> None:
    assert inlined_insert(sql, [("a",)]) is None
