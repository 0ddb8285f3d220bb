"""The image kinds: the IOD-specific modules and deterministic pixels of CT, MR, SC, US and a
multi-frame secondary capture."""

from __future__ import annotations

import functools
import zlib

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    MRImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)


def rng_for(builder) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(builder.sop_instance_uid.encode()))


def phantom(rows: int, columns: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A body-like ellipse in air, with two darker lungs and a bright spine, in HU-like units, plus noise."""
    return _anatomy(rows, columns, round(scale, 3)) + rng.standard_normal((rows, columns), dtype=np.float32) * 12


@functools.lru_cache(maxsize=32)
def _anatomy(rows: int, columns: int, scale: float) -> np.ndarray:
    y, x = np.ogrid[-1:1:rows * 1j, -1:1:columns * 1j]
    image = np.full((rows, columns), -1000.0, dtype=np.float32)
    image[(x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1] = 40
    for cx in (-0.4, 0.4):
        image[((x - cx) / 0.3) ** 2 + ((y + 0.05) / 0.4) ** 2 <= scale] = -800
    image[(x / 0.1) ** 2 + ((y - 0.45) / 0.1) ** 2 <= 1] = 700
    image.flags.writeable = False  # shared between calls
    return image


def _plane(ds: Dataset, builder, spacing: float, thickness: float) -> None:
    ds.FrameOfReferenceUID = builder.series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    z = -thickness * builder.number
    ds.PixelSpacing = [spacing, spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-spacing * ds.Columns / 2, -spacing * ds.Rows / 2, z]
    ds.SliceThickness = thickness
    ds.SliceLocation = z


def _grayscale(ds: Dataset, rows: int, columns: int, stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16 if stored > 8 else 8
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0


def _rgb(ds: Dataset, pixels: np.ndarray) -> None:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()


def ct(ds: Dataset, builder) -> None:
    p = builder.params
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    _grayscale(ds, p["rows"], p["columns"], 12 if p["bits"] == 12 else 16)
    _plane(ds, builder, spacing=0.7, thickness=2.5)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    hu = phantom(p["rows"], p["columns"], rng_for(builder), scale=1 - 0.02 * (builder.number % 10))
    stored = np.clip(hu + 1024, 0, 2 ** ds.BitsStored - 1).astype("<u2")
    ds.PixelData = stored.tobytes()


def mr(ds: Dataset, builder) -> None:
    p = builder.params
    ds.SOPClassUID = MRImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 500, 15, 1
    ds.MagneticFieldStrength = 1.5
    ds.ImagedNucleus = "1H"
    ds.AcquisitionNumber = 1
    _grayscale(ds, p["rows"], p["columns"], 12)
    _plane(ds, builder, spacing=0.9, thickness=5.0)
    signal = np.clip(phantom(p["rows"], p["columns"], rng_for(builder)) + 1000, 0, 4095)
    ds.WindowCenter, ds.WindowWidth = 1000, 2000
    ds.PixelData = signal.astype("<u2").tobytes()


def _secondary_capture(ds: Dataset) -> None:
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"


def sc(ds: Dataset, builder) -> None:
    p = builder.params
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.ImageType = ["DERIVED", "SECONDARY"]
    _secondary_capture(ds)
    gray = np.clip(phantom(p["rows"], p["columns"], rng_for(builder)) / 8 + 128, 0, 255).astype(np.uint8)
    if p["rgb"]:
        _rgb(ds, np.stack([gray, gray // 2, 255 - gray], axis=-1))
    else:
        _grayscale(ds, p["rows"], p["columns"], 8)
        ds.PixelData = gray.tobytes()


def us(ds: Dataset, builder) -> None:
    p = builder.params
    rows, columns = p["rows"], p["columns"]
    ds.SOPClassUID = UltrasoundImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    y, x = np.ogrid[0:rows, 0:columns]
    fan = (np.abs(x - columns / 2) < (y - rows * 0.1) * 0.7) & (y < rows * 0.95)
    speckle = rng_for(builder).rayleigh(60, size=(rows, columns))
    gray = np.where(fan, np.clip(speckle, 0, 255), 0).astype(np.uint8)
    gray[rows // 40: rows // 40 + rows // 30, columns // 20: columns // 2] = 255  # where the header text goes
    _rgb(ds, np.stack([gray] * 3, axis=-1))


def multiframe(ds: Dataset, builder) -> None:
    p = builder.params
    frames, rows, columns = p["frames"], p["rows"], p["columns"]
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.ImageType = ["DERIVED", "SECONDARY"]
    _secondary_capture(ds)
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00182002  # Frame Label Vector
    ds.FrameLabelVector = [f"F{i + 1}" for i in range(frames)]
    _grayscale(ds, rows, columns, 12)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter, ds.WindowWidth = 1000, 2000
    rng = rng_for(builder)
    stack = [np.clip(phantom(rows, columns, rng, scale=1 - 0.1 * i) + 1000, 0, 4095) for i in range(frames)]
    ds.PixelData = np.stack(stack).astype("<u2").tobytes()


KINDS = {"ct": ct, "mr": mr, "sc": sc, "us": us, "multiframe": multiframe}
