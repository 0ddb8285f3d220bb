"""Several associations at once, as a PACS routing rule with parallel associations sends: three
studies on three associations, and a fourth association sending one of them again at the same
time. Every instance arrives exactly once, under the clean UID the secret determines, with one
patient/study/series pseudonym per original; the copies are idempotent."""

from __future__ import annotations

import json
import subprocess

import pydicom

from tests.conftest import free_port
from tests.support.node import (
    assert_no_phi,
    dcmtk_env,
    dicom_destination,
    expected_clean_uids,
    node_config,
    received_files,
    running_node,
    storescp,
    wait_for,
    write_study,
)

PER_STUDY = 15


def test_parallel_associations_and_a_concurrent_resend(tmp_path):
    studies = [write_study(tmp_path / f"in{i}", PER_STUDY, size=96, patient={"PatientID": f"MRN-8675309-{i}"})
               for i in range(3)]
    originals = {uid for s in studies for uid in s.sop_uids}
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             workers={"processes": 2})
        with running_node(config, port):
            folders = [tmp_path / "in0", tmp_path / "in1", tmp_path / "in2", tmp_path / "in0"]
            senders = [subprocess.Popen(["storescu", "-aet", f"ROUTE{i}", "-aec", "GANTRY", "+sd",
                                         "127.0.0.1", str(port), str(folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env=dcmtk_env())
                       for i, folder in enumerate(folders)]
            errors = [s.communicate(timeout=120)[1] for s in senders]
            assert [s.returncode for s in senders] == [0, 0, 0, 0], errors
            audit = tmp_path / "data" / "audit.log"

            def settled():
                events = [json.loads(line) for line in audit.read_text().splitlines()]
                forwarded = {e["instance"] for e in events if e["event"] == "forwarded"}
                busy = [e for e in events if e["event"] == "received" and e["instance"] not in forwarded]
                return len(forwarded) == len(originals) and not busy and events

            events = wait_for(settled, timeout=120, what="every instance forwarded")
            files = received_files(tmp_path / "research")
    datasets = [pydicom.dcmread(p) for p in files]
    clean = {str(ds.SOPInstanceUID) for ds in datasets}
    assert clean == expected_clean_uids(tmp_path / "data" / "secret", originals)
    assert len(files) == len(originals), "storescp names files by SOP Instance UID: one file per instance"
    by_study = {}
    for ds in datasets:
        by_study.setdefault(str(ds.StudyInstanceUID), set()).add((str(ds.PatientID), str(ds.SeriesInstanceUID)))
    assert len(by_study) == 3 and all(len(pairs) == 1 for pairs in by_study.values())
    assert len({str(ds.PatientID) for ds in datasets}) == 3
    assert_no_phi([p.read_bytes() for p in files], "received instances")
    # the second copy of study 0 was either a duplicate of a held instance or, if its first
    # copy had already gone, received again and forwarded again under the same clean UID
    received = [e for e in events if e["event"] == "received"]
    duplicates = [e for e in events if e["event"] == "duplicate"]
    assert len(received) + len(duplicates) == len(originals) + PER_STUDY
    assert len({e["instance"] for e in received}) == len(originals), "one row per original instance"
    assert {e["calling_ae"] for e in received} >= {"ROUTE1", "ROUTE2"}
