"""The SCP streams each data set to its inbox file as it arrives (never whole in memory):
an instance over node.max_instance_size is refused (0xA700, audited, nothing kept), and a
transfer cut off midway leaves no file behind. A real dcmtk storescu sends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from gantry_node.node.audit_log import Audit
from gantry_node.node.config import NodeSettings
from gantry_node.node.network.scp import start_scp
from gantry_node.node.store import Store
from gantry_node.node.store.inbox import Inbox
from tests.conftest import REPO, free_port
from tests.support.node import dcmtk_env, storescu, wait_for, write_study

sys.path.insert(0, str(REPO / "scripts"))
from bench_memory import write_multiframe  # noqa: E402


def inbox_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm") if p.is_file()]


def test_instance_over_max_instance_size_is_refused_audited_and_not_kept(tmp_path):
    write_study(tmp_path / "small", 1)
    big = tmp_path / "big.dcm"
    write_multiframe(big, 3)  # 3 MiB of pixel data
    port = free_port()
    store = Store(tmp_path / "gantry.db")
    audit = Audit(store, tmp_path / "audit.log", stdout=False)
    settings = replace(NodeSettings(), bind="127.0.0.1", port=port, max_instance_size=1024 * 1024)
    server = start_scp(settings, Inbox(tmp_path / "inbox"), store, audit)
    try:
        refused = storescu(port, big, extra=("-v",))
        accepted = storescu(port, sorted((tmp_path / "small").iterdir()), extra=("-v",))
    finally:
        server.shutdown()
        audit.close()
    out = refused.stdout + refused.stderr
    assert "Refused: OutOfResources" in out and "(Success)" not in out
    assert "instance larger than node.max_instance_size" in (tmp_path / "audit.log").read_text()
    assert "(Success)" in accepted.stdout + accepted.stderr
    kept = inbox_files(tmp_path / "inbox")
    assert len(kept) == 1 and kept[0].stat().st_size < 1024 * 1024  # the small one alone
    assert store.known(str(__import__("pydicom").dcmread(big, stop_before_pixels=True).SOPInstanceUID)) is None
    store.close()


def test_transfer_cut_off_midway_leaves_no_file(tmp_path):
    big = tmp_path / "big.dcm"
    write_multiframe(big, 200)
    port = free_port()
    store = Store(tmp_path / "gantry.db")
    audit = Audit(store, tmp_path / "audit.log", stdout=False)
    inbox = tmp_path / "inbox"
    server = start_scp(replace(NodeSettings(), bind="127.0.0.1", port=port), Inbox(inbox), store, audit)
    try:
        # a slow sender (small PDUs) so the transfer is still running when it is killed
        sender = subprocess.Popen(["storescu", "-aec", "GANTRY", "--max-send-pdu", "4096", "127.0.0.1", str(port),
                                   str(big)], env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # the data set is on disk while it arrives (it used to be assembled in memory)
            partial = wait_for(lambda: [p for p in inbox_files(inbox) if p.stat().st_size > 1024 * 1024],
                               timeout=60, interval=0.01, what="a partly received file in the inbox")
            os.kill(sender.pid, signal.SIGKILL)
        finally:
            sender.wait()
        assert partial[0].stat().st_size < big.stat().st_size
        wait_for(lambda: not inbox_files(inbox), timeout=30, what="the partial file removed")
        time.sleep(0.2)
        assert not inbox_files(inbox)
    finally:
        server.shutdown()
        audit.close()
        store.close()
