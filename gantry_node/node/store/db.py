"""The instance index: one row and one state per received instance, one row per delivery to
each destination, and the append-only audit table.

    received -> processing -> clean -> forwarded
                           \\-> quarantined (reason)      clean -> forward_failed (retryable)

Each transition is one SQLite transaction (WAL). Recording a received instance is committed
with synchronous=FULL (the row survives a power cut: that is what lets the SCP answer Success
right after it); later transitions use NORMAL (durable across a crash of the process; a power
cut may undo the last few, which are then simply redone: processing and forwarding are
idempotent).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gantry_node.node.store.audit_chain import GENESIS, ChainCheck, row_hash
from gantry_node.node.store.audit_chain import verify as verify_chain
from gantry_node.node.store.migrations import migrate

STATES = ("received", "processing", "clean", "forwarded", "quarantined", "forward_failed", "purged")


class StoreError(Exception):
    """The index could not record something (disk full, locked, corrupt).

    `transient` is True for conditions that pass on their own (the disk or its quota is full,
    another process holds the lock): the caller retries with backoff, never quarantines."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL (primary codes: the low byte of an extended one);
# SQLite's unix VFS reports ENOSPC and EDQUOT as SQLITE_FULL ("database or disk is full")
# A forwarded row whose original UID retention dropped, found by the clean UID the secret gives it
# (an operator's purge is not matched: a re-send after it is processed anew)
_PURGED_BY_CLEAN_UID = "clean_uid = ? AND raw_purged = 1 AND state = 'forwarded' ORDER BY id DESC LIMIT 1"
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 13})
TRANSIENT_SQLITE_MESSAGES = ("database or disk is full", "database is locked", "database table is locked")


def sqlite_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in TRANSIENT_SQLITE_CODES
    return any(m in str(exc) for m in TRANSIENT_SQLITE_MESSAGES)


def store_error(exc: sqlite3.Error) -> StoreError:
    return StoreError(f"index database: {exc}", transient=sqlite_transient(exc))


@dataclass(frozen=True)
class Instance:
    id: int
    state: str
    raw_path: str
    sop_class: str
    transfer_syntax: str
    reason: str | None
    stage: str | None
    calling_ae: str | None
    clean_uid: str | None
    study_uid: str | None
    series_uid: str | None
    process_attempts: int
    received_at: float
    updated_at: float
    raw_purged: bool


@dataclass(frozen=True)
class Delivery:
    id: int
    instance_id: int
    destination: str
    clean_path: str
    clean_uid: str
    sop_class: str
    transfer_syntax: str
    attempts: int


@dataclass(frozen=True)
class CleanCopy:
    """One de-identified file the worker wrote for one destination."""

    destination: str
    clean_path: str
    clean_uid: str
    study_uid: str
    series_uid: str
    sop_class: str
    transfer_syntax: str


_INSTANCE_COLUMNS = ("id, state, raw_path, sop_class, transfer_syntax, reason, stage, calling_ae, clean_uid, "
                     "study_uid, series_uid, process_attempts, received_at, updated_at, raw_purged")


class Store:
    """Thread-safe: one connection, one lock; every public method is one transaction."""

    def __init__(self, path: str | Path, clock=time.time, pseudonym: Callable[[str], str] | None = None):
        self.path = Path(path)
        self.clock = clock
        # the clean UID the secret gives an original one (Keys.uid): once retention dropped a
        # row's original UID, a re-send is still found by it (its content digest is kept)
        self.pseudonym = pseudonym
        _private(self.path)
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        # secure_delete FAST: content a row no longer holds (the original UID dropped at
        # retention) is zeroed in its page instead of lingering in free space of the file
        for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                       "secure_delete = FAST"):
            self.conn.execute(f"PRAGMA {pragma}")
        with self._lock:
            migrate(self.conn, self.clock())

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise store_error(exc) from exc
            except BaseException:
                _rollback(conn)
                raise
            finally:
                if durable:
                    with suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous = NORMAL")

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self.conn.execute(sql, params)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
                raise store_error(exc) from exc

    # --- receiving ---------------------------------------------------------------------------

    def known(self, source_uid: str) -> dict | None:
        rows = self._query("SELECT id, state, raw_path, raw_purged, content_digest FROM instances "
                           "WHERE source_uid = ?", [source_uid])
        if not rows and self.pseudonym is not None:
            rows = self._query("SELECT id, state, raw_path, raw_purged, content_digest FROM instances "
                               f"WHERE {_PURGED_BY_CLEAN_UID}", [self.pseudonym(source_uid)])
        return rows[0] if rows else None

    def add_received(self, source_uid: str, sop_class: str, transfer_syntax: str, raw_path: str,
                     calling_ae: str, peer: str, digest: str | None = None) -> tuple[int, str, str | None, str | None]:
        """Record a received instance. Returns (id, outcome, replaced raw path, previous state).

        outcome: "new"; "duplicate" (the same content is already held or was forwarded: the
        new copy is not needed); "replaced" (different content, the held copy was not
        forwarded yet: the new one is processed instead of it, whatever state it was in);
        "corrected" (different content, the old one was forwarded or purged: the new one is
        processed and forwarded again, under the same UIDs). A `digest` of None (or a row
        from before digests were kept) counts as different content."""
        now = self.clock()
        with self._tx(durable=True) as conn:
            row = conn.execute("SELECT id, state, raw_path, content_digest, raw_purged FROM instances "
                               "WHERE source_uid = ?", [source_uid]).fetchone()
            if row is None and self.pseudonym is not None:  # held once, its original UID dropped since
                row = conn.execute("SELECT id, state, raw_path, content_digest, raw_purged FROM instances "
                                   f"WHERE {_PURGED_BY_CLEAN_UID}", [self.pseudonym(source_uid)]).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO instances (source_uid, sop_class, transfer_syntax, raw_path, state, calling_ae, peer,"
                    " received_at, updated_at, content_digest) VALUES (?, ?, ?, ?, 'received', ?, ?, ?, ?, ?)",
                    [source_uid, sop_class, transfer_syntax, raw_path, calling_ae, peer, now, now, digest])
                return cur.lastrowid, "new", None, None
            instance_id, state, old_path, old_digest, purged = row
            if digest is not None and digest == old_digest:
                return instance_id, "duplicate", None, state
            outcome = "corrected" if state in ("forwarded", "purged") else "replaced"
            # a worker holds the old copy: keep the row in processing and flag it; its result is
            # then dropped and the row requeued (see _superseded), so the new copy's clean file
            # is always written after the old one's
            next_state = "processing" if state == "processing" else "received"
            conn.execute(
                "UPDATE instances SET source_uid = ?, state = ?, raw_path = ?, sop_class = ?, transfer_syntax = ?,"
                " reason = NULL,"
                " stage = NULL, raw_purged = 0, process_attempts = 0, content_digest = ?, calling_ae = ?, peer = ?,"
                " superseded = ?, updated_at = ? WHERE id = ?",
                [source_uid, next_state, raw_path, sop_class, transfer_syntax, digest, calling_ae, peer,
                 int(state == "processing"), now, instance_id])
            conn.execute("DELETE FROM deliveries WHERE instance_id = ?", [instance_id])
            return instance_id, outcome, None if purged else old_path, state

    def _superseded(self, conn: sqlite3.Connection, instance_id: int) -> bool:
        """A corrected copy arrived while this row was processed: requeue it (the new raw file)
        instead of recording the old copy's outcome."""
        return conn.execute("UPDATE instances SET state = 'received', superseded = 0, updated_at = ? "
                            "WHERE id = ? AND superseded = 1", [self.clock(), instance_id]).rowcount > 0

    # --- processing --------------------------------------------------------------------------

    def requeue_processing(self, keep: set[int] | frozenset[int] = frozenset(), uncount: bool = False) -> int:
        """Rows left in `processing` go back to `received` and are redone from the raw file: on
        start (a previous run was killed), and when the dispatcher restarts after a failure
        (then `keep` are the rows still in a worker's hands, and `uncount` gives back the
        attempt the claim counted: those rows never reached a worker)."""
        step = 1 if uncount else 0
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM instances WHERE state = 'processing'")
                   if r[0] not in keep]
            conn.executemany("UPDATE instances SET state = 'received', superseded = 0, updated_at = ?,"
                             " process_attempts = MAX(0, process_attempts - ?) WHERE id = ? AND state = 'processing'",
                             [(self.clock(), step, i) for i in ids])
            return len(ids)

    def requeue_clean(self) -> int:
        """After an unclean stop: clean-but-unforwarded instances are derived again from their
        raw files (their outbox files may not have reached the disk)."""
        with self._tx() as conn:
            return conn.execute("UPDATE instances SET state = 'received', updated_at = ? WHERE state = 'clean'",
                                [self.clock()]).rowcount

    def requeue_one(self, instance_id: int, uncount: bool = False) -> None:
        """Back to `received`; `uncount` when the attempt failed for a transient reason (a full
        disk), which must not count towards "processing crashed the worker repeatedly"."""
        with self._tx() as conn:
            conn.execute("UPDATE instances SET state = 'received', superseded = 0, updated_at = ?,"
                         " process_attempts = MAX(0, process_attempts - ?) WHERE id = ? AND state = 'processing'",
                         [self.clock(), 1 if uncount else 0, instance_id])

    def claim(self, limit: int) -> list[Instance]:
        with self._tx() as conn:
            cur = conn.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state = 'received' "
                               "ORDER BY id LIMIT ?", [limit])
            rows = [_instance(r) for r in cur.fetchall()]
            conn.executemany("UPDATE instances SET state = 'processing', process_attempts = process_attempts + 1,"
                             " updated_at = ? WHERE id = ?", [(self.clock(), r.id) for r in rows])
        return rows

    def mark_clean(self, instance_id: int, copies: list[CleanCopy]) -> None:
        self.mark_clean_many([(instance_id, copies)])

    def mark_clean_many(self, outcomes: list[tuple[int, list[CleanCopy]]]) -> None:
        with self._tx() as conn:
            for instance_id, copies in outcomes:
                self._mark_clean(conn, instance_id, copies)

    def _mark_clean(self, conn: sqlite3.Connection, instance_id: int, copies: list[CleanCopy]) -> None:
        if self._superseded(conn, instance_id):
            return
        now = self.clock()
        first = copies[0]
        conn.execute("UPDATE instances SET state = 'clean', clean_uid = ?, study_uid = ?, series_uid = ?,"
                     " reason = NULL, stage = NULL, updated_at = ? WHERE id = ?",
                     [first.clean_uid, first.study_uid, first.series_uid, now, instance_id])
        conn.execute("DELETE FROM deliveries WHERE instance_id = ?", [instance_id])
        conn.executemany(
            "INSERT INTO deliveries (instance_id, destination, clean_path, clean_uid, sop_class, transfer_syntax,"
            " state, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
            [(instance_id, c.destination, c.clean_path, c.clean_uid, c.sop_class, c.transfer_syntax, now)
             for c in copies])

    def mark_quarantined(self, instance_id: int, reason: str, stage: str) -> None:
        with self._tx() as conn:
            if self._superseded(conn, instance_id):
                return
            conn.execute("UPDATE instances SET state = 'quarantined', reason = ?, stage = ?, updated_at = ? "
                         "WHERE id = ?", [reason, stage, self.clock(), instance_id])

    # --- forwarding --------------------------------------------------------------------------

    def due_deliveries(self, destination: str, limit: int, shard: tuple[int, int] | None = None) -> list[Delivery]:
        """`shard` (k, n): only instances whose id is k modulo n, for the k-th of a destination's
        n senders. The shares are disjoint, so no two senders ever hold one delivery, and all
        copies of one instance (a correction after the original) go through one sender, in order."""
        k, n = shard or (0, 1)
        rows = self._query(
            "SELECT id, instance_id, destination, clean_path, clean_uid, sop_class, transfer_syntax, attempts "
            "FROM deliveries WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ? "
            "AND instance_id % ? = ? ORDER BY next_attempt_at, id LIMIT ?", [destination, self.clock(), n, k, limit])
        return [Delivery(**r) for r in rows]

    def delivered(self, deliveries: list[Delivery]) -> list[int]:
        """Record acknowledged deliveries (one transaction); returns the instances this completes
        (now forwarded)."""
        now = self.clock()
        complete = []
        with self._tx() as conn:
            for delivery in deliveries:
                conn.execute("UPDATE deliveries SET state = 'delivered', delivered_at = ?, last_error = NULL,"
                             " attempts = attempts + 1 WHERE id = ?", [now, delivery.id])
                open_ = conn.execute("SELECT COUNT(*) FROM deliveries WHERE instance_id = ? AND state != 'delivered'",
                                     [delivery.instance_id]).fetchone()[0]
                if open_ == 0 and conn.execute(
                        "UPDATE instances SET state = 'forwarded', forwarded_at = ?, updated_at = ? "
                        "WHERE id = ? AND state = 'clean'", [now, now, delivery.instance_id]).rowcount:
                    complete.append(delivery.instance_id)
            for name in {d.destination for d in deliveries}:
                conn.execute("INSERT INTO destination_status (name, last_success_at) VALUES (?, ?) "
                             "ON CONFLICT(name) DO UPDATE SET last_success_at = excluded.last_success_at", [name, now])
        return complete

    def delivery_failed(self, delivery: Delivery, error: str, retry_at: float | None) -> bool:
        """Record a failed attempt; `retry_at` None means attempts are exhausted. True when the
        instance is now forward_failed."""
        now = self.clock()
        with self._tx() as conn:
            conn.execute("INSERT INTO destination_status (name, last_failure_at, last_error) VALUES (?, ?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET last_failure_at = excluded.last_failure_at,"
                         " last_error = excluded.last_error", [delivery.destination, now, error])
            if retry_at is not None:
                conn.execute("UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                             "WHERE id = ?", [error, retry_at, delivery.id])
                return False
            conn.execute("UPDATE deliveries SET attempts = attempts + 1, last_error = ?, state = 'failed' "
                         "WHERE id = ?", [error, delivery.id])
            conn.execute("UPDATE instances SET state = 'forward_failed', reason = ?, stage = 'forward', "
                         "updated_at = ? WHERE id = ? AND state = 'clean'",
                         [f"{delivery.destination}: {error}", now, delivery.instance_id])
            return True

    def clean_paths(self, instance_id: int) -> list[str]:
        return [r["clean_path"] for r in self._query(
            "SELECT DISTINCT clean_path FROM deliveries WHERE instance_id = ?", [instance_id])]

    # --- retention and operators ---------------------------------------------------------------

    def purge_due(self, older_than: float) -> list[Instance]:
        """Forwarded instances whose raw file is still there and was acknowledged before `older_than`."""
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state = 'forwarded' AND raw_purged = 0"
                           " AND forwarded_at <= ? ORDER BY id LIMIT 1000", [older_than])
        return [_instance(tuple(r.values())) for r in rows]

    def mark_raw_purged(self, instance_ids: list[int], state: str | None = None) -> None:
        """The raw files are gone: the original SOP Instance UID (`source_uid`) goes with them.
        What stays is what retention and operators need: state, times, the pseudonymous UIDs.
        The column is NOT NULL and unique, so it keeps a marker that is not a UID ("purged:"
        and the row id); an instance sent again later gets a new row."""
        with self._tx() as conn:
            for instance_id in instance_ids:
                conn.execute("UPDATE instances SET raw_purged = 1, source_uid = 'purged:' || id, "
                             "state = COALESCE(?, state), updated_at = CASE WHEN ? IS NULL THEN updated_at "
                             "ELSE ? END WHERE id = ?", [state, state, self.clock(), instance_id])
                if state:  # a purged instance is sent nowhere, also not to destinations still pending
                    conn.execute("UPDATE deliveries SET state = 'failed', last_error = 'purged' "
                                 "WHERE instance_id = ? AND state = 'pending'", [instance_id])

    def forwarded_rows(self, instance_ids: list[int]) -> list[tuple[Instance, list[str]]]:
        """Each instance with the outbox paths of its clean copies."""
        out = []
        for instance_id in instance_ids:
            row = self.get(instance_id)
            if row is not None:
                out.append((row, self.clean_paths(instance_id)))
        return out

    def get(self, instance_id: int) -> Instance | None:
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE id = ?", [instance_id])
        return _instance(tuple(rows[0].values())) if rows else None

    def list_state(self, *states: str, limit: int = 1000) -> list[Instance]:
        marks = ", ".join("?" * len(states))
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state IN ({marks}) ORDER BY id LIMIT ?",
                           [*states, limit])
        return [_instance(tuple(r.values())) for r in rows]

    def deliveries_of(self, instance_id: int) -> list[dict]:
        return self._query("SELECT destination, state, attempts, last_error, clean_uid FROM deliveries "
                           "WHERE instance_id = ? ORDER BY destination", [instance_id])

    def release(self, instance_id: int) -> str:
        """Quarantined -> received (the pipeline runs again); forward_failed -> clean (delivery
        retried from attempt 0). Returns the new state; StoreError if neither applies."""
        now = self.clock()
        with self._tx() as conn:
            row = conn.execute("SELECT state, raw_purged FROM instances WHERE id = ?", [instance_id]).fetchone()
            if row is None:
                raise StoreError(f"no instance {instance_id}")
            state, purged = row
            if state == "quarantined" and not purged:
                conn.execute("UPDATE instances SET state = 'received', process_attempts = 0, updated_at = ?"
                             " WHERE id = ?", [now, instance_id])
                return "received"
            if state == "forward_failed":
                conn.execute("UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ? "
                             "WHERE instance_id = ? AND state = 'failed'", [now, instance_id])
                conn.execute("UPDATE instances SET state = 'clean', updated_at = ? WHERE id = ?", [now, instance_id])
                return "clean"
            raise StoreError(f"instance {instance_id} is {state}; only quarantined or forward_failed can be released")

    def counts(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) AS n FROM instances GROUP BY state")
        counts = dict.fromkeys(STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    def oldest_waiting(self) -> float | None:
        rows = self._query("SELECT MIN(received_at) AS t FROM instances WHERE state IN "
                           "('received', 'processing', 'clean')")
        return rows[0]["t"] if rows else None

    def destination_status(self) -> list[dict]:
        return self._query("SELECT name, last_success_at, last_failure_at, last_error FROM destination_status "
                           "ORDER BY name")

    def pending_by_destination(self) -> dict[str, int]:
        rows = self._query("SELECT destination, COUNT(*) AS n FROM deliveries WHERE state = 'pending' "
                           "GROUP BY destination")
        return {r["destination"]: r["n"] for r in rows}

    def deliveries_by_state(self) -> dict[tuple[str, str], int]:
        """(destination, delivery state) -> count, for the metrics page."""
        rows = self._query("SELECT destination, state, COUNT(*) AS n FROM deliveries GROUP BY destination, state")
        return {(r["destination"], r["state"]): r["n"] for r in rows}

    def received_times(self, instance_ids: list[int]) -> dict[int, float]:
        """When each instance was received (for the metrics page's latency histograms)."""
        out: dict[int, float] = {}
        for i in range(0, len(instance_ids), 500):
            chunk = instance_ids[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            out.update({r["id"]: r["received_at"] for r in self._query(
                f"SELECT id, received_at FROM instances WHERE id IN ({marks})", chunk)})
        return out

    def undelivered_paths(self) -> set[str]:
        """Outbox files still to be delivered (pending or failed deliveries)."""
        return {r["clean_path"] for r in self._query("SELECT clean_path FROM deliveries WHERE state != 'delivered'")}

    def raw_paths(self) -> set[str]:
        return {r["raw_path"] for r in self._query("SELECT raw_path FROM instances WHERE raw_purged = 0")}

    # --- audit -------------------------------------------------------------------------------

    def audit_append(self, rows: list[tuple[str, int | None, dict[str, Any], float]]) -> None:
        """Append audit events (event, instance id, fields, time) in one transaction, each
        chained to the row before it (store/audit_chain.py). BEGIN IMMEDIATE takes the write
        lock before the last hash is read, so writers in other processes (receiver, main,
        operator commands) append one after the other; a row is committed with its hash or
        not at all."""
        with self._tx() as conn:
            last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            row_id, prev = (last[0], last[1] or "") if last else (0, GENESIS)
            values = []
            for event, instance_id, fields, at in rows:
                row_id += 1
                text = json.dumps(fields, sort_keys=True, default=str)
                prev = row_hash(prev, row_id, float(at), event, instance_id, text)
                values.append((row_id, float(at), event, instance_id, text, prev))
            conn.executemany("INSERT INTO audit (id, at, event, instance_id, fields, hash) VALUES (?, ?, ?, ?, ?, ?)",
                             values)

    def audit_head(self) -> dict | None:
        """The last audit row's id, time and hash (None when the table is empty)."""
        rows = self._query("SELECT id, at, hash FROM audit ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def audit_verify(self, head: str | None = None, chunk: int = 10000) -> ChainCheck:
        """Re-check the whole chain, `chunk` rows per query (a node may go on writing)."""

        def rows():
            after = 0
            while True:
                batch = self._query("SELECT id, at, event, instance_id, fields, hash FROM audit WHERE id > ? "
                                    "ORDER BY id LIMIT ?", [after, chunk])
                for r in batch:
                    yield r["id"], r["at"], r["event"], r["instance_id"], r["fields"], r["hash"]
                if len(batch) < chunk:
                    return
                after = batch[-1]["id"]

        return verify_chain(rows(), head)

    def audit_since(self, after_id: int = 0, limit: int = 1000) -> list[dict]:
        return self._query("SELECT id, at, event, instance_id, fields FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                           [after_id, limit])

    def audit_last_id(self, back: int = 0) -> int:
        rows = self._query("SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?", [back])
        return rows[0]["id"] if rows else 0


def _instance(row) -> Instance:
    values = list(row.values()) if isinstance(row, dict) else list(row)
    values[-1] = bool(values[-1])
    return Instance(*values)


def _private(path: Path) -> None:
    """Create the database 0600 whatever the umask (SQLite gives its WAL and SHM files the
    database's mode), and take group and other bits off files an earlier run left open."""
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(OSError):
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)


def _rollback(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
