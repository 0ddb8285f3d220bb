"""DICOM TLS (issue 14, defect 7): dcmtk's storescu +tls sends to the node's TLS listener, the
node forwards over TLS to dcmtk's storescp +tls; a plain client and a client without the
required certificate are refused by a TLS-only listener and audited; plain and TLS listeners
side by side; bad TLS settings refuse to start, naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gantry_node.node.config import ConfigError, config_from_mapping
from tests.conftest import free_port
from tests.support.node import (
    assert_no_phi,
    dicom_destination,
    node_config,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)
from tests.support.tlscerts import make_pki


def _events(tmp: Path, name: str) -> list[dict]:
    log = tmp / "data" / "audit.log"
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == name]


def _tls_client(pki, cert: bool = True) -> tuple[str, ...]:
    auth = ("+tls", str(pki.client.key), str(pki.client.cert)) if cert else ("+tla",)
    return (*auth, "+cf", str(pki.ca))


def test_tls_in_and_out_with_dcmtk(tmp_path):
    pki = make_pki(tmp_path / "pki")
    write_study(tmp_path / "in", 3)
    port = free_port()
    research = ("+tls", str(pki.server.key), str(pki.server.cert), "+cf", str(pki.ca))  # requires our client cert
    with storescp(tmp_path / "research", extra=research) as research_port:
        config = node_config(
            tmp_path, port,
            node={"tls": {"certificate": str(pki.server.cert), "key": str(pki.server.key),
                          "ca_bundle": str(pki.ca), "require_client_certificate": True}},
            destinations=[dicom_destination("research", research_port, tls={
                "ca_bundle": str(pki.ca), "certificate": str(pki.client.cert), "key": str(pki.client.key)})])
        with running_node(config, port):
            sent = storescu(port, tmp_path / "in", extra=("-v", *_tls_client(pki)))
            assert sent.returncode == 0, sent.stderr
            assert sent.stderr.count("(Success)") == 3, sent.stderr
            wait_for(lambda: len(received_files(tmp_path / "research")) == 3, 60, what="3 delivered over TLS")
            before = len(_events(tmp_path, "association_rejected"))
            plain = storescu(port, tmp_path / "in", timeout=30)
            anonymous = storescu(port, tmp_path / "in", timeout=30, extra=_tls_client(pki, cert=False))
            wait_for(lambda: len(_events(tmp_path, "association_rejected")) >= before + 2, 10, what="refusals")
    assert plain.returncode != 0 and "Success" not in plain.stderr
    assert anonymous.returncode != 0 and "Success" not in anonymous.stderr
    refusals = _events(tmp_path, "association_rejected")[before:]
    assert all(e["reason"].startswith("TLS handshake failed: ") and e["peer"] == "127.0.0.1" for e in refusals)
    reasons = {e["reason"] for e in refusals}
    assert "TLS handshake failed: WRONG_VERSION_NUMBER" in reasons  # the plain client
    assert "TLS handshake failed: PEER_DID_NOT_RETURN_A_CERTIFICATE" in reasons  # no client certificate
    assert len(_events(tmp_path, "received")) == 3
    assert_no_phi([p.read_bytes() for p in received_files(tmp_path / "research")], "research")


def test_plain_and_tls_listeners_side_by_side(tmp_path):
    pki = make_pki(tmp_path / "pki")
    write_study(tmp_path / "in", 1)
    port, tls_port = free_port(), free_port()
    config = node_config(tmp_path, port, node={"tls": {"certificate": str(pki.server.cert),
                                                       "key": str(pki.server.key), "port": tls_port}})
    with running_node(config, port):
        plain = storescu(port, tmp_path / "in", extra=("-v",))
        secure = storescu(tls_port, tmp_path / "in", extra=("-v", *_tls_client(pki, cert=False)))
    assert plain.returncode == 0 and "(Success)" in plain.stderr, plain.stderr
    assert secure.returncode == 0 and "(Success)" in secure.stderr, secure.stderr


def test_destination_with_an_unknown_ca_is_not_sent_to(tmp_path):
    """The SCU checks the destination's certificate: signed by a CA not in its bundle, nothing
    is sent (the delivery is retried, and the error says why without data set values)."""
    pki = make_pki(tmp_path / "pki")
    write_study(tmp_path / "in", 1)
    port = free_port()
    research = ("+tls", str(pki.server.key), str(pki.server.cert), "-ic")
    with storescp(tmp_path / "research", extra=research) as research_port:
        config = node_config(tmp_path, port, destinations=[dicom_destination(
            "research", research_port, backoff_initial=0.5, tls={"ca_bundle": str(pki.other_ca)})])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            wait_for(lambda: _events(tmp_path, "delivery_retry"), 30, what="a failed delivery")
    assert not received_files(tmp_path / "research")


def test_tls_settings_are_checked_at_start(tmp_path):
    pki = make_pki(tmp_path / "pki")
    good = {"certificate": str(pki.server.cert), "key": str(pki.server.key)}
    cases = [
        ({"node": {"tls": {**good, "key": str(pki.client.key)}}}, "node.tls.certificate/key"),
        ({"node": {"tls": {**good, "certificate": str(tmp_path / "missing.pem")}}}, "node.tls.certificate"),
        ({"node": {"tls": {"certificate": str(pki.server.cert)}}}, "node.tls.key"),
        ({"node": {"tls": {**good, "require_client_certificate": True}}}, "node.tls.ca_bundle"),
        ({"node": {"tls": {**good, "min_version": "1.0"}}}, "node.tls.min_version"),
        ({"node": {"port": 104, "tls": {**good, "port": 104}}}, "node.tls.port"),
        ({"node": {"tls": {**good, "ca_bundle": str(pki.server.key)}}}, "node.tls.ca_bundle"),
        ({"destinations": [{"ae_title": "R", "host": "h", "port": 1, "tls": {"certificate": str(pki.client.cert)}}]},
         r"destinations\[0\].tls.certificate"),
        ({"destinations": [{"ae_title": "R", "host": "h", "port": 1, "tls": {"verify": True}}]},
         r"destinations\[0\].tls.verify"),
    ]
    for doc, key in cases:
        with pytest.raises(ConfigError, match=key):
            config_from_mapping(doc)
    node = config_from_mapping({"node": {"tls": good}}).node
    assert node.tls is not None and node.tls.port is None and node.tls.min_version == "1.2"
