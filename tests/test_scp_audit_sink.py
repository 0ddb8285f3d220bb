"""An audit sink that cannot write: the C-STORE answer is a failure status (0xA700, Out of
Resources: the sender keeps the instance and retries), never Success without its audit line.

The receiver's audit log is /dev/full (every write fails with ENOSPC, a real full device);
a real dcmtk storescu sends. pynetdicom's own answer to a handler that raises is 0xC211, a
failure senders need not retry."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gantry_node.node.audit_log import Audit
from gantry_node.node.config import NodeSettings
from gantry_node.node.network.scp import start_scp
from gantry_node.node.store import Store
from gantry_node.node.store.inbox import Inbox
from tests.conftest import free_port
from tests.support.node import storescu, write_study


def test_audit_sink_that_cannot_write_gives_out_of_resources(tmp_path):
    write_study(tmp_path / "in", 2)
    port = free_port()
    store = Store(tmp_path / "gantry.db")
    audit = Audit(store, Path("/dev/full"), stdout=False)
    server = start_scp(replace(NodeSettings(), bind="127.0.0.1", port=port), Inbox(tmp_path / "inbox"), store, audit)
    try:
        sent = storescu(port, sorted((tmp_path / "in").iterdir()), extra=("-v",))
    finally:
        server.shutdown()
        store.close()
    out = sent.stdout + sent.stderr
    assert "Received Store Response (Refused: OutOfResources)" in out
    assert "(Success)" not in out
