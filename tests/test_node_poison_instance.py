"""A poison instance in the outbox does not stop the queue.

The clean file of one instance holds a SOP Instance UID with two values (what verification
let through in the field); pynetdicom's send_c_store raises TypeError on it, a real trigger
in a library we did not write. It used to end the forwarder thread for good: 20 CTs sent
after it never arrived and a restart hit the same file first again. Now the instance is
forward_failed ("send failed: TypeError"), the 20 arrive at a real storescp, and an operator
can purge (or release) it."""

from __future__ import annotations

import json

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from gantry_node.node.config import load_config
from gantry_node.node.store import Store
from gantry_node.node.store.db import CleanCopy
from gantry_node.node.store.inbox import Inbox
from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    expected_clean_uids,
    make_ct,
    node_config,
    read_uids,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)


def plant_poison(config_path) -> int:
    """An acknowledged instance whose clean copy waits in the outbox with a two-valued SOP
    Instance UID, as a stopped node would have left it; returns its id."""
    config = load_config(config_path)
    config.outbox.mkdir(parents=True, exist_ok=True)
    study, series, uid = generate_uid(), generate_uid(), generate_uid()
    raw = make_ct(study, series, uid)
    raw_path = Inbox(config.inbox.resolve()).put(_encode(raw))
    clean = make_ct(study, series, uid)
    clean.SOPInstanceUID = [generate_uid(), generate_uid()]
    clean.file_meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID[0]
    clean_path = config.outbox.resolve() / "research" / "poison.dcm"
    clean_path.parent.mkdir(parents=True)
    clean.save_as(clean_path, enforce_file_format=True)
    store = Store(config.db_path)
    try:
        instance_id, *_ = store.add_received(uid, CTImageStorage, ExplicitVRLittleEndian, str(raw_path),
                                               "MODALITY", "127.0.0.1")
        store.claim(1)
        store.mark_clean(instance_id, [CleanCopy("research", str(clean_path), str(clean.SOPInstanceUID[0]), study,
                                                 series, CTImageStorage, ExplicitVRLittleEndian)])
    finally:
        store.close()
    (config.data_dir / "stopped-cleanly").touch()  # so the start trusts the outbox file as it is
    return instance_id


def _encode(ds) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_poison_instance_is_held_and_twenty_later_cts_arrive(tmp_path, run_cli):
    research_port, port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
    poison = plant_poison(config)
    study = write_study(tmp_path / "in", 20)
    with storescp(tmp_path / "research", port=research_port), running_node(config, port) as node:
        sent = storescu(port, tmp_path / "in")
        assert sent.returncode == 0, sent.stderr
        files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 20 and f, timeout=60,
                         what="the 20 CTs sent after the poison delivered")
        assert node.poll() is None, "the node is still running"
        shown = run_cli("quarantine", "show", poison, "--config", config, check=True).stdout
        assert "state:         forward_failed" in shown
        assert "reason:        research: send failed: TypeError" in shown
        status = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)
        assert status["states"]["forward_failed"] == 1 and status["states"]["forwarded"] == 20
        forwarder = next(c for c in status["node"]["components"] if c["name"] == "forward-research")
        assert forwarder["state"] == "running"
        # held, so an operator can act on it: release retries delivery (and it fails alone
        # again), purge removes it
        assert "delivery is retried" in run_cli("quarantine", "release", poison, "--config", config,
                                                check=True).stdout
        wait_for(lambda: "state:         forward_failed" in run_cli("quarantine", "show", poison, "--config",
                                                                      config, check=True).stdout,
                 timeout=30, what="the released poison held again")
        purged = run_cli("quarantine", "purge", poison, "--config", config)
        assert purged.returncode == 0, purged.stderr
        assert "state:         purged" in run_cli("quarantine", "show", poison, "--config", config,
                                                  check=True).stdout
    assert set(read_uids(files)) == expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    failed = [e for e in audit if e["event"] == "forward_failed" and e["instance"] == poison]
    assert failed and all(e["reason"] == "send failed: TypeError" for e in failed)
