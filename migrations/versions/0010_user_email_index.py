"""An index of users' email addresses: ``directory_user_emails``, one row per distinct lowercased address, kept by
triggers on ``directory_users`` (``gateway.store.email_index``), so ``emails eq "…"`` filters read a few index
entries instead of every user's JSON.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store import email_index

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory_user_emails",
        sa.Column("user_id", sa.String(), sa.ForeignKey("directory_users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("value", sa.String(), primary_key=True),
        sa.Column("directory_id", sa.String(), nullable=False),
    )
    op.create_index("ix_directory_user_emails_directory_value", "directory_user_emails", ["directory_id", "value"])
    dialect = op.get_bind().dialect.name
    for statement in email_index.triggers(dialect):
        op.execute(statement)
    op.execute(email_index.backfill(dialect))


def downgrade() -> None:
    for statement in email_index.drop_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_index("ix_directory_user_emails_directory_value", table_name="directory_user_emails")
    op.drop_table("directory_user_emails")
