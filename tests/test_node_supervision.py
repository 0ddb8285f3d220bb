"""Supervision: a StoreError in any thread of the node is audited and the thread restarted
(the queue keeps moving), or, when it cannot be, `healthy()` turns False.

The node runs in this process (its receiver and workers are processes of their own) so that
a fault can be injected at one seam of our own code: one Store method, called by one thread
only (delivered: forwarder; claim: dispatcher; mark_clean_many: recorder; forwarded_rows:
cleanup). The rest is real: dcmtk's storescu sends, dcmtk's storescp receives."""

from __future__ import annotations

import json
import threading

import pytest

from gantry_node.node.app import Node
from gantry_node.node.config import load_config
from gantry_node.node.store import StoreError
from gantry_node.node.supervise import STATUS_FILE, StatusFile, Supervisor
from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    storescp,
    storescu,
    wait_for,
    write_study,
)

DISK_FULL = "index database: database or disk is full"


class Fault:
    """Replace `store.<method>`: the next `times` calls raise `error` (after the real call when
    `after`, i.e. the transaction committed and then the caller saw an error)."""

    def __init__(self, store, method: str, error: Exception, times: int, after: bool = False):
        self.real = getattr(store, method)
        self.error, self.left, self.after = error, times, after
        self.raised = 0
        self._lock = threading.Lock()
        setattr(store, method, self)

    def __call__(self, *args, **kwargs):
        with self._lock:
            fire = self.left > 0
            if fire:
                self.left -= 1
                self.raised += 1
        if fire and not self.after:
            raise self.error
        result = self.real(*args, **kwargs)
        if fire:
            raise self.error
        return result


@pytest.fixture
def quick_restarts(monkeypatch):
    monkeypatch.setattr(Supervisor, "BACKOFF_INITIAL", 0.05)
    monkeypatch.setattr(Supervisor, "BACKOFF_MAX", 0.2)


def start_node(tmp_path, port: int, research_port: int) -> Node:
    path = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                       logging={"file": str(tmp_path / "data" / "audit.log"), "stdout": False})
    node = Node(load_config(path))
    node.start()
    return node


def audit_events(tmp_path, name: str) -> list[dict]:
    lines = (tmp_path / "data" / "audit.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


@pytest.mark.parametrize(("method", "component", "after"), [
    ("delivered", "forward-research", False),
    ("claim", "dispatcher", True),  # rows claimed, then the error: they must not stay in processing
    ("mark_clean_many", "recorder", False),
    ("forwarded_rows", "cleanup", False),
])
def test_store_error_in_a_thread_is_audited_and_the_queue_keeps_moving(tmp_path, quick_restarts, method,
                                                                       component, after):
    study = write_study(tmp_path / "in", 5)
    research_port, port = free_port(), free_port()
    with storescp(tmp_path / "research", port=research_port):
        node = start_node(tmp_path, port, research_port)
        try:
            fault = Fault(node.store, method, StoreError(DISK_FULL, transient=True), times=3, after=after)
            assert storescu(port, tmp_path / "in").returncode == 0
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 5 and f, timeout=60,
                             what="all five delivered despite the fault")
            wait_for(lambda: node.store.counts()["forwarded"] == 5, timeout=30, what="all five recorded forwarded")
            # the cleanup thread records them: outbox emptied, a forwarded event each
            wait_for(lambda: len(audit_events(tmp_path, "forwarded")) >= 5, timeout=30, what="cleanup done")
            assert fault.raised == 3
            assert node.healthy()
            states = {s.name: s for s in node.supervisor.states()}
            assert states[component].state == "running" and states[component].restarts == 3
            assert node.store.counts()["processing"] == 0 and node.store.counts()["quarantined"] == 0
        finally:
            assert node.stop(), "every component stopped in order"
    assert (tmp_path / "data" / "stopped-cleanly").exists()
    assert set(read_uids(files)) == expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)
    failed = [e for e in audit_events(tmp_path, "component_failed") if e["component"] == component]
    assert len(failed) == 3
    assert all(e["exception"] == "StoreError" and e["outcome"] == "restarting" for e in failed)
    # no message text from outside our own SafeMessage errors: the sqlite text is not in the trail
    assert "database or disk is full" not in (tmp_path / "data" / "audit.log").read_text()


def test_a_component_that_keeps_failing_makes_the_node_unhealthy(tmp_path, quick_restarts, monkeypatch):
    monkeypatch.setattr(Supervisor, "MAX_RESTARTS", 2)
    research_port, port = free_port(), free_port()
    write_study(tmp_path / "in", 2)
    with storescp(tmp_path / "research", port=research_port):
        node = start_node(tmp_path, port, research_port)
        try:
            assert node.healthy()
            # not transient (a corrupt index, say): restarted twice, then given up
            Fault(node.store, "forwarded_rows", StoreError("index database: database disk image is malformed"),
                  times=1000)
            assert storescu(port, tmp_path / "in").returncode == 0
            wait_for(lambda: not node.healthy(), timeout=30, what="the node unhealthy")
            assert node.failed_components() == ["cleanup"]
            status = StatusFile.read(tmp_path / "data" / STATUS_FILE)
            shown = {c["name"]: c for c in status["components"]}
            assert shown["cleanup"]["state"] == "failed" and shown["cleanup"]["last_error"] == "StoreError"
            assert shown["forward-research"]["state"] == "running"
        finally:
            assert not node.stop(), "a failed component: not an orderly stop"
    assert not (tmp_path / "data" / "stopped-cleanly").exists()
    outcomes = [e["outcome"] for e in audit_events(tmp_path, "component_failed") if e["component"] == "cleanup"]
    assert outcomes == ["restarting", "restarting", "failed"]
