"""Triggers that keep ``directory_user_emails`` equal to the addresses in each user's ``emails`` column.

In the database rather than in the write paths: users are written by the ORM, by prebuilt Core statements and in
grouped batches on both stores, and a trigger sees every one of them in the same transaction. An address is kept
lowercased with the database's own ``lower()``, the function the SCIM filters compare with (``emails`` values are
not case-exact, RFC 7643 §4.1.2), so the index finds exactly what the comparison would.

``install`` is called by the migration that creates the table and, for ``metadata.create_all``, on the table's
``after_create``; ``backfill`` fills the table from existing users.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, event


def _sqlite_rows(row: str, source: str = "") -> str:
    # Entries that are objects with a non-empty text value; the CASE keeps a non-array column from being walked.
    return (
        f"SELECT {row}.id, {row}.directory_id, lower(json_extract(e.value, '$.value'))"
        f" FROM {source}json_each(CASE json_type({row}.emails) WHEN 'array' THEN {row}.emails ELSE '[]' END) AS e"
        " WHERE e.type = 'object' AND json_type(e.value, '$.value') = 'text'"
        " AND json_extract(e.value, '$.value') <> ''"
    )


def _postgres_rows(row: str, source: str = "") -> str:
    return (
        f"SELECT {row}.id, {row}.directory_id, lower(e ->> 'value')"
        f" FROM {source}jsonb_array_elements(CASE jsonb_typeof({row}.emails) WHEN 'array' THEN {row}.emails"
        " ELSE '[]'::jsonb END) AS e"
        " WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'value') = 'string' AND e ->> 'value' <> ''"
    )


_INSERT = "INSERT INTO directory_user_emails (user_id, directory_id, value) "

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER directory_user_emails_insert AFTER INSERT ON directory_users BEGIN "
    f"INSERT OR IGNORE INTO directory_user_emails (user_id, directory_id, value) {_sqlite_rows('NEW')}; END",
    "CREATE TRIGGER directory_user_emails_update AFTER UPDATE OF emails ON directory_users"
    " WHEN OLD.emails IS NOT NEW.emails BEGIN DELETE FROM directory_user_emails WHERE user_id = OLD.id; "
    f"INSERT OR IGNORE INTO directory_user_emails (user_id, directory_id, value) {_sqlite_rows('NEW')}; END",
)

_POSTGRES_TRIGGERS = (
    "CREATE FUNCTION directory_user_emails_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP = 'UPDATE' THEN DELETE FROM directory_user_emails WHERE user_id = OLD.id; END IF;"
    f" {_INSERT}{_postgres_rows('NEW')} ON CONFLICT DO NOTHING; RETURN NULL; END $$",
    "CREATE TRIGGER directory_user_emails_insert AFTER INSERT ON directory_users"
    " FOR EACH ROW EXECUTE FUNCTION directory_user_emails_sync()",
    "CREATE TRIGGER directory_user_emails_update AFTER UPDATE OF emails ON directory_users"
    " FOR EACH ROW WHEN (OLD.emails IS DISTINCT FROM NEW.emails) EXECUTE FUNCTION directory_user_emails_sync()",
)

_DROP_SQLITE = ("DROP TRIGGER directory_user_emails_insert", "DROP TRIGGER directory_user_emails_update")
_DROP_POSTGRES = (
    "DROP TRIGGER directory_user_emails_insert ON directory_users",
    "DROP TRIGGER directory_user_emails_update ON directory_users",
    "DROP FUNCTION directory_user_emails_sync()",
)


def triggers(dialect: str) -> tuple[str, ...]:
    return _POSTGRES_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS


def drop_triggers(dialect: str) -> tuple[str, ...]:
    return _DROP_POSTGRES if dialect == "postgresql" else _DROP_SQLITE


def backfill(dialect: str) -> str:
    """Every existing user's addresses (the migration that creates the table runs it once)."""
    users = "directory_users AS u, "
    if dialect == "postgresql":
        return f"{_INSERT}{_postgres_rows('u', users)} ON CONFLICT DO NOTHING"
    return f"INSERT OR IGNORE INTO directory_user_emails (user_id, directory_id, value) {_sqlite_rows('u', users)}"


def install_on_create(table: Table) -> None:
    """Create the triggers whenever ``metadata.create_all`` creates ``table`` (tests build schemas that way)."""

    def create(target: Table, connection: Connection, **_kw: object) -> None:
        for statement in triggers(connection.dialect.name):
            connection.exec_driver_sql(statement)

    event.listen(table, "after_create", create)
