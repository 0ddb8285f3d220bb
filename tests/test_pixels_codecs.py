"""Redaction on decoded pixels for every accepted transfer syntax and photometric
interpretation, single and multi-frame, 8 and 16 bit."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydicom import uid

from gantry_node.engine.pixels.codec import PixelDecodeError, decode, to_native
from gantry_node.engine.pixels.redact import redact
from gantry_node.engine.pixels.rules import Region
from tests.support.pixels import encode_as, read_testdata, roundtrip, synthetic

NATIVE = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian]
LOSSLESS = [uid.RLELossless, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEG2000Lossless]
LOSSY = [uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLSNearLossless, uid.JPEG2000]
EVERY = NATIVE + LOSSLESS + LOSSY

# (photometric, bits) -> transfer syntaxes that can carry it
CASES = {
    ("MONOCHROME2", 8): EVERY,
    ("MONOCHROME2", 16): EVERY,
    ("MONOCHROME1", 8): EVERY,
    ("RGB", 8): EVERY,  # dcmtk's lossy JPEG turns RGB into YBR_FULL_422
    ("YBR_FULL", 8): NATIVE + LOSSLESS + [uid.JPEGLSNearLossless, uid.JPEG2000],
    ("YBR_FULL_422", 8): NATIVE,
    ("PALETTE COLOR", 8): NATIVE + LOSSLESS,
    ("PALETTE COLOR", 16): NATIVE + LOSSLESS,
}
EXPECTED_OUTPUT = {
    uid.ExplicitVRLittleEndian: uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian: uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian: uid.DeflatedExplicitVRLittleEndian,
    uid.RLELossless: uid.RLELossless, uid.JPEGLossless: uid.RLELossless, uid.JPEGLosslessSV1: uid.RLELossless,
    uid.JPEGLSLossless: uid.JPEGLSLossless, uid.JPEG2000Lossless: uid.JPEG2000Lossless,
}
REGION = Region(4, 2, 20, 10)  # columns 4..23, rows 2..11


def params():
    for (pi, bits), syntaxes in CASES.items():
        for ts in syntaxes:
            for frames in (1, 3) if ts in (uid.ExplicitVRLittleEndian, uid.RLELossless, uid.JPEGBaseline8Bit,
                                            uid.JPEG2000Lossless) else (2,):
                yield pytest.param(pi, bits, ts, frames, id=f"{pi}-{bits}-{ts.name}-{frames}f")


def black_of(decoded, ds):
    from gantry_node.engine.pixels.redact import black_value

    return black_value(decoded, ds)


@pytest.mark.parametrize(("pi", "bits", "syntax", "frames"), list(params()))
def test_redaction_on_decoded_pixels(tmp_path, pi, bits, syntax, frames):
    source = encode_as(synthetic(pi, bits, frames=frames), syntax, tmp_path)
    assert source.file_meta.TransferSyntaxUID == syntax
    before = decode(source)  # the decoded source: for lossy input, the reference
    ds = copy.deepcopy(source)

    result, _ = redact(ds, [REGION])
    out = roundtrip(ds)
    after = decode(out)

    assert result.changed and result.frames_changed == frames
    assert after.frames.shape == before.frames.shape
    inside = np.zeros(before.frames.shape[:3], dtype=bool)
    inside[:, 2:12, 4:24] = True
    # every pixel outside the region is exactly what the source decoded to
    assert np.array_equal(after.frames[~inside], before.frames[~inside])
    # the region is the image's black in every frame
    black = black_of(before, source)
    assert (after.frames[inside] == black).all()
    if pi == "PALETTE COLOR":
        assert int(black) == 17  # the darkest palette entry, not index 0
    if pi == "MONOCHROME1":
        assert int(black) == int(before.frames.max())

    written = out.file_meta.TransferSyntaxUID
    assert written == EXPECTED_OUTPUT.get(syntax, uid.ExplicitVRLittleEndian)
    lossy = syntax in LOSSY
    assert (out.get("LossyImageCompression") == "01") == lossy
    assert out.BurnedInAnnotation == "NO"
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence]
    assert ("113101", "DCM") in codes
    # pixel module consistent with what was written
    expected_pi = source.PhotometricInterpretation
    if expected_pi == "YBR_FULL_422" or (expected_pi == "YBR_FULL" and lossy):
        expected_pi = "RGB"  # converted as pydicom shows it; uncompressed YBR is not valid everywhere
    if written == uid.JPEG2000Lossless and expected_pi == "RGB":
        expected_pi = "YBR_RCT"  # J2K's reversible colour transform; decodes back to RGB
    assert out.PhotometricInterpretation == expected_pi
    assert int(out.get("NumberOfFrames", 1)) == frames
    assert out.SamplesPerPixel == (3 if before.frames.ndim == 4 else 1)
    if out.SamplesPerPixel == 3 and not written.is_encapsulated:
        assert out.PlanarConfiguration == 0
    assert out.SOPInstanceUID == source.SOPInstanceUID  # re-encoding never mints a new UID


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.RLELossless, uid.JPEGLSLossless])
def test_nothing_changes_when_the_region_is_already_black(tmp_path, syntax):
    source = synthetic("MONOCHROME2", 8, frames=2)
    arr = decode(source).frames.copy()
    arr[:, 2:12, 4:24] = arr.min()
    from pydicom.pixels import set_pixel_data

    set_pixel_data(source, arr, "MONOCHROME2", 8, generate_instance_uid=False)
    source.NumberOfFrames = 2
    source = encode_as(roundtrip(source), syntax, tmp_path)
    ds = copy.deepcopy(source)
    pixel_bytes = ds.PixelData
    result, _ = redact(ds, [REGION])
    assert not result.changed and result.pixels_changed == 0
    assert ds.PixelData == pixel_bytes
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.BurnedInAnnotation == "YES"  # untouched: nothing was cleaned
    assert "DeidentificationMethodCodeSequence" not in ds


def test_regions_are_clipped_and_outside_regions_ignored():
    ds = synthetic("MONOCHROME2", 8)
    result, _ = redact(ds, [Region(60, 40, 100, 100), Region(500, 500, 10, 10)])
    assert result.regions == [[60, 40, 4, 8]]
    after = decode(roundtrip(ds)).frames
    assert (after[:, 40:, 60:] == after.min()).all()


def test_big_endian_source_is_written_little_endian_with_its_palette_intact():
    from pydicom.pixels import apply_color_lut

    little = read_testdata("gdcm-US-ALOKA-16.dcm")
    big = read_testdata("gdcm-US-ALOKA-16_big.dcm")
    assert big.file_meta.TransferSyntaxUID == uid.ExplicitVRBigEndian
    redact(big, [Region(0, 0, 640, 26)])
    out = roundtrip(big)
    assert out.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    colours = apply_color_lut(decode(out).frames[0], out)
    reference = apply_color_lut(little.pixel_array, little)
    assert np.array_equal(colours[26:], reference[26:])


def test_undecodable_pixels_raise():
    ds = read_testdata("JPEG-lossy.dcm")  # a known-broken JPEG Extended stream
    with pytest.raises(PixelDecodeError, match="cannot decode pixel data"):
        redact(ds, [REGION])


def test_truncated_rle_raises(tmp_path):
    ds = encode_as(synthetic("MONOCHROME2", 8), uid.RLELossless, tmp_path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with pytest.raises(PixelDecodeError):
        decode(ds)


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.RLELossless, uid.JPEGBaseline8Bit])
def test_decoding_only_some_frames_gives_the_same_frames(tmp_path, syntax):
    ds = encode_as(synthetic("RGB", 8, frames=5), syntax, tmp_path)
    whole = decode(ds).frames
    some = decode(ds, [0, 2, 4])
    assert np.array_equal(some.frames, whole[[0, 2, 4]])
    with pytest.raises(PixelDecodeError, match="out of range"):
        decode(ds, [5])


@pytest.mark.parametrize(("name", "written"), [("CT_small.dcm", uid.ExplicitVRLittleEndian),
                                               ("MR_small_jpeg_ls_lossless.dcm", uid.JPEGLSLossless),
                                               ("MR_small_RLE.dcm", uid.RLELossless)])
def test_signed_16_bit_images(name, written):
    source = read_testdata(name)
    assert source.PixelRepresentation == 1 and source.BitsAllocated == 16
    before = decode(source).frames
    ds = copy.deepcopy(source)
    redact(ds, [REGION])
    out = roundtrip(ds)
    after = decode(out).frames
    assert out.file_meta.TransferSyntaxUID == written and out.PixelRepresentation == 1
    inside = np.zeros(before.shape, dtype=bool)
    inside[:, 2:12, 4:24] = True
    assert np.array_equal(after[~inside], before[~inside])
    assert (after[inside] == before.min()).all()  # the smallest stored value, negative or not


@pytest.mark.parametrize("syntax", LOSSLESS + LOSSY + [uid.DeflatedExplicitVRLittleEndian])
@pytest.mark.parametrize(("pi", "bits"), [("MONOCHROME2", 16), ("RGB", 8)])
def test_to_native_keeps_the_decoded_values(tmp_path, pi, bits, syntax):
    """What the forwarder sends to a destination that refuses the file's own syntax."""
    source = encode_as(synthetic(pi, bits, frames=2), syntax, tmp_path)
    expected = decode(source)
    native = copy.deepcopy(source)
    assert to_native(native) == syntax
    back = roundtrip(native)
    assert back.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    got = decode(back)
    assert got.photometric == expected.photometric
    assert np.array_equal(got.frames, expected.frames)
    assert int(back.NumberOfFrames) == 2
    if syntax in LOSSY:
        assert back.LossyImageCompression == "01"
    else:
        assert "LossyImageCompression" not in back
