"""A request's way into its directory: bearer authentication bound to the directory in the URL, the directory's
rate limit charged once it is authenticated, and activation on first contact."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Select, TextualSelect, bindparam, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.events.log import record_event
from gateway.events.payloads import EventName, directory_payload, iso
from gateway.store.batch_driver import LOCK_FIRST, LOCK_FIRST_PREFIX, LockFirst
from gateway.store.credentials import hash_secret, secret_matches
from gateway.store.grouped_writer import batch_memo, direct_statements, keep_batch_memo, postgres_statements
from gateway.store.models import Directory, DirectoryState, utcnow
from scim.protocol.errors import ScimError

_GET_DIRECTORY = select(Directory.__table__).where(Directory.__table__.c.id == bindparam("id"))  # type: ignore[attr-defined]
# Matching the token's hash too: a request with a wrong token locks nothing.
_LOCK_DIRECTORY = _GET_DIRECTORY.where(
    _GET_DIRECTORY.selected_columns.token_hash == bindparam("token_hash")
).with_for_update(key_share=True)

# The directory's row lock as a write batch takes it before its first statement or at its end
# (``AsyncpgStatements.lock_later``): true, or an error (a division by zero: no row) unless the row is still as the
# batch's jobs saw it (``_still_as_seen`` gives the parameters besides ``:directory_id``), so that what they did on
# that snapshot stands. ``prefix``: of its parameters' names.
_SEEN_COLUMNS = ("organization_id", "name", "type", "state", "deprovision_policy", "token_hash", "updated_at")


def _still_as_seen_sql(prefix: str = "") -> str:
    return (
        f"(SELECT 1 / count(*) FROM (SELECT FROM directories WHERE id = :{prefix}directory_id"
        f" AND rules_version = :{prefix}seen_rules_version"
        + "".join(f" AND {name} IS NOT DISTINCT FROM :{prefix}seen_{name}" for name in _SEEN_COLUMNS)
        + " FOR NO KEY UPDATE) AS locked) = 1"
    )


_LOCK_AS_SEEN = text(f"SELECT {_still_as_seen_sql()}")
# A statement sent together with others (``rows_together``) that can take that lock as its run's first execution
# (``LockFirst``): this condition, of no row of the statement's and of none of its parameters (the lock's go under
# ``LOCK_FIRST_PREFIX``), is a one-time filter of its outermost query, checked before any of its plan runs; with
# ``LOCK_FIRST`` true, the check (or its error), then false: no row.
LOCK_FIRST_GATE_SQL = (
    f"CASE WHEN CAST(:{LOCK_FIRST} AS BOOLEAN) THEN NOT ({_still_as_seen_sql(LOCK_FIRST_PREFIX)}) ELSE true END"
)


def taking_lock_first(statement: Select[Any] | TextualSelect, *, gated: bool = False) -> LockFirst:
    """``statement`` in the variant that takes the directory's kept lock first (``LockFirst``); ``gated``: its SQL
    has the condition (``LOCK_FIRST_GATE_SQL``) already. Its outermost query must be one that PostgreSQL cannot
    prove empty from its own parameters (None in the lock's execution), or it could leave the condition unchecked:
    one that reads CTEs that write, or a ``MATERIALIZED`` one, not a table by a key."""
    if not gated:
        assert isinstance(statement, Select)
        statement = statement.where(text(LOCK_FIRST_GATE_SQL))
    return LockFirst(statement, stands_for=_LOCK_AS_SEEN)


# Each directory's row as the last write batch of this process locked it: the snapshot the next batches' jobs start
# from, their lock taken at the end (``_LOCK_AS_SEEN``). Bounded: emptied when it outgrows this many directories.
_seen: dict[str, dict[str, Any]] = {}
_SEEN_MAX = 10_000

# Charges one request against the authenticated directory's rate limit: None if admitted, else the refusal (429).
# Made per request by the api layer: it charges once however often the request's job runs.
Admit = Callable[[Directory], ScimError | None]


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ScimError(401, "Missing or malformed bearer token")
    return token.strip()


def _still_as_seen(directory: Mapping[str, Any]) -> dict[str, Any]:
    """``_LOCK_AS_SEEN``'s parameters for the directory's row as a job saw it, ``:directory_id`` aside."""
    return {f"seen_{name}": directory[name] for name in (*_SEEN_COLUMNS, "rules_version")}


def authenticate(session: Session, *, directory_id: str, authorization: str | None, lock: bool = False) -> Directory:
    """The directory whose URL was called, if the token is its current one (RFC 7644 §2).

    ``lock`` (write transactions): on PostgreSQL the directory's row stays locked (``FOR NO KEY UPDATE``) until the
    commit, so one directory's writes apply one at a time, each reading what the one before it committed: two
    requests changing one user never lose an update, and a membership change never deadlocks with a user change.
    Different directories still write in parallel. SQLite has a single writer already."""
    token = bearer_token(authorization)
    # Read afresh by every job, with one prebuilt Core query (a read-only snapshot is all authentication and the
    # event payloads need): a rotated token, a deleted directory or a new deprovisioning policy holds from the very
    # next job on. Write jobs of one grouped transaction share what the first of them read: the row stays locked
    # (PostgreSQL) or the database is (SQLite's single writer) until the commit, so no other process can change it
    # meanwhile, and any other kind of job in the batch makes the next one read it again (``batch_memo``).
    memo: dict[str, Any] | None = batch_memo(session) if lock else None
    seen: Directory | None = None if memo is None else memo.get(directory_id)
    if seen is not None:
        keep_batch_memo(session)
        # The snapshot the first job made (read-only, like every one): only this job's token is left to check.
        if not secret_matches(token, seen.token_hash):
            raise _invalid_token()
        return seen
    row = _read_directory(session, directory_id=directory_id, token=token, lock=lock)
    directory = authorized(row, token)
    if memo is not None:
        memo[directory_id] = directory
        keep_batch_memo(session)
    return directory


def authorized(row: Mapping[str, Any] | None, token: str) -> Directory:
    """The directory read as ``row`` (None: there is none) if ``token`` is its current one, else the 401."""
    # An unknown (or deleted) directory answers exactly like a wrong token: whoever holds no valid token learns
    # nothing, not even which directory ids exist.
    if row is None or not secret_matches(token, row["token_hash"]):
        raise _invalid_token()
    return Directory.model_construct(**row)


def _invalid_token() -> ScimError:
    return ScimError(401, "Invalid bearer token for this directory")


_DIRECTORY_COLUMNS = tuple(column.name for column in _GET_DIRECTORY.selected_columns)


def _read_directory(session: Session, *, directory_id: str, token: str, lock: bool) -> Any:
    direct = direct_statements(session)  # SQLite's write batches
    if direct is not None:
        rows = direct.rows(_GET_DIRECTORY, {"id": directory_id})
        return dict(zip(_DIRECTORY_COLUMNS, rows[0], strict=True)) if rows else None
    postgres = postgres_statements(session) if lock else None  # PostgreSQL's write batches
    if postgres is not None:
        token_hash = hash_secret(token)
        seen = _seen.get(directory_id)
        # A linked directory this token opened last time: its jobs start from that snapshot, the lock checked before
        # the batch's first statement (as its run's first execution where it can: ``LockFirst``) or at its end (a
        # batch whose jobs only write, new users, then holds it for its COMMIT's round trip only). Changed meanwhile
        # (a rotated token, a new policy, deleted): the batch fails there and runs again, reading it here.
        if seen is not None and seen["token_hash"] == token_hash and seen["state"] != DirectoryState.UNLINKED:
            as_seen = {"directory_id": directory_id, **_still_as_seen(seen)}
            if postgres.lock_later(_LOCK_AS_SEEN, as_seen, key=directory_id):
                return seen
        # Locked if the token matches; else read unlocked, which tells a wrong token from an unknown directory.
        rows = postgres.rows(_LOCK_DIRECTORY, {"id": directory_id, "token_hash": token_hash}, reads=directory_id)
        if rows:
            if len(_seen) >= _SEEN_MAX:
                _seen.clear()
            _seen[directory_id] = dict(zip(_DIRECTORY_COLUMNS, rows[0], strict=True))
        else:  # (a token it no longer takes: the next such request is not sent down the path that fails)
            _seen.pop(directory_id, None)
            rows = postgres.rows(_GET_DIRECTORY, {"id": directory_id}, reads=directory_id)
        return dict(zip(_DIRECTORY_COLUMNS, rows[0], strict=True)) if rows else None
    connection = session.connection()
    row = None
    if lock and session.get_bind().dialect.name == "postgresql":
        parameters = {"id": directory_id, "token_hash": hash_secret(token)}
        row = connection.execute(_LOCK_DIRECTORY, parameters).mappings().first()
    if row is None:
        row = connection.execute(_GET_DIRECTORY, {"id": directory_id}).mappings().first()
    return row


def enter(
    session: Session, *, directory_id: str, authorization: str | None, admit: Admit, write: bool = False
) -> Directory | ScimError:
    """The start of every request's database job: the authenticated directory, or the refusal to answer.

    The refusal (401, 429) is returned, not raised: a write job answers it without raising, so the grouped batch it
    shares with other requests is not disturbed. A write links an unlinked directory here, in its own transaction,
    so ``dsync.activated`` comes before the events of the directory's first requests; if the job then fails, the
    activation rolls back with it and the api layer runs ``activate`` alone."""
    try:
        directory = authenticate(session, directory_id=directory_id, authorization=authorization, lock=write)
    except ScimError as unauthorized:
        return unauthorized
    if write and directory.state == DirectoryState.UNLINKED:
        activate(session, directory=directory)
    refusal = admit(directory)
    return directory if refusal is None else refusal


def enter_read(row: Mapping[str, Any] | None, *, authorization: str | None, admit: Admit) -> Directory | ScimError:
    """``enter`` for a read whose own statement also read the directory's row (``row``, None when there is none):
    authentication costs no statement of its own, and is as fresh as the read itself."""
    try:
        directory = authorized(row, bearer_token(authorization))
    except ScimError as unauthorized:
        return unauthorized
    refusal = admit(directory)
    return directory if refusal is None else refusal


def activate(session: Session, *, directory: Directory) -> None:
    """Flip an unlinked directory to linked and emit ``dsync.activated`` exactly once, even under races.

    ``session`` must be a write session; JumpCloud's Test Connection is the usual first request."""
    if directory.state != DirectoryState.UNLINKED:
        return
    now = utcnow()
    result = session.execute(
        update(Directory)
        .where(col(Directory.id) == directory.id, col(Directory.state) == DirectoryState.UNLINKED.value)
        .values(state=DirectoryState.LINKED.value, updated_at=now)
    )
    batch_memo(session).pop(directory.id, None)  # its state changes here
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return
    record_event(
        session,
        event=EventName.ACTIVATED,
        organization_id=directory.organization_id,
        directory_id=directory.id,
        data={**directory_payload(directory), "state": DirectoryState.LINKED.value, "updated_at": iso(now)},
    )
