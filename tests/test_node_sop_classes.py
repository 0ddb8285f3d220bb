"""Retired storage SOP classes are accepted like the current ones: old modalities and PACS
archives still send them, and pynetdicom's list leaves them out (a C-STORE for one would
abort the association)."""

from __future__ import annotations

import json
import shutil

import pydicom
from pydicom.uid import generate_uid

from gantry_node.node.network.scp import retired_storage_classes
from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    make_ct,
    node_config,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
)
from tests.support.pixels import data_path

US_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
NM_RETIRED = "1.2.840.10008.5.1.4.1.1.5"


def test_the_retired_storage_classes():
    retired = retired_storage_classes()
    assert {US_RETIRED, NM_RETIRED, "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.88.1"} <= set(retired)
    assert "1.2.840.10008.5.1.4.1.1.6.1" not in retired, "current classes come from pynetdicom's list"


def test_retired_classes_are_received_processed_and_forwarded(tmp_path):
    (tmp_path / "in").mkdir()
    nm = make_ct(generate_uid(), generate_uid(), generate_uid(), 1)
    nm.SOPClassUID = nm.file_meta.MediaStorageSOPClassUID = NM_RETIRED
    nm.Modality = "NM"
    nm.save_as(tmp_path / "in" / "nm.dcm", enforce_file_format=True)
    shutil.copy(data_path("color-pl.dcm"), tmp_path / "in" / "us.dcm")  # a 1994 ultrasound, retired class
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            sent = storescu(port, tmp_path / "in", extra=("-R",))  # propose what the files are
            assert sent.returncode == 0, sent.stderr
            audit = tmp_path / "data" / "audit.log"
            events = wait_for(lambda: (e := [json.loads(line) for line in audit.read_text().splitlines()])
                              and {"forwarded", "quarantined"} <= {x["event"] for x in e} and e,
                              timeout=60, what="the NM forwarded and the ultrasound quarantined")
            files = received_files(tmp_path / "research")
    assert sum(e["event"] == "received" for e in events) == 2
    assert [pydicom.dcmread(p).SOPClassUID for p in files] == [NM_RETIRED]
    (quarantined,) = [e for e in events if e["event"] == "quarantined"]
    assert "modality US" in quarantined["reason"], "an old ultrasound may carry burned-in text: no rule, no pass"
