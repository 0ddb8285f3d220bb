"""The store: one state per instance, transitions, idempotent duplicates, append-only audit,
recorded migrations."""

from __future__ import annotations

import sqlite3

import pytest

from gantry_node.node.audit_log import Audit, allow_listed
from gantry_node.node.store import Store
from gantry_node.node.store.db import CleanCopy
from gantry_node.node.store.migrations import MIGRATIONS

CT, ELE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"


def _copy(dest="research"):
    return CleanCopy(dest, "/out/a.dcm", "2.25.1", "2.25.2", "2.25.3", CT, ELE)


def test_lifecycle_and_duplicates(tmp_path):
    store = Store(tmp_path / "db")
    iid, outcome, _, _ = store.add_received("1.2.3", CT, ELE, "/in/a", "CT", "::1", "d1")
    assert outcome == "new"
    assert store.add_received("1.2.3", "x", "y", "/in/b", "CT", "::1", "d1")[1] == "duplicate"
    [row] = store.claim(10)
    assert row.id == iid and store.get(iid).state == "processing"
    assert store.requeue_processing() == 1 and store.get(iid).state == "received"
    store.claim(10)
    store.mark_clean(iid, [_copy()])
    [delivery] = store.due_deliveries("research", 10)
    assert store.delivered([delivery]) == [iid]
    assert store.get(iid).state == "forwarded"
    # the same content sent again after forwarding: nothing new
    assert store.add_received("1.2.3", "x", ELE, "/in/c", "CT", "::1", "d1")[1:] == ("duplicate", None, "forwarded")
    # different content after forwarding: a correction, processed and forwarded again under the same row
    assert store.add_received("1.2.3", CT, ELE, "/in/c", "CT", "::1", "d2")[1:] == ("corrected", "/in/a", "forwarded")
    assert store.get(iid).state == "received" and store.get(iid).raw_path == "/in/c"
    assert sum(store.counts().values()) == 1


def test_a_correction_replaces_a_held_copy_in_any_state(tmp_path):
    store = Store(tmp_path / "db")
    iid = store.add_received("1.2.5", CT, ELE, "/in/a", "CT", "::1", "d1")[0]
    # quarantined: the correction is processed anew
    store.claim(1)
    store.mark_quarantined(iid, "verification finding", "verify")
    assert store.add_received("1.2.5", CT, ELE, "/in/b", "CT", "::1", "d2")[1:] == ("replaced", "/in/a", "quarantined")
    row = store.get(iid)
    assert (row.state, row.raw_path, row.reason) == ("received", "/in/b", None)
    # clean, not yet forwarded: its pending deliveries go, the correction is processed instead
    store.claim(1)
    store.mark_clean(iid, [_copy()])
    assert store.add_received("1.2.5", CT, ELE, "/in/c", "CT", "::1", "d3")[1] == "replaced"
    assert store.get(iid).state == "received" and not store.due_deliveries("research", 10)
    # processing: the worker's result for the old copy is dropped and the row requeued
    [claimed] = store.claim(1)
    assert claimed.raw_path == "/in/c"
    assert store.add_received("1.2.5", CT, ELE, "/in/d", "CT", "::1", "d4")[1:] == ("replaced", "/in/c", "processing")
    assert store.get(iid).state == "processing"
    store.mark_clean(iid, [_copy()])  # the old copy's outcome
    assert store.get(iid).state == "received" and not store.due_deliveries("research", 10)
    [again] = store.claim(1)
    assert again.raw_path == "/in/d"
    store.mark_clean(iid, [_copy()])
    assert store.get(iid).state == "clean" and len(store.due_deliveries("research", 10)) == 1
    # rows from before digests were kept count as different content: never dropped
    assert store.add_received("1.2.5", CT, ELE, "/in/e", "CT", "::1", None)[1] == "replaced"


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
