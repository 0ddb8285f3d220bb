"""Helpers for the pixel tests: test data lookup, synthetic images in every photometric
interpretation, encoders for every transfer syntax (pydicom plugins and dcmtk), OCR text."""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import set_pixel_data

from gantry_node.engine.pixels.codec import decode
from gantry_node.engine.pixels.ocr import luminance, read_words
from gantry_node.testing.text import draw_text  # noqa: F401 -- tests import it from here too

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"


def data_path(name: str) -> Path:
    """A file of pydicom's test data or the pydicom-data package, offline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name, download=False)
    if path is None:
        raise AssertionError(f"test data {name} not found: install the test extra (pydicom-data)")
    return Path(path)


def read_testdata(name: str) -> Dataset:
    return pydicom.dcmread(data_path(name))


def roundtrip(ds: Dataset) -> Dataset:
    """Write as a Part 10 file and read back (what the next hop would see)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def pattern(rows: int, columns: int, frames: int, seed: int = 5) -> np.ndarray:
    """Smooth gradient plus mild noise (compresses, and lossy codecs change it a little)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    base = (x * 3 + y * 2)[None].astype(np.float64) + np.arange(frames)[:, None, None] * 7
    return base + rng.normal(0, 2, (frames, rows, columns))


def synthetic(photometric: str = "MONOCHROME2", bits: int = 8, frames: int = 1, rows: int = 48,
              columns: int = 64, modality: str = "US", sop_class: str | None = None) -> Dataset:
    """An image with real pixel content in `photometric`, `bits` (8 or 16), `frames`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    sop_class = sop_class or (US_MULTIFRAME if frames > 1 else US_IMAGE)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID12345", "19700102"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = modality, "Acme Sonics", "Model T"
    ds.BurnedInAnnotation = "YES"
    top = (1 << bits) - 1 if bits == 8 else 4095
    base = pattern(rows, columns, frames)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        arr = np.clip(base * (top / base.max()), 20, top).astype(np.uint8 if bits == 8 else np.uint16)
        stored = 8 if bits == 8 else 12
    elif photometric == "PALETTE COLOR":
        arr = (np.clip(base, 0, 255).astype(np.uint16) % 200 + 20).astype(np.uint8 if bits == 8 else np.uint16)
        stored = bits
        _palette(ds, bits)
    else:
        rgb = np.stack([base, base[..., ::-1] * 0.5 + 40, 255 - base], axis=-1)
        arr = np.clip(rgb, 0, 255).astype(np.uint8)
        if photometric == "YBR_FULL_422":
            arr[..., 1:] = arr[..., ::2, 1:].repeat(2, axis=-2)  # chroma shared by pixel pairs
        stored = 8
    set_pixel_data(ds, arr[0] if frames == 1 else arr, photometric, stored, generate_instance_uid=False)
    if frames > 1:
        ds.NumberOfFrames = frames
    return roundtrip(ds)


def _palette(ds: Dataset, bits: int) -> None:
    """256-entry palette whose darkest colour is at index 17 (not 0), to check the fill."""
    n = 256
    ramp = np.linspace(60, 255, n)
    red, green, blue = ramp.copy(), ramp[::-1].copy(), np.full(n, 128.0)
    red[17] = green[17] = blue[17] = 0
    for colour, values in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [n, 0, 16])
        data = (values * 257).astype("<u2").tobytes()
        ds[f"{colour}PaletteColorLookupTableData"] = pydicom.DataElement(
            pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableData"), "OW", data)
    ds.PixelRepresentation = 0


def encode_as(ds: Dataset, syntax: str, tmp: Path) -> Dataset:
    """`ds` re-encoded in `syntax` (pydicom encoders where there is one, else dcmtk)."""
    ds = copy.deepcopy(ds)
    if syntax in (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        return roundtrip(ds)
    if syntax == uid.RLELossless:
        ds.compress(uid.RLELossless, generate_instance_uid=False)
    elif syntax in (uid.JPEGLSLossless, uid.JPEG2000Lossless):
        ds.compress(syntax, generate_instance_uid=False)
    elif syntax == uid.JPEGLSNearLossless:
        ds.compress(syntax, jls_error=3, generate_instance_uid=False)
    elif syntax == uid.JPEG2000:
        ds.compress(syntax, j2k_cr=[15], generate_instance_uid=False)
    else:
        flag = {uid.JPEGBaseline8Bit: "+eb", uid.JPEGExtended12Bit: "+ee", uid.JPEGLossless: "+el",
                uid.JPEGLosslessSV1: "+e1"}[syntax]
        if not shutil.which("dcmcjpeg"):
            pytest.fail("dcmtk's dcmcjpeg is required for the JPEG process tests")
        src, dst = tmp / "in.dcm", tmp / "out.dcm"
        ds.save_as(src, enforce_file_format=True)
        subprocess.run(["dcmcjpeg", flag, str(src), str(dst)], check=True, capture_output=True)
        out = pydicom.dcmread(dst)
        assert out.file_meta.TransferSyntaxUID == syntax
        return out
    return roundtrip(ds)


def ocr_text(ds: Dataset) -> str:
    """Everything tesseract reads in every frame of `ds`, as the gate would read it."""
    decoded = decode(ds)
    words = []
    for i in range(decoded.frames.shape[0]):
        words += read_words(luminance(decoded.frames[i], decoded.photometric, ds), i, min_confidence=0)
    return " ".join(w.text for w in words)


def text_image(frames: int = 1, modality: str = "US", text_frames: tuple[int, ...] | None = None):
    """480x640 MONOCHROME2 ultrasound with speckle and the patient's identity (Doe^Jane,
    PID12345, 02/01/1970) burned in at the top left (within x<150, y<70), from a device no
    shipped rule knows (Manufacturer "Acme Sonics", model "Model T"). With the default pixel
    configuration the pipeline quarantines it ("no machine rule matches"); with
    `unknown_device: ocr` the OCR gate quarantines it."""
    ds = synthetic("MONOCHROME2", 8, frames=frames, rows=480, columns=640, modality=modality)
    rng = np.random.default_rng(3)
    arr = np.zeros((frames, 480, 640), np.uint8)
    arr[:, 150:450, 100:540] = rng.integers(0, 120, (frames, 300, 440))
    for i in text_frames if text_frames is not None else range(frames):
        arr[i] = draw_text(arr[i], ["DOE^JANE", "PID12345", "02/01/1970"], 10, 10, size=14)
    set_pixel_data(ds, arr[0] if frames == 1 else arr, "MONOCHROME2", 8, generate_instance_uid=False)
    if frames > 1:
        ds.NumberOfFrames = frames
    return roundtrip(ds)
