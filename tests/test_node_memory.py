"""Bounded memory: a 256 MiB instance through a real node (dcmtk storescu -> node ->
storescp). The receiver streams it to disk and the forwarder sends it from the file, so
neither grows by more than a fraction of it; the worker holds the pixel data once (read),
never the two or three copies it used to (joined output, verify's lower-cased copy).
Not timed. Measured by scripts/bench_memory.py (peak VmHWM of each process)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_memory import MIB, available_memory, measure, write_multiframe  # noqa: E402

SIZE_MIB = 256
NEEDED = 2 * 1024 * MIB  # node, a worker holding the instance once, the old worst case (3x) with room


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed")
def test_each_process_grows_by_well_under_the_instance(tmp_path):
    if available_memory() < NEEDED:
        pytest.skip(f"needs {NEEDED // MIB} MiB of available memory, the machine has {available_memory() // MIB}")
    if shutil.disk_usage(tmp_path).free < 5 * SIZE_MIB * MIB:
        pytest.skip(f"needs {5 * SIZE_MIB} MiB free in {tmp_path} (source, inbox, outbox, destination)")
    source = tmp_path / "big.dcm"
    size = write_multiframe(source, SIZE_MIB)
    peaks = {p.process: p for p in measure(tmp_path / "node", [source], workers=1)}
    assert {"main", "receiver", "worker 1"} <= set(peaks)
    assert peaks["receiver"].growth < 0.1 * size, peaks["receiver"]
    assert peaks["main"].growth < 0.1 * size, peaks["main"]
    # the pixel data as read, once; the output and verification add no copy of it
    assert peaks["worker 1"].growth < 1.5 * size, peaks["worker 1"]
