"""Schema migrations, registered in code and recorded in the `migrations` table as applied.

Append new steps at the end; never edit one that has shipped. sqlite-utils is imported only
when a migration has to run, and without pandas: sqlite-utils imports pandas whenever it is
installed (about 70 MB per process), only to convert pandas values on insert, which the store
never does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils


def _v1_initial(db: sqlite_utils.Database) -> None:
    db["instances"].create({
        "id": int, "source_uid": str, "sop_class": str, "transfer_syntax": str, "raw_path": str,
        "state": str, "reason": str, "stage": str, "calling_ae": str, "peer": str,
        "clean_uid": str, "study_uid": str, "series_uid": str, "process_attempts": int,
        "received_at": float, "updated_at": float, "forwarded_at": float, "raw_purged": int,
    }, pk="id", not_null={"source_uid", "state", "raw_path"}, defaults={"process_attempts": 0, "raw_purged": 0})
    db["instances"].create_index(["source_uid"], unique=True)
    db["instances"].create_index(["state", "id"])
    db["deliveries"].create({
        "id": int, "instance_id": int, "destination": str, "clean_path": str, "clean_uid": str,
        "sop_class": str, "transfer_syntax": str, "state": str, "attempts": int,
        "next_attempt_at": float, "last_error": str, "delivered_at": float,
    }, pk="id", foreign_keys=[("instance_id", "instances", "id")], defaults={"attempts": 0})
    db["deliveries"].create_index(["instance_id", "destination"], unique=True)
    db["deliveries"].create_index(["destination", "state", "next_attempt_at"])
    db["destination_status"].create({
        "name": str, "last_success_at": float, "last_failure_at": float, "last_error": str,
    }, pk="name")
    db["audit"].create({"id": int, "at": float, "event": str, "instance_id": int, "fields": str}, pk="id")
    # the audit table is append-only: the database itself refuses edits and deletions
    db.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")
    db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")


def _v2_content_digest(db: sqlite_utils.Database) -> None:
    # content_digest: SHA-256 of the data set as received, to tell a corrected re-send from an
    # identical one (NULL for rows from before: treated as different, so nothing is dropped).
    # superseded: a corrected copy arrived while a worker held the old one; its result is then
    # not recorded and the row is processed again from the new raw file.
    db["instances"].add_column("content_digest", str)
    db["instances"].add_column("superseded", int, not_null_default=0)


def _v3_audit_chain(db: sqlite_utils.Database) -> None:
    """Each audit row carries a hash chaining it to the one before (store/audit_chain.py);
    rows written before this migration are chained here, in id order."""
    from gantry_node.node.store.audit_chain import GENESIS, row_hash

    db.execute("ALTER TABLE audit ADD COLUMN hash TEXT")
    db.execute("DROP TRIGGER audit_no_update")
    prev = GENESIS
    for row_id, at, event, instance_id, fields in db.execute(
            "SELECT id, at, event, instance_id, fields FROM audit ORDER BY id").fetchall():
        prev = row_hash(prev, row_id, at, event, instance_id, fields)
        db.execute("UPDATE audit SET hash = ? WHERE id = ?", [prev, row_id])
    db.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")


def _v4_clean_uid_index(db: sqlite_utils.Database) -> None:
    # a re-send of an instance whose original UID retention dropped is found by its clean UID
    db["instances"].create_index(["clean_uid"])


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("initial schema", _v1_initial),
    ("content digest of received instances", _v2_content_digest),
    ("audit hash chain", _v3_audit_chain),
    ("index of clean UIDs", _v4_clean_uid_index),
]


def _sqlite_utils():
    import sys

    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment] -- makes its `import pandas` fail
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


def up_to_date(conn: sqlite3.Connection) -> bool:
    try:
        done = conn.execute("SELECT COUNT(*) FROM migrations WHERE version <= ?", [len(MIGRATIONS)]).fetchone()[0]
    except sqlite3.OperationalError:  # no migrations table yet
        return False
    return done == len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, now: float) -> int:
    """Apply every migration not yet recorded; returns how many ran."""
    if up_to_date(conn):
        return 0
    db = _sqlite_utils().Database(conn)
    if "migrations" not in db.table_names():
        db["migrations"].create({"version": int, "name": str, "applied_at": float}, pk="version")
    done = {row["version"] for row in db["migrations"].rows}
    ran = 0
    for version, (name, step) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        with db.conn:
            step(db)
            db.execute("INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)", [version, name, now])
        ran += 1
    return ran
