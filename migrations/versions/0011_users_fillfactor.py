"""Room on each page of ``directory_users`` and ``directory_groups`` (PostgreSQL's ``fillfactor``) for a row's next
version, so an update that changes no indexed column (a PUT's new title, the version bump of a member add) is a HOT
update: the new version goes on the same page and none of the table's indexes (six for users) gets a new entry.
Full pages made every such update rewrite them all. It applies to pages written from now on; SQLite has no such
setting.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("directory_users", "directory_groups")
_FILLFACTOR = 75  # ``gateway.store.models.UPDATED_TABLES_FILLFACTOR`` when written


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
