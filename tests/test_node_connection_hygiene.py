"""Connections that never become associations cannot lock senders out (issue 14, defect 2).

Bare connects from an address outside the allow-list are refused at accept; slow senders
hold no association slot and are cut off by the ARTIM timer (before the A-ASSOCIATE-RQ) or
by the per-PDU deadline (after it); the per-address and per-calling-AE limits refuse only
the sender over its limit; an IPv4 sender reaching a "::" listener is matched as IPv4. Every
refusal and abort is in the audit trail with its reason and the peer's address."""

from __future__ import annotations

import json
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.conftest import free_port
from tests.support.node import node_config, received_files, running_node, storescp, storescu, wait_for, write_study
from tests.support.rawdicom import Trickle, associate_rq, closed_by_peer, connect, p_data


def _events(tmp: Path, name: str) -> list[dict]:
    log = tmp / "data" / "audit.log"
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == name]


def test_bare_connects_and_slow_senders_do_not_lock_out_a_sender(tmp_path):
    """Ten bare connects from an address outside the allow-list and ten connections
    trickling an A-ASSOCIATE-RQ a byte at a time, all held open, with the default
    max_associations (10): a dcmtk storescu sender still gets Success."""
    study = write_study(tmp_path / "in", 3)
    port = free_port()
    with storescp(tmp_path / "research") as research_port:
        config = node_config(tmp_path, port, node={"allowed_addresses": ["127.0.0.1/32"]},
                             destinations=[{"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1",
                                            "port": research_port}])
        with running_node(config, port):
            scanners = [connect(port, source="127.0.0.2") for _ in range(10)]
            slow = [Trickle(connect(port), associate_rq(), interval=0.3) for _ in range(10)]
            sent = storescu(port, tmp_path / "in", timeout=60, extra=("-v",))
            still_trickling = sum(not t.cut_off for t in slow)
            assert sent.returncode == 0, sent.stderr
            assert sent.stderr.count("(Success)") == 3, sent.stderr
            assert "Local Limit Exceeded" not in sent.stderr
            # the scanners were closed at accept; the slow senders by the ARTIM timer (5 s)
            assert all(closed_by_peer(s, 2) for s in scanners)
            for t in slow:
                t.join(30)
            assert all(t.cut_off for t in slow), [t.sent for t in slow]
            assert still_trickling == 10  # they were all still connected while storescu ran
            wait_for(lambda: len(received_files(tmp_path / "research")) == 3, 60, what="3 forwarded")
            wait_for(lambda: len(_events(tmp_path, "association_aborted")) >= 10, 20, what="aborts audited")
    for s in scanners:
        s.close()
    rejected = [e for e in _events(tmp_path, "association_rejected") if e["peer"] == "127.0.0.2"]
    assert len(rejected) == 10 and {e["reason"] for e in rejected} == {"source address not allowed"}
    aborted = [e for e in _events(tmp_path, "association_aborted")
               if e["reason"] == "no complete A-ASSOCIATE-RQ within node.artim_timeout"]
    assert len(aborted) == 10 and {e["peer"] for e in aborted} == {"127.0.0.1"}
    assert len(study.sop_uids) == 3


def test_a_pdu_sent_a_byte_at_a_time_is_cut_off(tmp_path):
    """After a quick A-ASSOCIATE-RQ, a P-DATA-TF trickled one byte every 0.2 s (each byte well
    within network_timeout, the PDU not): the node aborts it, audits it, and keeps serving."""
    write_study(tmp_path / "in", 1)
    port = free_port()
    config = node_config(tmp_path, port, node={"network_timeout": 2})
    with running_node(config, port):
        sock = connect(port)
        sock.sendall(associate_rq(calling="TRICKLE"))
        sock.settimeout(5)
        assert sock.recv(1) == b"\x02"  # A-ASSOCIATE-AC
        sock.settimeout(None)
        trickle = Trickle(sock, p_data(200), interval=0.2)  # 212 bytes: 42 s at this rate
        trickle.join(20)
        assert trickle.cut_off and trickle.sent < 100, trickle.sent
        assert storescu(port, tmp_path / "in").returncode == 0
        wait_for(lambda: _events(tmp_path, "association_aborted"), 10, what="abort audited")
    sock.close()
    [aborted] = [e for e in _events(tmp_path, "association_aborted") if e["calling_ae"] == "TRICKLE"]
    assert aborted["reason"] == "a PDU did not arrive whole within node.network_timeout"
    assert aborted["peer"] == "127.0.0.1"


def test_per_address_and_per_calling_ae_limits(tmp_path):
    write_study(tmp_path / "in", 1)
    port = free_port()
    config = node_config(tmp_path, port, node={"max_connections_per_address": 2,
                                               "max_associations_per_calling_ae": 1})
    with running_node(config, port):
        # one calling AE title holds an association; a second one under the same title is refused
        ae = AE(ae_title="HOG")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", port, ae_title="GANTRY", bind_address=("127.0.0.4", 0))
        second = ae.associate("127.0.0.1", port, ae_title="GANTRY", bind_address=("127.0.0.5", 0))
        held: list = []
        third = None
        try:
            assert first.is_established
            assert second.is_rejected
            # two connections from 127.0.0.3 are its limit; a third is closed at accept
            held = [connect(port, source="127.0.0.3") for _ in range(2)]
            third = connect(port, source="127.0.0.3")
            assert closed_by_peer(third, 2)
            assert not closed_by_peer(held[0], 0.5)
            # others are not affected by either limit
            sent = storescu(port, tmp_path / "in")
            assert sent.returncode == 0, sent.stderr
        finally:
            first.release()
            for s in [*held, third]:
                if s is not None:
                    s.close()
        wait_for(lambda: len(_events(tmp_path, "association_rejected")) >= 2, 10, what="rejections audited")
    reasons = {(e["peer"], e["calling_ae"], e["reason"]) for e in _events(tmp_path, "association_rejected")}
    assert reasons == {
        ("127.0.0.5", "HOG", "too many associations from this calling AE title (node.max_associations_per_calling_ae)"),
        ("127.0.0.3", "", "too many connections from this address (node.max_connections_per_address)"),
    }


def test_ipv4_sender_on_a_dual_stack_listener_matches_an_ipv4_allow_list(tmp_path):
    write_study(tmp_path / "in", 1)
    port = free_port()
    config = node_config(tmp_path, port, node={"bind": "::", "allowed_addresses": ["127.0.0.0/8"]})
    with running_node(config, port):
        sent = storescu(port, tmp_path / "in")
    assert sent.returncode == 0, sent.stderr
    [accepted] = _events(tmp_path, "association_accepted")
    assert accepted["peer"] == "127.0.0.1"
    assert not _events(tmp_path, "association_rejected")


def test_limits_are_validated_at_start():
    import pytest

    from gantry_node.node.config import ConfigError, config_from_mapping

    for node, message in [({"artim_timeout": 0}, "node.artim_timeout"),
                          ({"max_connections_per_address": 0}, "node.max_connections_per_address"),
                          ({"max_associations_per_calling_ae": "x"}, "node.max_associations_per_calling_ae")]:
        with pytest.raises(ConfigError, match=message):
            config_from_mapping({"node": node})
    node = config_from_mapping({"node": {"max_connections_per_address": 4}}).node
    limits = (node.max_connections_per_address, node.max_associations_per_calling_ae, node.artim_timeout)
    assert limits == (4, None, 5.0)
