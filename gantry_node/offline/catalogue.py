"""The session database (`gantry.db`): the only code that touches it (through sqlite-utils).

Tables:
- `meta`: key/value settings of the session (schema version, policy, sealing certificates,
  pixel configuration, a fingerprint of the site secret).
- `instances`: one row per file found by import: where it is, what it is (catalogued header
  attributes, JSON in `attrs`), and what the later steps did (the stored output under the
  session's folder, its pseudonymous UIDs, pixel and verification verdicts).
- `findings`: PhiFinding records saved by save_analysis (without values).
- `scan_findings`: what scan_for_phi found, streamed in as the scan runs (without values; a
  scan's Findings reads them from here, so memory does not grow with the cohort).
- `audit`: the append-only audit trail (step, event, internal instance id, counts; no PHI).

The database holds original UIDs and patient IDs (the catalogue of the raw data): it is as
sensitive as the raw folder and is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

SCHEMA_VERSION = "1"
SQLITE_HEADER = b"SQLite format 3\x00"

INSTANCE_COLUMNS: dict[str, type] = {
    "id": int, "source": str, "size": int, "status": str, "problem": str, "warnings": int,
    "value_problems": str,  # JSON: what pydicom warned about, by tag and kind (library_warnings), no values
    "sop_class": str, "sop_uid": str, "study_uid": str, "series_uid": str, "patient_id": str,
    "modality": str, "manufacturer": str, "model": str, "serial": str, "rows": int, "columns": int,
    "frames": int, "burned_in": str, "transfer_syntax": str, "attrs": str,
    # apply_remediation
    "output": str, "output_sha256": str, "output_size": int, "clean_sop_uid": str, "clean_study_uid": str,
    "clean_series_uid": str, "clean_patient_id": str, "clean_attrs": str, "policy_fp": str, "sealed": int,
    "meta_state": str, "meta_reason": str, "changes": str,
    # execute_config
    "pixel_state": str, "pixel_rule": str, "pixel_reason": str, "pixel_config_fp": str, "pixel_output": str,
    # audit
    "verify_state": str, "verify_reason": str,
}


def is_sqlite_file(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:
        return False


class Catalogue:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        created = not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        self.path = path
        self.created = created
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        db = self.db
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")
            db["instances"].create(INSTANCE_COLUMNS, pk="id")
            db["instances"].create_index(["source"], unique=True)
            db["instances"].create_index(["series_uid"])
            db["findings"].create({"id": int, "analysis": int, "instance_id": int, "entity_type": str,
                                   "field_name": str, "tag": str, "path": str, "reason": str, "action": str},
                                  pk="id")
            db["audit"].create({"id": int, "at": float, "step": str, "event": str, "instance_id": int,
                                "detail": str}, pk="id")
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif self.get_meta("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: session schema {self.get_meta('schema_version')!r} is not "
                             f"{SCHEMA_VERSION!r} (written by another gantry-node version)")
        if "scan_findings" not in db.table_names():  # added within schema 1: a table older sessions lack
            db["scan_findings"].create({"id": int, "scan": int, "instance_id": int, "seq": int, "entity_type": str,
                                        "field_name": str, "tag": str, "path": str, "reason": str, "action": str},
                                       pk="id")
            db["scan_findings"].create_index(["scan", "instance_id"])

    # -- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        self.db["meta"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    # -- instances ---------------------------------------------------------------------------
    def known_sources(self) -> set[str]:
        return {r["source"] for r in self.db.query("select source from instances")}

    def add_instances(self, rows: Iterable[dict[str, Any]]) -> int:
        rows = list(rows)
        with self.db.conn:
            self.db["instances"].insert_all(rows, pk="id", alter=False)
        return len(rows)

    def instances(self, where: str = "", params: Iterable[Any] = (), order: str = "id") -> list[dict[str, Any]]:
        sql = "select * from instances" + (f" where {where}" if where else "") + f" order by {order}"
        return list(self.db.query(sql, list(params)))

    def iter_instances(self, chunk: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        last = 0
        while True:
            rows = list(self.db.query("select * from instances where id > ? order by id limit ?", [last, chunk]))
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def instance(self, instance_id: int) -> dict[str, Any]:
        return self.db["instances"].get(instance_id)

    def update(self, instance_id: int, values: dict[str, Any]) -> None:
        self.db["instances"].update(instance_id, values)

    def update_many(self, updates: Iterable[tuple[int, dict[str, Any]]]) -> None:
        with self.db.conn:
            for instance_id, values in updates:
                self.db["instances"].update(instance_id, values)

    def count(self, where: str = "", params: Iterable[Any] = ()) -> int:
        sql = "select count(*) as n from instances" + (f" where {where}" if where else "")
        return next(self.db.query(sql, list(params)))["n"]

    def series_counts(self) -> dict[str, int]:
        return {r["series_uid"]: r["n"] for r in self.db.query(
            "select series_uid, count(*) as n from instances where status = 'ok' group by series_uid")}

    # -- findings ----------------------------------------------------------------------------
    def save_findings(self, rows: list[dict[str, Any]]) -> int:
        analysis = (next(self.db.query("select max(analysis) as n from findings"))["n"] or 0) + 1
        with self.db.conn:
            self.db["findings"].insert_all([{**r, "analysis": analysis} for r in rows], pk="id")
        return analysis

    def findings(self, analysis: int | None = None) -> list[dict[str, Any]]:
        if analysis is None:
            analysis = next(self.db.query("select max(analysis) as n from findings"))["n"]
        return list(self.db.query("select * from findings where analysis = ? order by id", [analysis]))

    def save_scan(self, scan: int) -> int:
        """A scan's findings as a new analysis (save_findings without the round trip)."""
        analysis = (next(self.db.query("select max(analysis) as n from findings"))["n"] or 0) + 1
        columns = "instance_id, entity_type, field_name, tag, path, reason, action"
        with self.db.conn:
            self.db.execute(f"insert into findings (analysis, {columns}) select ?, {columns} from scan_findings "
                            "where scan = ? order by id", [analysis, scan])
        return analysis

    def new_scan(self) -> int:
        return (next(self.db.query("select max(scan) as n from scan_findings"))["n"] or 0) + 1

    def add_scan_findings(self, scan: int, rows: list[dict[str, Any]]) -> None:
        with self.db.conn:
            self.db["scan_findings"].insert_all([{**r, "scan": scan} for r in rows], pk="id")

    def scan_findings(self, scan: int, where: str = "", params: Iterable[Any] = ()) -> Iterator[dict[str, Any]]:
        return self.db.query(f"select * from scan_findings where scan = ?{' and ' + where if where else ''} "
                             "order by id", [scan, *params])

    def scan_count(self, scan: int, what: str = "count(*)") -> int:
        return next(self.db.query(f"select {what} as n from scan_findings where scan = ?", [scan]))["n"]

    # -- audit trail -------------------------------------------------------------------------
    def audit(self, step: str, event: str, instance_id: int | None = None, **detail: Any) -> None:
        self.db["audit"].insert({"at": time.time(), "step": step, "event": event, "instance_id": instance_id,
                                 "detail": json.dumps(detail, sort_keys=True)}, pk="id")

    def audit_many(self, step: str, events: Iterable[tuple[str, int | None, dict[str, Any]]]) -> None:
        now = time.time()
        with self.db.conn:
            self.db["audit"].insert_all(
                [{"at": now, "step": step, "event": e, "instance_id": i, "detail": json.dumps(d, sort_keys=True)}
                 for e, i, d in events], pk="id")

    def audit_rows(self) -> Iterator[dict[str, Any]]:
        return self.db.query("select * from audit order by id")

    def audit_counts(self) -> dict[tuple[str, str], int]:
        return {(r["step"], r["event"]): r["n"] for r in self.db.query(
            "select step, event, count(*) as n from audit group by step, event")}

    # -- durability --------------------------------------------------------------------------
    def checkpoint(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.db.close()
