"""Malformed values must not reach the node's output by way of library warnings: pydicom's
validation warnings quote the value ("Invalid value for VR UI: '<original UID>'"), and
Python prints warnings on stderr, the node's journal."""

from __future__ import annotations

import json
import sqlite3

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from tests.conftest import free_port
from tests.support.invalid_values import PROBLEM_TAGS, assert_no_surname, write_invalid_instance
from tests.support.node import (
    assert_no_phi,
    dicom_destination,
    make_ct,
    node_config,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
)

# a hash where a UID belongs (as some anonymisers write them) and a date of birth with dashes
BAD_UID = "5f1c8e2a9b7d4c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a"
BAD_BIRTH_DATE = "1961-04-23"


def test_invalid_values_are_not_quoted_in_the_logs(tmp_path):
    ds = make_ct(generate_uid(), generate_uid(), generate_uid(), 1)
    ds[0x00080018] = RawDataElement(Tag(0x00080018), "UI", len(BAD_UID), BAD_UID.encode(), 0, False, True)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds[0x00100030] = RawDataElement(Tag(0x00100030), "DA", 10, BAD_BIRTH_DATE.encode(), 0, False, True)
    (tmp_path / "in").mkdir()
    with pytest.warns(UserWarning, match="Invalid value for VR"):  # what the node must not print
        ds.save_as(tmp_path / "in" / "bad.dcm", enforce_file_format=True)
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            files = wait_for(lambda: received_files(tmp_path / "research"), timeout=60, what="the instance delivered")
    out = pydicom.dcmread(files[0])
    assert out.SOPInstanceUID != BAD_UID and out.PatientIdentityRemoved == "YES"
    logs = [config.with_suffix(".out").read_bytes(), (tmp_path / "data" / "audit.log").read_bytes()]
    for log in logs:
        assert BAD_UID.encode() not in log and b"1961" not in log
    assert_no_phi(logs, "the node's output")
    assert_no_phi([files[0].read_bytes()], "the delivered instance")


def test_invalid_values_are_audited_by_tag(tmp_path):
    """The node does not drop what pydicom found wrong: the instance's audit event lists each
    problem by tag and kind, in the log and the audit table, and never the value."""
    path = write_invalid_instance(tmp_path / "in")
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            assert storescu(port, path).returncode == 0
            files = wait_for(lambda: received_files(tmp_path / "research"), timeout=60, what="the instance delivered")
    out = pydicom.dcmread(files[0])
    assert out.PatientIdentityRemoved == "YES"
    audit_log = (tmp_path / "data" / "audit.log").read_text()
    events = [json.loads(line) for line in audit_log.splitlines()]
    (deidentified,) = [e for e in events if e["event"] == "deidentified"]
    assert sorted(deidentified["problems"]) == [f"{p} (value withheld)" for p in sorted(PROBLEM_TAGS)]
    with sqlite3.connect(f"file:{tmp_path / 'data' / 'gantry.db'}?mode=ro", uri=True) as db:
        rows = [json.loads(f) for (f,) in db.execute("SELECT fields FROM audit WHERE event = 'deidentified'")]
    assert [sorted(r["problems"]) for r in rows] == [sorted(deidentified["problems"])]
    assert_no_surname([config.with_suffix(".out").read_bytes(), audit_log.encode(), files[0].read_bytes(),
                       json.dumps(rows).encode()], "the node's output")
