"""Scale-out across hosts: two nodes with the same site secret behind a TCP load balancer
(HAProxy, round robin per connection) share no state, yet one study whose instances were split
across both arrives at the destination as one study of one patient, under the pseudonyms the
secret gives (DESIGN principle 3)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from contextlib import ExitStack

import pydicom
import pytest

from gantry_node.io.settings import load_keys
from gantry_node.node.store import Store
from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    node_config,
    received_files,
    running_node,
    stop,
    storescp,
    storescu,
    wait_for,
    wait_port,
    write_study,
)

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is installed by scripts/test")


def haproxy(tmp, front: int, backends: list[int]):
    config = tmp / "haproxy.cfg"
    servers = "\n".join(f"    server node{i} 127.0.0.1:{port}" for i, port in enumerate(backends))
    config.write_text(f"""global
    log stdout format raw local0 warning
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend dicom
    bind 127.0.0.1:{front}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
""")
    proc = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    wait_port(front, proc)
    return proc


def test_one_study_split_across_two_nodes_arrives_as_one(tmp_path):
    study = write_study(tmp_path / "in", 8)
    files = sorted((tmp_path / "in").iterdir())
    node_ports = [free_port(), free_port()]
    front = free_port()
    with ExitStack() as stack:
        research_port = stack.enter_context(storescp(tmp_path / "research"))
        configs = []
        for i, port in enumerate(node_ports):
            home = tmp_path / f"node{i}"
            home.mkdir()
            config = node_config(home, port, destinations=[dicom_destination("research", research_port)])
            configs.append(config)
            stack.enter_context(running_node(config, port))
        balancer = haproxy(tmp_path, front, node_ports)
        stack.callback(stop, balancer)
        for path in files:  # one association per instance: the balancer alternates between nodes
            sent = storescu(front, path)
            assert sent.returncode == 0, sent.stderr
        received = wait_for(lambda: (f := received_files(tmp_path / "research")) and len(f) == len(files) and f,
                            timeout=90, what="every instance delivered")
        per_node = []
        for i in range(2):
            store = Store(tmp_path / f"node{i}" / "data" / "gantry.db")
            per_node.append(store.counts().get("forwarded", 0))
            store.close()
    assert per_node == [4, 4], f"the balancer did not split the study: {per_node}"
    keys = load_keys(tmp_path / "node0" / "data" / "secret")
    assert keys.secret == load_keys(tmp_path / "node1" / "data" / "secret").secret
    out = [pydicom.dcmread(p, stop_before_pixels=True) for p in received]
    assert Counter(str(ds.StudyInstanceUID) for ds in out) == {keys.uid(study.study_uid): len(files)}
    assert len({str(ds.SeriesInstanceUID) for ds in out}) == 1
    assert len({str(ds.PatientID) for ds in out}) == 1
    assert len({str(ds.PatientName) for ds in out}) == 1
    assert len({str(ds.StudyDate) for ds in out}) == 1, "one date offset per patient on both nodes"
    assert {str(ds.SOPInstanceUID) for ds in out} == {keys.uid(u) for u in study.sop_uids}
