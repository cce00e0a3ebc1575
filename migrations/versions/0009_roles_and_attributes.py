"""Roles from IdP groups and custom attributes from IdP fields: role and attribute definitions per organization,
their mappings per directory, each user's computed role(s), a per-directory rules version, and the queue of
background re-evaluations a mapping change asks for.

Plain ADD COLUMN on the existing tables (a batch copy on SQLite would drop the expression index on
lower(user_name)).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(name: str, target: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), sa.ForeignKey(target, ondelete="CASCADE"), nullable=False)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("directories", sa.Column("rules_version", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("directory_users", sa.Column("role", sa.String(), nullable=True))
    op.add_column("directory_users", sa.Column("roles", _json(), nullable=False, server_default="[]"))
    op.create_index("ix_directory_users_directory_id_role", "directory_users", ["directory_id", "role"])
    op.create_table(
        "roles",
        sa.Column("id", sa.String(), primary_key=True),
        _fk("organization_id", "organizations.id"),
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_roles_organization_slug", "roles", ["organization_id", "slug"], unique=True)
    op.create_table(
        "role_mappings",
        sa.Column("id", sa.String(), primary_key=True),
        _fk("directory_id", "directories.id"),
        _fk("group_id", "directory_groups.id"),
        _fk("role_id", "roles.id"),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_role_mappings_group_id", "role_mappings", ["group_id"], unique=True)
    op.create_index("ix_role_mappings_directory_id", "role_mappings", ["directory_id"])
    op.create_index("ix_role_mappings_role_id", "role_mappings", ["role_id"])
    op.create_table(
        "attribute_definitions",
        sa.Column("id", sa.String(), primary_key=True),
        _fk("organization_id", "organizations.id"),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_attribute_definitions_organization_name", "attribute_definitions", ["organization_id", "name"], unique=True
    )
    op.create_table(
        "attribute_mappings",
        sa.Column("id", sa.String(), primary_key=True),
        _fk("directory_id", "directories.id"),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_attribute_mappings_directory_name", "attribute_mappings", ["directory_id", "name"], unique=True)
    op.create_table(
        "rule_evaluations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        _fk("directory_id", "directories.id"),
        sa.Column("group_id", sa.String(), nullable=True),
        sa.Column("after_user_id", sa.String(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rule_evaluations_directory_id", "rule_evaluations", ["directory_id"])


def downgrade() -> None:
    op.drop_table("rule_evaluations")
    op.drop_table("attribute_mappings")
    op.drop_table("attribute_definitions")
    op.drop_table("role_mappings")
    op.drop_table("roles")
    with op.batch_alter_table("directory_users") as batch_op:
        batch_op.drop_column("roles")
        batch_op.drop_column("role")
    with op.batch_alter_table("directories") as batch_op:
        batch_op.drop_column("rules_version")
