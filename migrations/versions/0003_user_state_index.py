"""Index users by (directory, state): directory counts by state read the index, not the table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_directory_users_directory_id_state", "directory_users", ["directory_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_directory_users_directory_id_state", table_name="directory_users")
