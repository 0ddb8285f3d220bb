"""The node is SIGKILLed in the middle of a burst and restarted: every instance it
acknowledged is still forwarded, each under exactly one clean SOP Instance UID."""

from __future__ import annotations

import signal
import subprocess

from tests.conftest import free_port
from tests.support.node import (
    acknowledged,
    dcmtk_env,
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
)
from tests.support.node import write_study as make_study


def test_sigkill_mid_burst_then_restart(tmp_path):
    study = make_study(tmp_path / "in", 60, size=128)
    by_name = dict(zip(sorted(p.name for p in (tmp_path / "in").iterdir()), study.sop_uids, strict=True))
    audit = tmp_path / "data" / "audit.log"
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port) as node:
            sender = subprocess.Popen(
                ["storescu", "-v", "-aec", "GANTRY", "+sd", "127.0.0.1", str(port), str(tmp_path / "in")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env())
            wait_for(lambda: audit.exists() and audit.read_text().count('"received"') >= 15, timeout=60,
                     what="part of the burst received")
            node.send_signal(signal.SIGKILL)
            node.wait()
            output = sender.communicate(timeout=60)[0]
        acked = acknowledged(output)
        assert 5 <= len(acked) < 60, "the kill landed mid-burst"
        with running_node(config, port):
            # the sender retries what was not acknowledged
            missing = [tmp_path / "in" / name for name in sorted(set(by_name) - acked)]
            assert storescu(port, missing).returncode == 0
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 60 and f, timeout=90,
                             what="all 60 instances delivered")
            wait_for(lambda: not list((tmp_path / "data" / "outbox").rglob("*")) or
                     all(p.is_dir() for p in (tmp_path / "data" / "outbox").rglob("*")), timeout=30,
                     what="no clean copy left in the outbox once forwarded (stale ones swept at start)")
    uids = read_uids(files)
    expected = expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)
    assert set(uids) == expected, "exactly one clean UID per original, none lost"
    assert not list((tmp_path / "data" / "inbox").rglob("*.dcm")), "no raw file left after purge"
