"""Each destination may carry its own policy: the same instance goes to two folders, once
under the node's policy and once under a project's; and `retention: keep` leaves the raw
file in the inbox after forwarding."""

from __future__ import annotations

import json

import pydicom

from tests.conftest import free_port
from tests.support.node import assert_no_phi, node_config, received_files, running_node, storescu, wait_for, write_study


def test_per_destination_policy_and_keep_retention(tmp_path, run_cli):
    write_study(tmp_path / "in", 2)
    port = free_port()
    config = node_config(tmp_path, port, destinations=[
        {"name": "plain", "type": "folder", "path": str(tmp_path / "plain")},
        {"name": "dates", "type": "folder", "path": str(tmp_path / "dates"),
         "policy": {"options": {"retain_longitudinal_full_dates": True,
                                "retain_longitudinal_modified_dates": False}}},
    ], retention={"raw": "keep"})
    with running_node(config, port):
        assert storescu(port, tmp_path / "in").returncode == 0
        wait_for(lambda: json.loads(run_cli("status", "--json", "--config", config).stdout)
                 ["states"]["forwarded"] == 2, timeout=60, what="2 forwarded to both destinations")
    plain = [pydicom.dcmread(p) for p in received_files(tmp_path / "plain")]
    dates = [pydicom.dcmread(p) for p in received_files(tmp_path / "dates")]
    assert len(plain) == len(dates) == 2
    assert {ds.StudyDate for ds in dates} == {"20240115"}, "full dates kept under the project's policy"
    assert "20240115" not in {ds.get("StudyDate", "") for ds in plain}, "dates shifted under the node's policy"
    assert {str(ds.SOPInstanceUID) for ds in plain} == {str(ds.SOPInstanceUID) for ds in dates}
    assert_no_phi([p.read_bytes() for p in received_files(tmp_path / "plain") + received_files(tmp_path / "dates")],
                  "delivered files")
    assert len(list((tmp_path / "data" / "inbox").rglob("*.dcm"))) == 2, "raw files kept (retention: keep)"
    assert not list((tmp_path / "data" / "outbox").rglob("*.dcm")), "outbox emptied once delivered everywhere"
