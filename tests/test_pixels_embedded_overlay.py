"""Embedded overlays in the unused high bits of Pixel Data (issue 13 item 4).

An old CT writes its overlay into bits 12-15 of a 12-bit image (Bits Allocated 16, Bits Stored
12, High Bit 11; 60xx group with Overlay Bits Allocated 16, Overlay Bit Position 12 and no
Overlay Data). De-identification removes the 60xx group, and pydicom's pixel_array masks the
bits, so only the bytes show them. The pixel stage clears every bit above High Bit (and the
declared planes), keeps every stored value, and leaves clean pixel data byte-identical."""

from __future__ import annotations

import copy
import io
import json
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.pixels import pixel_array

from gantry_node.engine.deid import Keys, default_policy
from gantry_node.engine.pipeline import Engine, Quarantine, process
from gantry_node.engine.pixels.config import parse_pixels_section
from gantry_node.engine.pixels.highbits import Layout, canonical, codestream_precision, high_bits_problem
from gantry_node.engine.pixels.stage import make_pixel_stage
from gantry_node.testing import Study
from tests.conftest import SECRET, free_port
from tests.support.dciodvfy import dciodvfy_errors, needs_dciodvfy
from tests.support.node import (
    dcmtk_env,
    dicom_destination,
    node_config,
    received_files,
    running_node,
    storescp,
    wait_for,
)

OVERLAY_BAR = (slice(8, 20), slice(6, 50))  # rows, columns of the "text" in the high bits


# the synthetic device, known to burn no text (the multi-frame is a screen-capture SOP class,
# which an unknown device may not send); the OCR gate only for US, so these tests need no tesseract
PIXELS = {"rules": [{"id": "synthetic", "match": {"tag": "Manufacturer", "equals": "GANTRY SYNTHETIC"},
                     "regions": []}],
          "ocr": {"enabled_modalities": ["US"]}}


def engine() -> Engine:
    keys = Keys(SECRET)
    return Engine(default_policy(), keys, pixel_stage=make_pixel_stage(parse_pixels_section(PIXELS), keys))


def study() -> Study:
    return Study.for_patient(name="DOE^JANE", patient_id="MRN12345", birth_date="19700214", sex="F").on("20240311")


def declare_embedded_overlay(ds, position: int = 12, group: int = 0x6000) -> None:
    """The 60xx elements an old modality writes for an overlay kept in the pixel cells."""
    ds.add_new((group, 0x0010), "US", int(ds.Rows))
    ds.add_new((group, 0x0011), "US", int(ds.Columns))
    ds.add_new((group, 0x0040), "CS", "G")
    ds.add_new((group, 0x0050), "SS", [1, 1])
    ds.add_new((group, 0x0100), "US", 16)
    ds.add_new((group, 0x0102), "US", position)


def embed(ds, frames: tuple[int, ...] = (0,), bits: int = 0xF000, declare: bool = True):
    """`ds` (native, 16-bit cells) with a text-like bar in `bits` of the given frames."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    cells = np.frombuffer(ds.PixelData, "<u2").reshape(count, int(ds.Rows), int(ds.Columns)).copy()
    for f in frames:
        cells[f][OVERLAY_BAR] |= bits
    ds.PixelData = cells.tobytes()
    if declare:
        declare_embedded_overlay(ds, 12)
    return ds


def stored(ds, bits_stored: int = 12) -> np.ndarray:
    """The stored values as the standard defines them: bits 0..HighBit of each cell."""
    return pixel_array(ds, correct_unused_bits=False).astype(np.uint32) & ((1 << bits_stored) - 1)


def raw_cells(ds) -> np.ndarray:
    """The cells as stored, unused bits included (decoded first if compressed)."""
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return pixel_array(ds, correct_unused_bits=False).astype(np.uint16)
    return np.frombuffer(ds.PixelData, "<u2")


def written(ds) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_ct_with_an_overlay_in_bits_12_to_15_leaves_without_it_and_with_every_value():
    ct = embed(study().series("CT").ct_image(rows=64, columns=64, bits=12).build())
    assert (raw_cells(ct) >> 12).any()
    assert not (pixel_array(ct) >> 12).any(), "pydicom masks the bits: a decoded check cannot see them"
    clean = process(ct, engine())
    out = written(clean.dataset)
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(ct))
    assert np.array_equal(pixel_array(out), pixel_array(ct))
    notes = clean.notes["pixels"]
    assert notes["high_bits_cleared"] == 1 and notes["overlay_planes"] == [12]
    assert notes["high_bit_values"] == 12 * 44  # every cell of the bar
    change = [c for c in clean.changes if c.keyword == "PixelData"]
    assert len(change) == 1 and change[0].action == "C" and "1 frame(s)" in change[0].reason
    assert not [e for e in out if e.tag.group == 0x6000], "the overlay's group is gone too"


def test_undeclared_stray_high_bits_are_cleared_too():
    ct = embed(study().series("CT").ct_image(rows=32, columns=32, bits=12).build(), bits=0x2000, declare=False)
    out = written(process(ct, engine()).dataset)
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(ct))


def test_multiframe_overlay_cleared_in_each_frame_that_has_it():
    mf = embed(study().series("OT").multiframe_image(frames=4, rows=32, columns=48).build(), frames=(1, 3))
    clean = process(mf, engine())
    out = written(clean.dataset)
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(mf))
    assert clean.notes["pixels"]["high_bits_cleared"] == 2


def test_rle_compressed_overlay_decoded_cleared_and_reencoded_losslessly():
    ct = embed(study().series("CT").ct_image(rows=64, columns=64, bits=12).build())
    ct.compress(uid.RLELossless, generate_instance_uid=False)
    assert (raw_cells(ct) >> 12).any(), "RLE carries the high bits"
    clean = process(ct, engine())
    out = written(clean.dataset)
    assert out.file_meta.TransferSyntaxUID == uid.RLELossless
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(ct))
    assert clean.notes["pixels"]["high_bits_cleared"] == 1


def test_multiframe_rle_compressed():
    mf = embed(study().series("OT").multiframe_image(frames=3, rows=32, columns=32).build(), frames=(0, 2))
    mf.compress(uid.RLELossless, generate_instance_uid=False)
    out = written(process(mf, engine()).dataset)
    assert out.file_meta.TransferSyntaxUID == uid.RLELossless
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(mf))


@pytest.mark.parametrize("kind", ["ct", "rle", "multiframe"])
def test_clean_pixel_data_stays_byte_identical(kind):
    if kind == "multiframe":
        ds = study().series("OT").multiframe_image(frames=3, rows=32, columns=32).build()
    else:
        ds = study().series("CT").ct_image(rows=64, columns=64, bits=12).build()
    if kind == "rle":
        ds.compress(uid.RLELossless, generate_instance_uid=False)
    clean = process(ds, engine())
    assert clean.dataset.PixelData == ds.PixelData
    assert "high_bits_cleared" not in clean.notes["pixels"]
    assert not [c for c in clean.changes if c.keyword == "PixelData"]


def test_signed_cells_keep_the_sign_extension_of_their_value():
    """PixelRepresentation 1: the canonical cell is the sign extension of the 12-bit value (what
    pydicom's own correction gives); sign-extended clean data is untouched."""
    ct = study().series("CT").ct_image(rows=32, columns=32, bits=12).build()
    values = (np.frombuffer(ct.PixelData, "<u2").astype(np.int16) - 1024)  # HU: air -1000, bone 700
    ct.PixelRepresentation = 1
    ct.RescaleIntercept = 0
    ct.PixelData = values.astype("<i2").tobytes()  # sign-extended, as most writers do
    assert (values < 0).any() and (values >= 0).any()
    untouched = process(copy.deepcopy(ct), engine())
    assert untouched.dataset.PixelData == ct.PixelData

    cells = values.view("<u2").copy().reshape(32, 32)
    cells[OVERLAY_BAR] ^= 0x4000      # an overlay bit flipped in positive and negative cells
    cells[20:24] &= 0x0FFF            # a writer that zeroed the high bits of some negative values
    ct.PixelData = cells.tobytes()
    clean = process(ct, engine())
    out = np.frombuffer(written(clean.dataset).PixelData, "<i2")
    assert np.array_equal(out, values), "every cell is the sign extension of its unchanged stored value"
    assert np.array_equal(pixel_array(written(clean.dataset)).ravel(), pixel_array(ct).ravel())


def test_declared_overlay_inside_bits_stored_has_its_plane_cleared():
    """Old data that says Bits Stored 16 but declares an embedded overlay in bit 15."""
    ct = study().series("CT").ct_image(rows=32, columns=32, bits=16).build()
    assert int(ct.BitsStored) == 16
    cells = np.frombuffer(ct.PixelData, "<u2").copy().reshape(32, 32)
    cells[OVERLAY_BAR] |= 0x8000
    ct.PixelData = cells.tobytes()
    declare_embedded_overlay(ct, 15)
    clean = process(ct, engine())
    out = np.frombuffer(clean.dataset.PixelData, "<u2").reshape(32, 32)
    assert not (out & 0x8000).any()
    assert np.array_equal(out, cells & 0x7FFF)
    assert clean.notes["pixels"]["overlay_planes"] == [15]


def test_lossy_compressed_data_with_high_bits_is_quarantined():
    """A lossy coder spreads the overlay into the stored bits: clearing cannot remove it."""
    ct = embed(study().series("CT").ct_image(rows=64, columns=64, bits=12).build())
    ct.BitsStored, ct.HighBit = 16, 15  # encode with 16-bit precision, then say 12, as such writers do
    ct.compress(uid.JPEG2000, j2k_cr=[10], generate_instance_uid=False)
    ct.BitsStored, ct.HighBit = 12, 11
    with pytest.raises(Quarantine) as caught:
        process(ct, engine())
    assert caught.value.stage == "pixels"
    assert "lossy" in caught.value.reason and "outside the stored value" in caught.value.reason


def test_once_lossy_native_data_with_high_bits_is_quarantined():
    ct = embed(study().series("CT").ct_image(rows=32, columns=32, bits=12).build())
    ct.LossyImageCompression = "01"
    with pytest.raises(Quarantine, match="lossy"):
        process(ct, engine())


def test_lossy_data_without_high_bits_passes_unchanged():
    ct = study().series("CT").ct_image(rows=64, columns=64, bits=12).build()
    ct.compress(uid.JPEG2000, j2k_cr=[10], generate_instance_uid=False)
    clean = process(ct, engine())
    assert clean.dataset.PixelData == ct.PixelData


def test_post_check_names_the_problem_without_values():
    ct = embed(study().series("CT").ct_image(rows=16, columns=16, bits=12).build(), declare=False)
    assert "above High Bit" in high_bits_problem(ct, ct)
    clean = copy.deepcopy(ct)
    clean.PixelData = canonical(np.frombuffer(ct.PixelData, "<u2"), Layout(16, 12, False)).tobytes()
    assert high_bits_problem(clean, clean) is None


def test_high_bit_not_at_bits_stored_minus_one_fails_closed():
    ct = study().series("CT").ct_image(rows=16, columns=16, bits=12).build()
    ct.HighBit = 15
    with pytest.raises(Quarantine, match="High Bit"):
        process(ct, engine())


@needs_dciodvfy
def test_output_gains_no_dciodvfy_error(tmp_path):
    for name, ds in (("ct", embed(study().series("CT").ct_image(rows=64, columns=64, bits=12).build())),
                     ("mf", embed(study().series("OT").multiframe_image(frames=2, rows=32, columns=32).build()))):
        src, dst = tmp_path / f"{name}-in.dcm", tmp_path / f"{name}-out.dcm"
        ds.save_as(src, enforce_file_format=True)
        dst.write_bytes(bytes(process(pydicom.dcmread(src), engine()).encoded))
        assert dciodvfy_errors(dst) <= dciodvfy_errors(src), name


def test_through_the_node_dcmsend_to_storescp_the_received_bytes_have_no_high_bit(tmp_path):
    (tmp_path / "in").mkdir()
    series = study().series("CT")
    embed(series.ct_image(rows=64, columns=64, bits=12).build()).save_as(
        tmp_path / "in" / "ct.dcm", enforce_file_format=True)
    rle = embed(series.ct_image(rows=64, columns=64, bits=12).build())
    rle.compress(uid.RLELossless, generate_instance_uid=False)
    rle.save_as(tmp_path / "in" / "rle.dcm", enforce_file_format=True)
    sent = [pydicom.dcmread(p) for p in sorted((tmp_path / "in").iterdir())]
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            # dcmsend proposes each file's own transfer syntax, as a modality does
            result = subprocess.run(["dcmsend", "-aet", "MODALITY", "-aec", "GANTRY", "--decompress-never", "+sd",
                                     "127.0.0.1", str(port), str(tmp_path / "in")], capture_output=True, text=True,
                                    env=dcmtk_env(), timeout=120)
            assert result.returncode == 0, result.stderr
            files = wait_for(lambda: (f := received_files(tmp_path / "research")) and len(f) >= 2 and f,
                             timeout=60, what="2 instances at storescp")
    received = [pydicom.dcmread(p) for p in files]
    assert sorted(ds.file_meta.TransferSyntaxUID.is_encapsulated for ds in received) == [False, True]
    assert any(ds.file_meta.TransferSyntaxUID == uid.RLELossless for ds in received)  # re-encoded as it came
    for ds in received:
        assert not (raw_cells(ds) >> 12).any(), ds.file_meta.TransferSyntaxUID  # native: the bytes as received
        assert not [e for e in ds if e.tag.group == 0x6000]
    assert sorted(stored(ds).tobytes() for ds in received) == sorted(stored(ds).tobytes() for ds in sent)
    events = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert sum(e["event"] == "forwarded" for e in events) == 2


def test_jpeg_ls_lossless_of_16_bit_precision_is_decoded_cleared_and_reencoded():
    """A writer that codes 12-bit data at 16-bit precision keeps the overlay in the codestream."""
    ct = embed(study().series("CT").ct_image(rows=64, columns=64, bits=12).build())
    ct.BitsStored, ct.HighBit = 16, 15
    ct.compress(uid.JPEGLSLossless, generate_instance_uid=False)
    ct.BitsStored, ct.HighBit = 12, 11
    assert codestream_precision(ct) == 16 and (raw_cells(ct) >> 12).any()
    clean = process(ct, engine())
    out = written(clean.dataset)
    assert out.file_meta.TransferSyntaxUID == uid.JPEGLSLossless
    assert not (raw_cells(out) >> 12).any()
    assert np.array_equal(stored(out), stored(ct))
    assert codestream_precision(out) == 12


def test_codestream_of_precision_bits_stored_is_not_decoded():
    ct = study().series("CT").ct_image(rows=64, columns=64, bits=12).build()
    ct.compress(uid.JPEGLSLossless, generate_instance_uid=False)
    assert codestream_precision(ct) == 12  # cannot carry bit 12: the stage leaves it as it is
    clean = process(ct, engine())
    assert clean.dataset.PixelData == ct.PixelData
