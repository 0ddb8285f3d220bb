"""With `certificates:` configured the node seals each instance's original values for the
honest broker (PS3.15 E.1.2): the delivered instance carries an Encrypted Attributes Sequence
that only the broker's private key opens, and still no planted PHI in the clear."""

from __future__ import annotations

import json

import pydicom

from gantry_node.engine.seal.certs import init_keys
from tests.conftest import free_port
from tests.support.node import assert_no_phi, node_config, received_files, running_node, storescu, wait_for, write_study


def test_node_seals_to_the_configured_certificate(tmp_path, run_cli):
    _, cert = init_keys(tmp_path / "broker")
    write_study(tmp_path / "in", 2)
    port = free_port()
    config = node_config(tmp_path, port, certificates=[str(cert)],
                         destinations=[{"name": "out", "type": "folder", "path": str(tmp_path / "out")}])
    with running_node(config, port):
        assert storescu(port, tmp_path / "in").returncode == 0
        wait_for(lambda: json.loads(run_cli("status", "--json", "--config", config).stdout)
                 ["states"]["forwarded"] == 2, timeout=60, what="2 forwarded")
    files = received_files(tmp_path / "out")
    assert len(files) == 2
    for path in files:
        ds = pydicom.dcmread(path)
        assert "EncryptedAttributesSequence" in ds
    assert_no_phi([p.read_bytes() for p in files], "sealed instances")
