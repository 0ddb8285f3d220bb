"""End to end over loopback with real peers: dcmtk storescu -> gantry-node -> dcmtk storescp,
-> Orthanc (checked through its REST API), and a clinical Orthanc routing a study to the node.
Every instance arrives de-identified, with consistent pseudonyms, and no planted PHI value
occurs in any received byte or in the logs."""

from __future__ import annotations

import json

import pydicom
import pytest

from tests.conftest import free_port
from tests.support.node import (
    assert_no_phi,
    node_config,
    orthanc,
    orthanc_available,
    orthanc_get,
    orthanc_post,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)


def _check_received(datasets, studies) -> None:
    sent = {uid for s in studies for uid in s.sop_uids}
    received = {str(ds.SOPInstanceUID) for ds in datasets}
    assert len(received) == len(datasets) == len(sent), "every instance exactly once"
    assert not received & sent, "SOP Instance UIDs are replaced"
    originals = {s.study_uid for s in studies} | {s.series_uid for s in studies}
    assert not {str(ds.StudyInstanceUID) for ds in datasets} & originals
    assert not {str(ds.SeriesInstanceUID) for ds in datasets} & originals
    by_study = {}
    for ds in datasets:
        by_study.setdefault(str(ds.StudyInstanceUID), set()).add((str(ds.PatientID), str(ds.SeriesInstanceUID)))
    assert len(by_study) == len(studies), "one pseudonymous study per original study"
    for pairs in by_study.values():
        assert len(pairs) == 1, "one patient and series pseudonym per study"
    assert len({str(ds.PatientID) for ds in datasets}) == len({s.patient for s in studies})
    for ds in datasets:
        assert ds.get("PatientIdentityRemoved") == "YES"


def test_storescu_to_node_to_storescp(tmp_path):
    a = write_study(tmp_path / "in", 6, patient={"PatientID": "MRN-8675309"}, prefix="a")
    b = write_study(tmp_path / "in", 3, patient={"PatientID": "MRN-8675309-B", "PatientName": "Roe^Richard"},
                    prefix="b")
    a.patient, b.patient = "a", "b"
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port}])
        with running_node(config, port):
            sent = storescu(port, tmp_path / "in")
            assert sent.returncode == 0, sent.stderr
            files = wait_for(lambda: (f := received_files(tmp_path / "research")) and len(f) >= 9 and f,
                             timeout=60, what="9 instances at storescp")
        blobs = [p.read_bytes() for p in files]
    assert len(files) == 9
    _check_received([pydicom.dcmread(p) for p in files], [a, b])
    assert_no_phi(blobs, "received instances")
    for blob in blobs:
        assert b"Roe^Richard" not in blob and b"MRN-8675309-B" not in blob
    logs = [(tmp_path / "data" / "audit.log").read_bytes(), config.with_suffix(".out").read_bytes()]
    assert_no_phi(logs, "the node's logs")
    events = [json.loads(line)["event"] for line in logs[0].splitlines()]
    assert events.count("received") == 9 and events.count("forwarded") == 9 and events.count("purged") == 9
    assert not list((tmp_path / "data" / "inbox").rglob("*.dcm")), "raw files purged once acknowledged"


@pytest.mark.skipif(not orthanc_available(), reason="Orthanc not installed")
def test_orthanc_as_research_pacs(tmp_path):
    study = write_study(tmp_path / "in", 5)
    study.patient = "a"
    with orthanc(tmp_path) as (dicom_port, http_port):
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": dicom_port}])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            ids = wait_for(lambda: (i := json.loads(orthanc_get(http_port, "/instances"))) and len(i) >= 5 and i,
                           timeout=60, what="5 instances in Orthanc")
        blobs = [orthanc_get(http_port, f"/instances/{i}/file") for i in ids]
        patients = json.loads(orthanc_get(http_port, "/patients"))
        studies = json.loads(orthanc_get(http_port, "/studies"))
    assert len(ids) == 5 and len(patients) == 1 and len(studies) == 1
    from io import BytesIO

    _check_received([pydicom.dcmread(BytesIO(b)) for b in blobs], [study])
    assert_no_phi(blobs, "instances stored in Orthanc")
    assert_no_phi([(tmp_path / "data" / "audit.log").read_bytes(), config.with_suffix(".out").read_bytes()], "logs")


@pytest.mark.skipif(not orthanc_available(), reason="Orthanc not installed")
def test_clinical_orthanc_routes_a_study_to_the_node(tmp_path):
    """A PACS adding the node as a routing target: a study stored in a clinical Orthanc (one
    instance JPEG 2000 compressed) is sent to the node with Orthanc's own C-STORE SCU
    (POST /modalities/gantry/store); every instance reaches the research storescp,
    de-identified, the compressed one still compressed."""
    from tests.support.pixels import encode_as

    study = write_study(tmp_path / "in", 4)
    study.patient = "a"
    compressed = pydicom.dcmread(sorted((tmp_path / "in").iterdir())[0])
    encode_as(compressed, pydicom.uid.JPEG2000Lossless, tmp_path).save_as(
        sorted((tmp_path / "in").iterdir())[0], enforce_file_format=True)
    port = free_port()
    with storescp(tmp_path / "research") as research_port, \
            orthanc(tmp_path, "CLINICAL", {"gantry": ["GANTRY", "127.0.0.1", port]}, name="clinical") as (_, http):
        for path in sorted((tmp_path / "in").iterdir()):
            orthanc_post(http, "/instances", path.read_bytes())
        (study_id,) = json.loads(orthanc_get(http, "/studies"))
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port}])
        with running_node(config, port):
            job = json.loads(orthanc_post(http, "/modalities/gantry/store",
                                          json.dumps({"Resources": [study_id], "Synchronous": True}).encode()))
            assert job.get("FailedInstancesCount", 0) == 0 and job["InstancesCount"] == 4, job
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 4 and f,
                             timeout=60, what="4 instances at storescp")
        blobs = [p.read_bytes() for p in files]
    datasets = [pydicom.dcmread(p) for p in files]
    _check_received(datasets, [study])
    assert_no_phi(blobs, "instances routed by Orthanc")
    syntaxes = sorted(str(ds.file_meta.TransferSyntaxUID) for ds in datasets)
    assert pydicom.uid.JPEG2000Lossless in syntaxes, "the compressed instance went through as received"
    events = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert {e["calling_ae"] for e in events if e["event"] == "received"} == {"CLINICAL"}
