"""The node runs the pixel stage: an ultrasound from a device no machine rule knows, with the
patient's name burned into its pixels, is quarantined (never forwarded) while the CT study
sent in the same association flows through."""

from __future__ import annotations

import json

from tests.conftest import free_port
from tests.support.node import node_config, received_files, running_node, storescu, wait_for, write_study
from tests.support.pixels import text_image


def test_unknown_ultrasound_with_text_is_quarantined_while_ct_flows(tmp_path, run_cli):
    write_study(tmp_path / "in", 3)
    text_image().save_as(tmp_path / "in" / "zz_us.dcm", enforce_file_format=True)
    port = free_port()
    out = {"name": "out", "type": "folder", "path": str(tmp_path / "out")}
    config = node_config(tmp_path, port, destinations=[out])
    with running_node(config, port):
        assert storescu(port, tmp_path / "in").returncode == 0

        def settled():
            states = json.loads(run_cli("status", "--json", "--config", config).stdout)["states"]
            return states["forwarded"] == 3 and states["quarantined"] == 1 and states

        wait_for(settled, timeout=60, what="3 CT forwarded, the ultrasound quarantined")
        listed = run_cli("quarantine", "list", "--config", config, check=True).stdout
    assert len(received_files(tmp_path / "out")) == 3
    assert "pixels" in listed
    assert "DOE^JANE" not in listed.upper() and "PID12345" not in listed
