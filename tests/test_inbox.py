"""The inbox writes each instance whole and durably under a random name, and the node's start
sweeps what no row (inbox) or undelivered delivery (outbox) refers to."""

from __future__ import annotations

import os
import stat

import pytest

from gantry_node.node.app import sweep_outbox
from gantry_node.node.store import inbox as inbox_module
from gantry_node.node.store.inbox import FANOUT, Inbox


def test_put_concatenates_the_chunks_even_when_the_kernel_writes_a_little_at_a_time(tmp_path, monkeypatch):
    real_writev = os.writev

    def stingy_writev(fd, buffers):  # a short write, as a pipe or a signal can cause
        first = bytes(buffers[0])[:7]
        return real_writev(fd, [first])

    monkeypatch.setattr(inbox_module.os, "writev", stingy_writev)
    box = Inbox(tmp_path / "inbox")
    meta, body = b"M" * 20, bytearray(b"0123456789" * 5)
    path = box.put(meta, memoryview(body), b"")
    assert path.read_bytes() == meta + bytes(body)


def test_files_are_private_and_named_by_chance(tmp_path):
    box = Inbox(tmp_path / "inbox")
    assert len([p for p in (tmp_path / "inbox").iterdir() if p.is_dir()]) == FANOUT
    a, b = box.put(b"first"), box.put(b"second")
    assert a != b and a.parent.name == a.name[:2]
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "inbox").stat().st_mode) == 0o700


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    box = Inbox(tmp_path / "inbox")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(inbox_module.os, "fsync", full)
    with pytest.raises(OSError):
        box.put(b"data")
    assert not [p for p in (tmp_path / "inbox").rglob("*") if p.is_file()]


def test_start_sweeps_unreferenced_inbox_and_stale_outbox_files(tmp_path):
    box = Inbox(tmp_path / "inbox")
    kept, orphan = box.put(b"row committed"), box.put(b"crash before the row")
    assert box.sweep({str(kept)}) == 1
    assert kept.exists() and not orphan.exists()

    outbox = tmp_path / "outbox" / "research" / "STUDY" / "SERIES"
    outbox.mkdir(parents=True)
    pending, delivered = outbox / "a.dcm", outbox / "b.dcm"
    pending.write_bytes(b"x")
    delivered.write_bytes(b"y")
    assert sweep_outbox(tmp_path / "outbox", {str(pending)}) == 1
    assert pending.exists() and not delivered.exists()
