"""Operator tools: the public URL the server announced, API keys' last use, a bounded SCIM request log per directory
with the last wrong-token time, and one-time setup links for a customer's IT admin.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_settings",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("directories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_rejected_token_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "scim_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("directory_id", sa.String(), sa.ForeignKey("directories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("filter", sa.String(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("scim_type", sa.String(), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=True),
    )
    op.create_index("ix_scim_requests_directory_id_id", "scim_requests", ["directory_id", "id"])
    op.create_table(
        "setup_links",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column(
            "directory_id", sa.String(), sa.ForeignKey("directories.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("token_hash", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("setup_links")
    op.drop_index("ix_scim_requests_directory_id_id", table_name="scim_requests")
    op.drop_table("scim_requests")
    with op.batch_alter_table("directories", schema=None) as batch_op:
        batch_op.drop_column("last_rejected_token_at")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
    op.drop_table("server_settings")
