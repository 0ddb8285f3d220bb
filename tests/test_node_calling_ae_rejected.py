"""Calling AE titles and source addresses outside the allow-lists are rejected at association,
with the proper reason, and the rejection is in the audit trail."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import free_port
from tests.support.node import dcmtk_env, node_config, running_node, storescu, write_study


def test_unknown_calling_ae_is_rejected(tmp_path):
    write_study(tmp_path / "in", 1)
    port = free_port()
    config = node_config(tmp_path, port, node={"allowed_calling_aets": ["MODALITY"]})
    with running_node(config, port):
        refused = storescu(port, tmp_path / "in", calling="INTRUDER")
        allowed = subprocess.run(["echoscu", "-aet", "MODALITY", "-aec", "GANTRY", "127.0.0.1", str(port)],
                                 capture_output=True, text=True, env=dcmtk_env(), timeout=30)
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr or "Rejected" in refused.stderr, refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    events = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    rejected = [e for e in events if e["event"] == "association_rejected"]
    assert len(rejected) == 1 and rejected[0]["calling_ae"] == "INTRUDER"
    assert rejected[0]["reason"] == "calling AE title not allowed"
    assert not [e for e in events if e["event"] == "received"]


def test_source_address_outside_allow_list_is_rejected(tmp_path):
    write_study(tmp_path / "in", 1)
    port = free_port()
    config = node_config(tmp_path, port, node={"allowed_addresses": ["10.0.0.0/8"]})
    with running_node(config, port):
        refused = storescu(port, tmp_path / "in")
    assert refused.returncode != 0
    events = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    rejected = [e for e in events if e["event"] == "association_rejected"]
    # at accept, before any A-ASSOCIATE-RQ: the test's own port probe is refused (and audited) too
    assert len(rejected) >= 2
    assert {(e["reason"], e["peer"], e["calling_ae"]) for e in rejected} == {
        ("source address not allowed", "127.0.0.1", "")}
