"""externalId is not unique (RFC 7643 §3.1 gives it no uniqueness): plain indexes replace the unique ones on a
user's ``idp_id`` and a group's ``external_id``, still serving ``externalId eq …`` filters.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("uq_directory_users_idp_id", table_name="directory_users")
    op.create_index("ix_directory_users_idp_id", "directory_users", ["directory_id", "idp_id"])
    op.drop_index("uq_directory_groups_external_id", table_name="directory_groups")
    op.create_index("ix_directory_groups_external_id", "directory_groups", ["directory_id", "external_id"])


def downgrade() -> None:
    # Fails (and changes nothing) while a directory holds two users or two groups with one externalId.
    op.drop_index("ix_directory_groups_external_id", table_name="directory_groups")
    op.create_index("uq_directory_groups_external_id", "directory_groups", ["directory_id", "external_id"], unique=True)
    op.drop_index("ix_directory_users_idp_id", table_name="directory_users")
    op.create_index("uq_directory_users_idp_id", "directory_users", ["directory_id", "idp_id"], unique=True)
