"""A full disk is a condition that passes, not a verdict on the instances.

The outbox sits on a real tmpfs (the tests run as root; skipped if mount is not permitted)
filled to the last byte. Every instance is acknowledged (the inbox has room), the workers
cannot write a clean copy: they used to quarantine each ("cannot write the outbox: No space
left on device") until an operator released it. Now they wait under backoff; once space is
freed, everything acknowledged arrives with no operator action."""

from __future__ import annotations

import json

import pytest

from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    small_tmpfs,
    storescp,
    storescu,
    wait_for,
    write_study,
)


@pytest.fixture
def small_outbox(tmp_path):
    with small_tmpfs(tmp_path / "data" / "outbox", "1m") as folder:
        yield folder


def fill(folder):
    """Fill the filesystem of `folder` to the last byte; returns the ballast file."""
    ballast = folder / "ballast"
    try:
        with open(ballast, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass  # ENOSPC: full
    return ballast


def test_full_outbox_then_freed_everything_acknowledged_arrives(tmp_path, small_outbox, run_cli):
    study = write_study(tmp_path / "in", 10, size=128)  # ~33 kB each
    research_port, port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
    audit_log = tmp_path / "data" / "audit.log"

    def events(name: str) -> list[dict]:
        return [e for e in map(json.loads, audit_log.read_text().splitlines()) if e["event"] == name]

    with storescp(tmp_path / "research", port=research_port), running_node(config, port) as node:
        ballast = fill(small_outbox)  # after the start, whose sweep removes unreferenced outbox files
        sent = storescu(port, tmp_path / "in")
        assert sent.returncode == 0, sent.stderr  # all ten acknowledged
        met = lambda: {e["instance"] for e in events("store_failed") + events("quarantined")  # noqa: E731
                       if e.get("stage") == "write"}
        wait_for(lambda: len(met()) >= 3, timeout=30, what="workers meeting the full disk")
        states = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)["states"]
        assert states["quarantined"] == 0 and states["forwarded"] == 0
        ballast.unlink()  # space is freed; nobody touches the node
        files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 10 and f, timeout=60,
                         what="everything acknowledged delivered once there is room")
        assert node.poll() is None
    assert set(read_uids(files)) == expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)
    assert not events("quarantined")
    assert all(e["reason"] == "cannot write the outbox: No space left on device" for e in events("store_failed"))
