"""The research PACS is down while a study arrives, then comes up: everything is delivered
once it is reachable, each instance under its one deterministic pseudonymous UID."""

from __future__ import annotations

import json

from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)


def test_pacs_down_then_up(tmp_path, run_cli):
    study = write_study(tmp_path / "in", 6)
    research_port, port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[
        dicom_destination("research", research_port, backoff_initial=0.2, backoff_max=1.0, max_attempts=1000)])
    audit = tmp_path / "data" / "audit.log"
    with running_node(config, port):
        assert storescu(port, tmp_path / "in").returncode == 0, "the node accepts while the PACS is down"
        wait_for(lambda: audit.exists() and audit.read_text().count('"delivery_retry"') >= 2, timeout=30,
                 what="failed delivery attempts")
        status = run_cli("status", "--json", "--config", config, check=True)
        doc = json.loads(status.stdout)
        assert doc["states"]["forwarded"] == 0 and doc["destinations"][0]["pending"] == 6
        assert doc["destinations"][0]["last_error"] != "-"
        with storescp(tmp_path / "research", port=research_port):
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 6 and f, timeout=60,
                             what="6 instances delivered after the PACS came up")
            wait_for(lambda: json.loads(run_cli("status", "--json", "--config", config).stdout)
                     ["states"]["forwarded"] == 6, timeout=30, what="all forwarded")
    uids = read_uids(files)
    assert sorted(set(uids)) == sorted(expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids))
