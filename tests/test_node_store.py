"""The store: one state per instance, transitions, idempotent duplicates, append-only audit,
recorded migrations."""

from __future__ import annotations

import sqlite3

import pytest

from gantry_node.audit import Audit, allow_listed
from gantry_node.store import Store
from gantry_node.store.db import CleanCopy
from gantry_node.store.migrations import MIGRATIONS

CT, ELE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"


def _copy(dest="research"):
    return CleanCopy(dest, "/out/a.dcm", "2.25.1", "2.25.2", "2.25.3", CT, ELE)


def test_lifecycle_and_duplicates(tmp_path):
    store = Store(tmp_path / "db")
    iid, outcome, _ = store.add_received("1.2.3", CT, ELE, "/in/a", "CT", "::1")
    assert outcome == "new"
    assert store.add_received("1.2.3", "x", "y", "/in/b", "CT", "::1")[1] == "duplicate"
    [row] = store.claim(10)
    assert row.id == iid and store.get(iid).state == "processing"
    assert store.requeue_processing() == 1 and store.get(iid).state == "received"
    store.claim(10)
    store.mark_clean(iid, [_copy()])
    [delivery] = store.due_deliveries("research", 10)
    assert store.delivered([delivery]) == [iid]
    assert store.get(iid).state == "forwarded"
    # the same instance sent again after forwarding is processed again under the same row
    assert store.add_received("1.2.3", "x", "1.2.840.10008.1.2.1", "/in/c", "CT", "::1")[1:] == ("requeued", "/in/a")
    assert store.get(iid).state == "received"
    assert sum(store.counts().values()) == 1


def test_forward_failed_and_release(tmp_path):
    store = Store(tmp_path / "db")
    iid = store.add_received("1.2.4", "c", "t", "/in/a", "CT", "::1")[0]
    store.claim(1)
    store.mark_clean(iid, [_copy()])
    [d] = store.due_deliveries("research", 10)
    assert store.delivery_failed(d, "failure status 0xA700", None)
    assert store.get(iid).state == "forward_failed"
    assert store.release(iid) == "clean" and store.due_deliveries("research", 10)
    with pytest.raises(Exception, match="only quarantined or forward_failed"):
        store.release(iid)


def test_audit_table_is_append_only_and_migrations_recorded(tmp_path):
    store = Store(tmp_path / "db")
    store.audit_append([("received", 1, {"instance": 1}, 0.0)])
    conn = sqlite3.connect(tmp_path / "db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET event = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    versions = [r[0] for r in conn.execute("SELECT version FROM migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    Store(tmp_path / "db")  # re-opening applies nothing twice
    assert conn.execute("SELECT COUNT(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)


def test_audit_drops_fields_not_known_to_be_phi_free(tmp_path):
    assert allow_listed(None, "info", {"event": "received", "instance": 3, "patient": "Doe^Jane"}) == {
        "event": "received", "instance": 3, "withheld": ["patient"]}
    store = Store(tmp_path / "db")
    audit = Audit(store, tmp_path / "audit.log", stdout=False)
    audit.event("received", instance=1, PatientName="Doe^Jane")
    audit.close()
    assert "Doe" not in (tmp_path / "audit.log").read_text()
    assert "Doe" not in str(store.audit_since(0))
