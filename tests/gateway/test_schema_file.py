"""schema.graphql at the root is exactly what `dsync export-schema` prints."""

from __future__ import annotations

from pathlib import Path

from gateway.graphql import schema


def test_schema_file_matches_the_code() -> None:
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", "regenerate: dsync export-schema > schema.graphql"
