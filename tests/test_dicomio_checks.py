"""read_instance refuses malformed instances with a reason that names the tag and never a
value (it becomes the operator's quarantine reason)."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from gantry_node.io.part10 import BadInput, read_instance
from tests.support.node import make_ct


def write(tmp_path, ds) -> str:
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def ct(frames=None):
    ds = make_ct(generate_uid(), generate_uid(), generate_uid(), 1, size=16)
    if frames is not None:
        ds.NumberOfFrames = frames
        ds.PixelData = ds.PixelData * int(frames)
    return ds


def problem(tmp_path, ds) -> str:
    with pytest.raises(BadInput) as err:
        read_instance(write(tmp_path, ds))
    return err.value.problem


def test_a_well_formed_multiframe_instance_reads(tmp_path):
    assert int(read_instance(write(tmp_path, ct(frames="3"))).NumberOfFrames) == 3


def test_number_of_frames_that_is_not_a_number(tmp_path):
    """As in pydicom's rtdose test file: Number of Frames "1A". pydicom reads it as text, and
    Rows x Columns x "1A" is a string; this used to end as 'cannot read: TypeError'."""
    ds = ct()
    # written raw: pydicom will not make an IS of "1A", but it reads one (with a warning)
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)
    with pytest.warns(UserWarning, match="Invalid value for VR IS"):
        reason = problem(tmp_path, ds)
    assert reason == "(0028,0008): Number of Frames is not a whole number"
    assert "1A" not in reason


def test_truncated_pixel_data(tmp_path):
    ds = ct()
    ds.PixelData = ds.PixelData[:100]
    assert problem(tmp_path, ds) == "(7FE0,0010): pixel data is 100 bytes, 512 expected (truncated)"


def test_image_without_pixel_data(tmp_path):
    ds = ct()
    del ds.PixelData
    assert "image attributes present but no pixel data" in problem(tmp_path, ds)


def test_not_a_composite_instance(tmp_path):
    ds = ct()
    ds.SOPInstanceUID = ""
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    assert problem(tmp_path, ds) == "SOPInstanceUID is missing: not a composite instance"


def test_reads_back_as_pydicom_does(tmp_path):
    ds = ct(frames="2")
    path = write(tmp_path, ds)
    assert read_instance(path).PixelData == pydicom.dcmread(path).PixelData
