"""Redacted output gains no IOD errors the input did not have (dicom3tools' dciodvfy)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from pydicom import uid

from gantry_node.engine.pixels.redact import redact
from gantry_node.engine.pixels.rules import Region
from tests.support.pixels import US_MULTIFRAME, encode_as, read_testdata, synthetic

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")


def iod_errors(path) -> set[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return {line.split(" - ", 1)[-1] for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")}


SOURCES = {
    "OBXXXX1A.dcm": lambda tmp: read_testdata("OBXXXX1A.dcm"),
    "OBXXXX1A_rle_2frame.dcm": lambda tmp: read_testdata("OBXXXX1A_rle_2frame.dcm"),
    "US1_J2KR.dcm": lambda tmp: read_testdata("US1_J2KR.dcm"),
    "US1_J2KI.dcm": lambda tmp: read_testdata("US1_J2KI.dcm"),
    "gdcm-US-ALOKA-16_big.dcm": lambda tmp: read_testdata("gdcm-US-ALOKA-16_big.dcm"),
    "US multi-frame JPEG baseline YBR_FULL_422": lambda tmp: encode_as(
        synthetic("RGB", 8, frames=2, sop_class=US_MULTIFRAME), uid.JPEGBaseline8Bit, tmp),
    "US multi-frame JPEG-LS lossless RGB": lambda tmp: encode_as(
        synthetic("RGB", 8, frames=2, sop_class=US_MULTIFRAME), uid.JPEGLSLossless, tmp),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_redaction_adds_no_iod_errors(tmp_path, name):
    ds = SOURCES[name](tmp_path)
    before, after = tmp_path / "before.dcm", tmp_path / "after.dcm"
    ds.save_as(before, enforce_file_format=True)
    result, _ = redact(ds, [Region(0, 0, 100, 30)])
    assert result.changed
    ds.save_as(after, enforce_file_format=True)
    assert iod_errors(after) - iod_errors(before) == set()
