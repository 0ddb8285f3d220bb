"""The audit table is hash-chained: `gantry-node audit-trail verify` finds a changed, a
deleted and a re-ordered row (each tampered with directly in SQLite, as someone with the
database file could) and names the first broken row; `status` shows the head."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading

import pytest
import yaml

from gantry_node.cli import main
from gantry_node.node.store import Store


@pytest.fixture
def node(tmp_path):
    """A node's data dir with 10 audit rows; yields (config path, db path)."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data)}))
    store = Store(data / "gantry.db", clock=lambda: 1_700_000_000.25)
    store.audit_append([("received", i, {"instance": i, "calling_ae": "MOD"}, 1_700_000_000.0 + i)
                        for i in range(1, 11)])
    store.close()
    return config, data / "gantry.db"


def _verify(config, capsys, *extra) -> tuple[int, str]:
    status = main(["audit-trail", "verify", "--config", str(config), *extra])
    return status, capsys.readouterr().out


def _tamper(db, *statements):
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_update")  # the append-only triggers stop mistakes, not an attacker
    conn.execute("DROP TRIGGER audit_no_delete")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


def test_intact_chain_verifies_and_can_be_rechecked_with_the_readme_recipe(node, capsys):
    config, db = node
    status, out = _verify(config, capsys)
    assert status == 0 and "intact: 10 row(s)" in out
    prev = "0" * 64
    for id_, at, event, instance_id, fields, stored in sqlite3.connect(db).execute(
            "SELECT id, at, event, instance_id, fields, hash FROM audit ORDER BY id"):
        payload = json.dumps([prev, id_, at, event, instance_id, fields], separators=(",", ":"))
        prev = hashlib.sha256(payload.encode()).hexdigest()
        assert prev == stored
    assert main(["status", "--config", str(config)]) == 0
    assert f"audit head:      row 10 (2023-11-14 22:13:30Z) {prev}" in capsys.readouterr().out


def test_changed_row_is_found(node, capsys):
    config, db = node
    _tamper(db, """UPDATE audit SET fields = '{"calling_ae": "OTHER", "instance": 4}' WHERE id = 4""")
    status, out = _verify(config, capsys)
    assert status == 1
    assert out.startswith("audit trail broken at row 4 (2023-11-14T22:13:24Z): its hash does not match")


def test_deleted_row_is_found(node, capsys):
    config, db = node
    _tamper(db, "DELETE FROM audit WHERE id = 6")
    status, out = _verify(config, capsys)
    assert status == 1
    assert out.startswith("audit trail broken at row 7 (2023-11-14T22:13:27Z): row 6 before it missing")


def test_reordered_rows_are_found(node, capsys):
    config, db = node
    # swap rows 3 and 5, hashes and all
    _tamper(db, "UPDATE audit SET id = -3 WHERE id = 3", "UPDATE audit SET id = 3 WHERE id = 5",
            "UPDATE audit SET id = 5 WHERE id = -3")
    status, out = _verify(config, capsys)
    assert status == 1
    assert out.startswith("audit trail broken at row 3 (2023-11-14T22:13:25Z)")


def test_cut_off_tail_is_found_with_a_noted_head(node, capsys):
    config, db = node
    head = Store(db).audit_head()["hash"]
    _tamper(db, "DELETE FROM audit WHERE id >= 9")
    assert _verify(config, capsys)[0] == 0  # a shorter chain is still a chain
    status, out = _verify(config, capsys, "--head", head)
    assert status == 1 and "is not in the chain" in out


def test_concurrent_writers_keep_one_chain(tmp_path, capsys):
    """Two connections (as the receiver and main processes have) appending at once."""
    db = tmp_path / "data" / "gantry.db"
    db.parent.mkdir()
    stores = [Store(db), Store(db)]

    def write(store, tag):
        for i in range(50):
            store.audit_append([("received", None, {"reason": f"{tag}{i}-{j}"}, 1.0 + i) for j in range(3)])

    threads = [threading.Thread(target=write, args=(s, t)) for s, t in zip(stores, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = stores[0].audit_verify()
    assert check.intact and check.rows == 300
    for s in stores:
        s.close()


def test_migration_chains_rows_written_before_it(tmp_path):
    """A database from before the chain: its rows get hashes, in order, when it is opened."""
    from gantry_node.node.store import migrations

    db = tmp_path / "gantry.db"
    conn = sqlite3.connect(db, isolation_level=None)
    saved = migrations.MIGRATIONS
    migrations.MIGRATIONS = saved[:1]
    try:
        migrations.migrate(conn, 0.0)
    finally:
        migrations.MIGRATIONS = saved
    conn.executemany("INSERT INTO audit (at, event, instance_id, fields) VALUES (?, ?, ?, ?)",
                     [(float(i), "received", i, "{}") for i in range(5)])
    conn.close()
    store = Store(db)
    check = store.audit_verify()
    assert check.intact and check.rows == 5
    store.audit_append([("purged", 1, {}, 9.0)])
    assert store.audit_verify().rows == 6
    store.close()
