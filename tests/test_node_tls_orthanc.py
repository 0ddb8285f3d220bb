"""DICOM TLS with Orthanc (Debian's package) on both sides of the node: Orthanc's own C-STORE
SCU routes a study to the node's TLS listener (which requires a client certificate from our
CA), and the node forwards it over TLS to an Orthanc that only speaks TLS."""

from __future__ import annotations

import json

import pydicom
import pytest

from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    node_config,
    orthanc,
    orthanc_available,
    orthanc_get,
    orthanc_post,
    running_node,
    wait_for,
    write_study,
)
from tests.support.tlscerts import make_pki

pytestmark = pytest.mark.skipif(not orthanc_available(), reason="Orthanc is installed by scripts/test")


def tls_settings(pki) -> dict:
    return {"DicomTlsEnabled": True, "DicomTlsCertificate": str(pki.server.cert),
            "DicomTlsPrivateKey": str(pki.server.key), "DicomTlsTrustedCertificates": str(pki.ca),
            "DicomTlsRemoteCertificateRequired": True}


def test_orthanc_sends_over_tls_to_the_node_which_forwards_over_tls_to_orthanc(tmp_path):
    pki = make_pki(tmp_path / "pki")
    study = write_study(tmp_path / "in", 3)
    node_port = free_port()
    with orthanc(tmp_path, ae_title="RESEARCH", name="research", extra=tls_settings(pki)) as (research_port, research):
        config = node_config(
            tmp_path, node_port,
            node={"tls": {"certificate": str(pki.server.cert), "key": str(pki.server.key), "ca_bundle": str(pki.ca),
                          "require_client_certificate": True}},
            destinations=[dicom_destination("research", research_port, tls={
                "ca_bundle": str(pki.ca), "certificate": str(pki.client.cert), "key": str(pki.client.key)})])
        modalities = {"gantry": {"AET": "GANTRY", "Host": "127.0.0.1", "Port": node_port, "UseDicomTls": True}}
        with running_node(config, node_port), \
                orthanc(tmp_path, name="clinical", modalities=modalities, extra=tls_settings(pki)) as (_, clinical):
            ids = [json.loads(orthanc_post(clinical, "/instances", p.read_bytes()))["ID"]
                   for p in sorted((tmp_path / "in").iterdir())]
            answer = json.loads(orthanc_post(clinical, "/modalities/gantry/store", json.dumps(ids).encode()))
            assert answer.get("FailedInstancesCount", 0) == 0, answer
            arrived = wait_for(lambda: (got := json.loads(orthanc_get(research, "/instances"))) and len(got) == 3
                               and got, timeout=60, what="3 instances at the TLS-only research Orthanc")
    assert len(arrived) == 3
    audit = (tmp_path / "data" / "audit.log").read_text()
    assert audit.count('"event": "delivered"') == 3
    assert '"association_accepted"' in audit
    assert all(uid not in audit for uid in study.sop_uids)


def test_a_plain_orthanc_is_refused_by_a_tls_only_node(tmp_path):
    pki = make_pki(tmp_path / "pki")
    write_study(tmp_path / "in", 1)
    node_port = free_port()
    config = node_config(tmp_path, node_port, node={"tls": {"certificate": str(pki.server.cert),
                                                            "key": str(pki.server.key)}})
    modalities = {"gantry": ["GANTRY", "127.0.0.1", node_port]}
    with running_node(config, node_port), orthanc(tmp_path, name="plain", modalities=modalities) as (_, clinical):
        only = next((tmp_path / "in").iterdir())
        orthanc_id = json.loads(orthanc_post(clinical, "/instances", only.read_bytes()))["ID"]
        with pytest.raises(Exception):  # noqa: B017,PT011 -- Orthanc answers the REST call with an HTTP error
            orthanc_post(clinical, "/modalities/gantry/store", json.dumps([orthanc_id]).encode())
    assert pydicom.dcmread(only).SOPInstanceUID
    assert "association_rejected" in (tmp_path / "data" / "audit.log").read_text()
