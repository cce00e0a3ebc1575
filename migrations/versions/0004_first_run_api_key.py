"""Mark the admin key `dsync serve` creates on first run; at most one active such key.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE_FIRST_RUN = "first_run AND revoked_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_run", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "uq_api_keys_first_run",
        "api_keys",
        ["first_run"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE_FIRST_RUN),
        postgresql_where=sa.text(_ACTIVE_FIRST_RUN),
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_first_run", table_name="api_keys")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("first_run")
